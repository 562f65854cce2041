"""The two engines (SQLite, PostgreSQL), and write transactions safe on both.

SQLite's default deferred transaction reads first and upgrades to a write lock
later; two of those racing (two parallel ``oml.ds.save(append=True)``, say) can
fail instead of waiting. Every multi-statement write here goes through
``writing``, which begins ``IMMEDIATE`` on SQLite so writers queue on
``busy_timeout`` and nothing is lost; reads stay plain deferred transactions and
never block.

PostgreSQL runs at READ COMMITTED, where two transactions may both find a row
missing and both insert it. Writes there never check and then insert: they
insert with ``ON CONFLICT`` (``upsert``, both dialects have it) and lock the row
they go on to change (``SELECT ... FOR UPDATE``, which SQLite's compiler leaves
out: its IMMEDIATE transaction already holds the whole database). A read that
must see one version across several statements takes a ``snapshot``.

A database that cannot serve now (down, restarting, every connection taken, SQLite
locked past ``busy_timeout``) is epe's ``ServerBusy``, raised by the engine itself
(``answer_busy``): callers, the HTTP layer included, never see the driver's errors
for it, and a client is asked to retry after ``retry_after`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    URL,
    Column,
    Connection,
    Engine,
    ExceptionContext,
    Table,
    create_engine,
    delete,
    event,
    exc,
    func,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from epe.errors import ServerBusy

log = logging.getLogger("epe.store")

_IMMEDIATE = "epe_immediate"


def sqlite_engine(path: Path, retry_after: int = 5) -> Engine:
    # hide_parameters: an error (and so the log) never carries the values of a statement,
    # such as a job's request with its parameters.
    engine = create_engine(f"sqlite:///{path}", hide_parameters=True,
                           poolclass=busy_pool(retry_after))

    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across process crashes in WAL mode, which is what
        # "survive kill -9" needs; only a power cut may lose the last commit.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.pop(_IMMEDIATE, False)
                             else "BEGIN")

    return engine


def postgresql_engine(url: URL, pool_size: int, retry_after: int = 5) -> Engine:
    """psycopg 3 through a pool of ``pool_size`` connections (as many again in a burst).

    No ``pool_pre_ping``: it would double the round trips of every lookup. A
    connection the server dropped fails its request once and is replaced.
    """
    engine = create_engine(url.set(drivername="postgresql+psycopg"), pool_size=pool_size,
                           max_overflow=pool_size, pool_timeout=30,
                           poolclass=busy_pool(retry_after),
                           connect_args={"connect_timeout": 10, "application_name": "epe"})
    return engine


def busy(cause: BaseException, retry_after: int) -> ServerBusy:
    log.warning("the metadata database cannot serve: %s", type(cause).__name__)
    return ServerBusy("the metadata database cannot be reached now; retry later",
                      retry_after=retry_after)


def answer_busy(engine: Engine, retry_after: int) -> None:
    """Make the driver's errors that say the database cannot serve now ``ServerBusy``
    (from when the store is open: opening says why it cannot in a line of its own)."""

    @event.listens_for(engine, "handle_error")
    def _translate(context: ExceptionContext) -> None:
        # Raising here replaces the error once SQLAlchemy has cleaned up after it (a
        # connection cut is dropped from the pool).
        error = context.sqlalchemy_exception
        if error is not None and unreachable(error):
            raise busy(error, retry_after) from error


def busy_pool(retry_after: int) -> type[QueuePool]:
    """SQLAlchemy's queue pool, for which every connection taken past its timeout is a
    ``ServerBusy`` (the pool raises that itself, never through ``handle_error``)."""

    class BusyPool(QueuePool):
        # SQLAlchemy names a pool's logger after its class's module: this one logs where
        # its parent does, under "sqlalchemy" (quiet below WARNING), not as epe's own.
        __module__ = QueuePool.__module__

        def _do_get(self) -> ConnectionPoolEntry:
            try:
                return super()._do_get()
            except exc.TimeoutError as e:
                raise busy(e, retry_after) from e

    return BusyPool


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the write lock from its first statement (SQLite)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.info[_IMMEDIATE] = True
        with conn.begin():
            yield conn


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A read transaction whose statements all see one snapshot. SQLite's deferred
    transaction does; PostgreSQL's READ COMMITTED takes a new snapshot per statement,
    so this one asks for REPEATABLE READ."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


PURGE_CHUNK = 10_000  # rows per delete: a large purge never holds the write lock long


def delete_before(engine: Engine, time: Column[Any], before: float,
                  chunk: int = PURGE_CHUNK) -> int:
    """Delete the rows of ``time``'s table (keyed by an ``id``) whose ``time`` is before
    ``before``, ``chunk`` rows per transaction; how many."""
    table = time.table
    gone = 0
    while True:
        with writing(engine) as conn:
            ids = select(table.c.id).where(time < before).limit(chunk)
            done = conn.execute(delete(table).where(table.c.id.in_(ids.scalar_subquery())))
        gone += done.rowcount
        if done.rowcount < chunk:
            return gone


def upsert(conn: Connection, table: Table) -> Any:
    """An ``INSERT`` of the connection's dialect, which has ``on_conflict_do_nothing``
    and ``on_conflict_do_update`` (PostgreSQL, and SQLite since 3.24)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def db_now(conn: Connection) -> Any:
    """Now, in UNIX seconds, by the database's clock where replicas share one: leases
    are compared by one clock, whatever the replicas' own clocks say."""
    if conn.dialect.name == "postgresql":
        return func.extract("epoch", func.clock_timestamp())
    return literal(time.time())


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the database could not serve now (down, restarting, its
    connections all taken, SQLite locked past ``busy_timeout``) rather than that a
    statement was wrong: the first is worth a retry, the second is a bug."""
    if isinstance(error, exc.TimeoutError):  # no pooled connection came free in time
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated or isinstance(error, exc.InterfaceError):
        return True
    if not isinstance(error, exc.OperationalError):
        return False
    # psycopg's OperationalError is about the connection or the server (refused, shut
    # down by an administrator, terminated); SQLite's also covers a missing table, a bug,
    # so only its lock timeout counts there.
    return "sqlite" not in type(error.orig).__module__ or "locked" in str(error.orig)
