"""One DuckDB database file per user, opened on demand, closed when idle.

A user's connection is a separate DuckDB instance over that user's file alone,
so no name a query can spell reaches another user's tables: other files are not
attached, and these settings (fixed when the instance opens, locked against
``SET``) forbid attaching or reading any file or URL.

DuckDB lets one process at a time open a file for writing. Closing idle
databases lets ``epe demo`` load tables while the server runs, and opening
waits a while for a file another process holds.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from epe.data.names import check_owner
from epe.errors import NotReady, ServerBusy

CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,  # no file or URL access, no ATTACH, no INSTALL/LOAD
    "python_enable_replacements": False,  # never scan Python variables named in a query
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,  # nothing in a query can undo the above
}
SUFFIX = ".duckdb"
# DuckDB's message when another process holds the file.
_LOCKED = "Could not set lock on file"


@dataclass
class _Database:
    connection: duckdb.DuckDBPyConnection
    # Writes to one user's tables go one at a time; readers never wait (MVCC).
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0
    idle_since: float = field(default_factory=time.monotonic)


class UserDatabases:
    def __init__(self, root: Path, idle_close: float = 5.0, lock_wait: float = 30.0) -> None:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root = root
        self._idle_close = idle_close
        self._lock_wait = lock_wait
        self._open: dict[str, _Database] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="epe-tables-reaper",
                                         daemon=True)
        self._reaper.start()

    def path(self, owner: str) -> Path:
        return self.root / f"{check_owner(owner)}{SUFFIX}"

    def owners(self) -> list[str]:
        """The owners whose database file exists."""
        return sorted(p.name.removesuffix(SUFFIX) for p in self.root.glob("*" + SUFFIX))

    @contextmanager
    def cursor(self, owner: str, write: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection of its own to ``owner``'s database, for one thread's use."""
        db, cursor = self._acquire(owner)
        try:
            with db.write_lock if write else nullcontext():
                yield cursor
        finally:
            self._release(db, cursor)

    def check(self) -> None:
        """``NotReady`` unless databases can be opened and written now."""
        if self._closed.is_set():
            raise NotReady("the table catalog is closed")
        if not self.root.is_dir():
            raise NotReady("the tables folder is missing")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise NotReady("the tables folder is not writable")

    def close(self) -> None:
        self._closed.set()
        self._reaper.join()
        with self._lock:
            dbs, self._open = list(self._open.values()), {}
        for db in dbs:
            db.connection.close()

    def _acquire(self, owner: str) -> tuple[_Database, duckdb.DuckDBPyConnection]:
        with self._lock:
            if db := self._open.get(owner):
                return self._use(db)
        connection = self._connect(owner)  # outside the lock: it may wait for the file
        with self._lock:
            if db := self._open.get(owner):
                connection.close()  # another thread opened it meanwhile: same instance
                return self._use(db)
            self._open[owner] = db = _Database(connection)
            return self._use(db)

    def _use(self, db: _Database) -> tuple[_Database, duckdb.DuckDBPyConnection]:
        if self._closed.is_set():
            raise RuntimeError("the table catalog is closed")
        db.users += 1
        return db, db.connection.cursor()

    def _release(self, db: _Database, cursor: duckdb.DuckDBPyConnection) -> None:
        with self._lock:  # cursors come and go under the lock: their parent tracks them
            cursor.close()
            db.users -= 1
            db.idle_since = time.monotonic()

    def _connect(self, owner: str) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self._lock_wait
        while True:
            try:
                return duckdb.connect(str(self.path(owner)), config=CONFIG)
            except duckdb.IOException as e:
                if _LOCKED not in str(e):
                    raise
                if time.monotonic() > deadline:
                    raise ServerBusy(f"the tables of {owner} are held by another process "
                                     "(is 'epe demo' running?); try again shortly") from None
            time.sleep(0.05)

    def _reap(self) -> None:
        while not self._closed.wait(self._idle_close / 2):
            self._close_idle()

    def _close_idle(self) -> None:
        now = time.monotonic()
        with self._lock:
            idle = [o for o, db in self._open.items()
                    if db.users == 0 and now - db.idle_since >= self._idle_close]
            dbs = [self._open.pop(o) for o in idle]
        for db in dbs:
            db.connection.close()
