"""Run the numbered Alembic migrations against an engine (at every start).

Replicas may start together on one PostgreSQL database: the migrations run
under an advisory lock (taken in ``migrations/env.py``), so the first migrates
and the others find the database at the head. A database stamped with a
revision this epe does not know was migrated by a newer epe: that is said in
one line, before anything is touched.
"""

from __future__ import annotations

import threading

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from epe.errors import InvalidSetting

SCRIPT_LOCATION = "epe.store:migrations"
# Alembic keeps its running environment in module globals: one migration per process.
_ONE_AT_A_TIME = threading.Lock()


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config(engine)
    refuse_newer(engine, ScriptDirectory.from_config(config))
    with _ONE_AT_A_TIME:
        command.upgrade(config, revision)


def refuse_newer(engine: Engine, scripts: ScriptDirectory) -> None:
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_heads()
    known = {s.revision for s in scripts.walk_revisions()}
    unknown = [r for r in current if r not in known]
    if unknown:
        raise InvalidSetting(
            f"the metadata database is at migration {', '.join(unknown)}, which this epe does "
            f"not know (its newest is {scripts.get_current_head()}): a newer epe migrated it; "
            "run that version")
