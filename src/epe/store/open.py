"""Opening the metadata store a URL names."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from epe.errors import InvalidSetting
from epe.store.engine import sqlite_engine
from epe.store.migrate import upgrade
from epe.store.store import Store

SCHEMES = ("sqlite",)


def open_store(url: str) -> Store:
    """The store at ``url`` (``sqlite:///PATH``), created and migrated if needed."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidSetting(f"the metadata URL {url!r} is not a database URL; use "
                             "sqlite:///PATH") from None
    if parsed.get_backend_name() not in SCHEMES:
        raise InvalidSetting(f"the metadata URL {url!r} names a database epe cannot keep its "
                             f"metadata in; use one of: {', '.join(s + '://' for s in SCHEMES)}")
    if not parsed.database:
        raise InvalidSetting(f"the metadata URL {url!r} names no file: use sqlite:///PATH")
    return _open_sqlite(Path(parsed.database))


def _open_sqlite(path: Path) -> Store:
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = sqlite_engine(path)
    upgrade(engine)
    # Users, tokens and datastores are in here: the server's user alone reads it.
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if part.exists():
            os.chmod(part, 0o600)
    return Store(engine)
