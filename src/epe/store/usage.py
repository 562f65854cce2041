"""The usage of runs: one row per run, appended in batches, read run by run or summed by
day or script, purged by age (docs/operations.md#usage)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sqlalchemy import Engine, Integer, cast, func, insert, select

from epe.store import schema
from epe.store.engine import delete_before, writing

_U = schema.run_usage
DAY = 86_400
Grouping = Literal["run", "day", "script"]
SUMMED = ("wall_seconds", "cpu_seconds", "input_rows", "input_bytes", "output_bytes")


@dataclass(frozen=True)
class UsageRecord:
    """What one run used. ``cpu_seconds`` and ``peak_memory`` are what the kernel counted
    for its workers (``epe.runner.executor.Usage``): CPU summed over its tasks, the peak
    the highest of one worker's."""

    user: str
    operation: str
    script: str | None  # OWNER.NAME of a stored script; None for an inline function
    service: str
    mode: str  # sync or async
    job_id: str | None
    started: float  # UNIX seconds
    wall_seconds: float
    cpu_seconds: float
    peak_memory: int
    input_rows: int
    input_bytes: int
    output_bytes: int
    outcome: str  # ok, cancelled, or the error's class

    def row(self) -> dict[str, Any]:
        values = asdict(self)
        values["user_name"] = values.pop("user")
        return values


@dataclass(frozen=True)
class UsageQuery:
    """Which rows: each filter given narrows; times are UNIX seconds, ``until`` excluded."""

    user: str | None = None
    since: float | None = None
    until: float | None = None
    by: Grouping = "run"
    limit: int = 1000


class UsageStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(self, records: Sequence[UsageRecord]) -> None:
        if records:
            with writing(self.engine) as conn:
                conn.execute(insert(_U), [r.row() for r in records])

    def find(self, query: UsageQuery) -> tuple[list[dict[str, Any]], bool]:
        """The matching rows (``by`` run: newest first) or their sums by day or by script
        (per user; newest day, or most CPU, first); whether more than ``limit`` matched."""
        where = []
        if query.user is not None:
            where.append(_U.c.user_name == query.user)
        if query.since is not None:
            where.append(_U.c.started >= query.since)
        if query.until is not None:
            where.append(_U.c.started < query.until)
        statement = (_runs() if query.by == "run" else _sums(query.by, self.engine)) \
            .where(*where).limit(query.limit + 1)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(statement)]
        return rows[:query.limit], len(rows) > query.limit

    def purge(self, before: float) -> int:
        """Delete the rows of runs started before ``before``; how many."""
        return delete_before(self.engine, _U.c.started, before)


def _runs() -> Any:
    return select(_U).order_by(_U.c.started.desc(), _U.c.id.desc())


def _sums(by: Grouping, engine: Engine) -> Any:
    """Counts and sums per user and day (UTC) or per user and script."""
    if by == "day":
        key = _day(engine).label("day")
        order = [key.desc(), func.sum(_U.c.cpu_seconds).desc()]
    else:
        key = _U.c.script.label("script")
        order = [func.sum(_U.c.cpu_seconds).desc(), key]
    measures = [func.count().label("runs"),
                func.sum(cast(_U.c.outcome != "ok", Integer)).label("failed"),
                *(func.sum(_U.c[c]).label(c) for c in SUMMED),
                func.max(_U.c.peak_memory).label("peak_memory")]
    return select(_U.c.user_name, key, *measures).group_by(_U.c.user_name, key) \
        .order_by(*order, _U.c.user_name)


def _day(engine: Engine) -> Any:
    """The UTC day a run started, as days since the epoch (SQLite has no ``floor``
    before 3.35; its cast truncates, which for times after 1970 is the same)."""
    days = _U.c.started / DAY
    return func.floor(days) if engine.dialect.name == "postgresql" else cast(days, Integer)
