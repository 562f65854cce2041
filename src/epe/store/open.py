"""Opening the metadata store a URL names: an SQLite file, or a PostgreSQL database.

Whatever stops a store from opening (a URL that names nothing, a server that
cannot be reached, a database made by a newer epe) is an ``InvalidSetting`` with
one line that says so: the commands print it and exit, never with a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import URL, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from epe.errors import InvalidSetting
from epe.store.engine import answer_busy, postgresql_engine, sqlite_engine
from epe.store.migrate import upgrade
from epe.store.store import POSTGRESQL_CACHE_TTL, Store

SCHEMES = ("sqlite", "postgresql")
_USE = "use sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"


def open_store(url: str, pool_size: int = 10, *, retry_after: int = 5) -> Store:
    """The store at ``url``, created and migrated if needed. ``pool_size``: the
    connections kept open to a PostgreSQL server; ``retry_after``: the seconds its
    ``ServerBusy`` asks a client to wait, when the database cannot serve."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidSetting(f"the metadata URL {url!r} is not a database URL; {_USE}") from None
    backend = "postgresql" if parsed.get_backend_name() == "postgres" else \
        parsed.get_backend_name()
    if backend not in SCHEMES or (backend == "postgresql" and
                                  parsed.get_driver_name() not in ("psycopg", "psycopg2")):
        raise InvalidSetting(f"the metadata URL {_shown(parsed)!r} names a database epe cannot "
                             f"keep its metadata in; {_USE}")
    if not parsed.database:
        raise InvalidSetting(f"the metadata URL {_shown(parsed)!r} names no "
                             f"{'file' if backend == 'sqlite' else 'database'}; {_USE}")
    if backend == "sqlite":
        return _open_sqlite(Path(parsed.database), retry_after)
    return _open_postgresql(parsed, pool_size, retry_after)


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _open_sqlite(path: Path, retry_after: int) -> Store:
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = sqlite_engine(path, retry_after)
    upgrade(engine)
    # Users, tokens and datastores are in here: the server's user alone reads it.
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if part.exists():
            os.chmod(part, 0o600)
    answer_busy(engine, retry_after)
    return Store(engine)


def _open_postgresql(url: URL, pool_size: int, retry_after: int) -> Store:
    try:
        engine = postgresql_engine(url.set(drivername="postgresql"), pool_size, retry_after)
    except ImportError:
        raise InvalidSetting("a postgresql:// metadata URL needs psycopg: "
                             "pip install 'epe[postgres]'") from None
    _reach(engine, url)
    upgrade(engine)
    answer_busy(engine, retry_after)
    return Store(engine, cache_ttl=POSTGRESQL_CACHE_TTL, shared=True)


def _reach(engine: Engine, url: URL) -> None:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as e:
        engine.dispose()
        reason = str(e.orig).strip().splitlines()[0] if e.orig else type(e).__name__
        raise InvalidSetting(f"cannot open the metadata database {_shown(url)}: "
                             f"{reason}") from None
