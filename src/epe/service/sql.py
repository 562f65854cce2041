"""Users' SQL, wherever it comes from: ``POST /query``, a run's ``input``, ``oml.sync``
(docs/sql.md).

One path for all three. The query is read in the data backend's own dialect, or as
Oracle's and translated (``core.sql``): always with ``"dialect": "oracle"`` (or the
``sql_dialect`` setting), never with ``"native"``, and with ``"auto"`` (the default)
when the backend refuses the query as written. OML's PYQ views it names are
computed for the caller (``epe.service.views``) and its ``pyq*`` table functions run
(``epe.service.pyq``, handed in as ``Functions``), and their Arrow tables go to the
catalog with the query as named relations. The catalog then checks that what it is
given, the translated text, is one read-only query.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import pyarrow as pa

from epe.core.sql import MODES, Call, Mode, Statement, mentions_pyq, read
from epe.errors import InvalidRequest, NotFound
from epe.service.services import Services
from epe.service.sessions import Caller
from epe.service.views import view

# sqlglot warns, with the query's text, of every statement it cannot parse and keeps as a
# bare command (the backend then refuses it, and the user gets that error): users' SQL
# is theirs, and not the server log's.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


class Functions(Protocol):
    """Runs OML's table functions for one caller (``epe.service.pyq.TableFunctions``)."""

    async def __call__(self, call: Call) -> pa.Table: ...


@dataclass
class Ready:
    """A statement with its relations computed: what the catalog is handed. A statement
    made only if the one before it fails (``later``) is read then: a query that never
    mentions ``pyq`` needs no relations, and no parsing while it runs as written."""

    statement: Statement | None
    relations: dict[str, pa.Table] = field(default_factory=dict)
    later: Callable[[], Statement] | None = None

    @property
    def sql(self) -> str:
        if self.statement is None:
            assert self.later is not None
            self.statement = self.later()
        return self.statement.sql


def mode_of(services: Services, requested: str | None) -> Mode:
    mode = requested or services.settings.sql_dialect
    if mode not in MODES:
        raise InvalidRequest(f"dialect must be one of {', '.join(MODES)}")
    return mode


def _has_table(services: Services, caller: Caller, name: str) -> bool:
    try:
        services.catalog.describe(caller.name, name)
    except (NotFound, InvalidRequest):
        return False
    return True


def statements(services: Services, caller: Caller, text: str,
               mode: Mode) -> list[Statement | Callable[[], Statement]]:
    """The ways to run ``text``, in the order they are tried (blocking: a PYQ view's
    name is looked up among the caller's tables); a function where the statement is
    read only if the one before it fails."""
    dialect = services.catalog.dialect
    tables: dict[str, bool] = {}

    def has_table(name: str) -> bool:  # asked once per name, whichever reading asks
        if name.upper() not in tables:
            tables[name.upper()] = _has_table(services, caller, name)
        return tables[name.upper()]

    if mode == "oracle":
        return [read(text, dialect, oracle=True, has_table=has_table)]
    found: list[Statement | Callable[[], Statement]] = []
    native_error: InvalidRequest | None = None
    if not mentions_pyq(text):
        found.append(Statement(text))  # untouched: nothing of OML's in it
        if mode == "auto":
            found.append(partial(read, text, dialect, True))
        return found
    try:
        found.append(read(text, dialect, oracle=False, has_table=has_table))
    except InvalidRequest as e:
        if mode == "native":
            raise
        native_error = e
    if mode == "auto":
        try:
            oracle = read(text, dialect, oracle=True, has_table=has_table)
        except InvalidRequest as e:
            if native_error is not None:
                raise _both(native_error, e) from None
        else:
            if not found or not isinstance(found[0], Statement) or oracle.sql != found[0].sql:
                found.append(oracle)
    return found


async def prepare(services: Services, caller: Caller, text: str, mode: Mode,
                  functions: Functions | None) -> list[Ready]:
    """Each way to run ``text`` with the relations it reads; a function call that two
    of them share runs once."""
    options = await asyncio.to_thread(statements, services, caller, text, mode)
    done: dict[Call, pa.Table] = {}
    views: dict[str, pa.Table] = {}
    ready = []
    for statement in options:
        if not isinstance(statement, Statement):
            ready.append(Ready(None, later=statement))
            continue
        relations = {}
        for relation, name in statement.views:
            if name not in views:
                views[name] = await asyncio.to_thread(view, services, caller, name)
            relations[relation] = views[name]
        for relation, call in statement.calls:
            if call not in done:
                if functions is None:
                    raise InvalidRequest(f"{call.name} cannot be called here: OML's table "
                                         "functions run in POST /query, a run's input and "
                                         "oml.sync")
                done[call] = await functions(call)
            relations[relation] = done[call]
        ready.append(Ready(statement, relations))
    return ready


def _both(native: InvalidRequest, oracle: InvalidRequest) -> InvalidRequest:
    """The backend's refusal, and why reading the query as Oracle's SQL did not help."""
    if oracle.message in native.message:
        return native
    return InvalidRequest(f"{native.message}; read as Oracle SQL instead: {oracle.message}")


def run_query(services: Services, caller: Caller, options: list[Ready]) -> pa.Table:
    """The first way that the backend runs (blocking); if none does, the first's error."""
    first_error: InvalidRequest | None = None
    for option in options:
        try:
            return services.catalog.query(caller.name, option.sql, option.relations)
        except InvalidRequest as e:
            if first_error is not None and option.statement is None:
                raise _both(first_error, e) from None
            first_error = first_error or e
    assert first_error is not None
    raise first_error


@contextlib.contextmanager
def run_stream(services: Services, caller: Caller,
               options: list[Ready]) -> Iterator[pa.RecordBatchReader]:
    """The same as a stream of record batches, read within the block (blocking)."""
    first_error: InvalidRequest | None = None
    for option in options:
        with contextlib.ExitStack() as stack:
            try:
                rows = stack.enter_context(
                    services.catalog.stream(caller.name, option.sql, option.relations))
            except InvalidRequest as e:
                if first_error is not None and option.statement is None:
                    raise _both(first_error, e) from None
                first_error = first_error or e
                continue
            yield rows
            return
    assert first_error is not None
    raise first_error


async def query(services: Services, caller: Caller, text: str, dialect: str | None = None,
                functions: Functions | None = None) -> pa.Table:
    """The rows of one read-only query as the caller sees them."""
    options = await prepare(services, caller, text, mode_of(services, dialect), functions)
    return await asyncio.to_thread(run_query, services, caller, options)
