"""Usage accounting: what every run used, sync or job (docs/operations.md#usage).

``UsageLedger.record`` never waits for the database: records are written in batches by
a thread of their own (``epe.service.spool``), which also purges those older than
``EPE_USAGE_RETENTION``. CPU seconds and peak memory are what the executor read from
the kernel for the run's workers (``epe.runner.executor.Usage``), never what user code
says. ``find`` writes what is queued first, so a reader sees every run that ended
before it asked.
"""

from __future__ import annotations

from typing import Any

from epe.core.names import iso_date, iso_instant, normalize_user, parse_instant
from epe.errors import Forbidden, InvalidRequest
from epe.observe.metrics import USAGE_DROPPED, USAGE_WRITTEN
from epe.service.spool import FLUSH_INTERVAL, Spool
from epe.store.usage import DAY, Grouping, UsageQuery, UsageRecord, UsageStore

GROUPINGS: tuple[Grouping, ...] = ("run", "day", "script")
MAX_ITEMS = 10_000  # items one query may return
# The API's names of a row's measures, as ``GET /omlusers/api/v1/usage`` shows them.
MEASURES = {"wall_seconds": "wallSeconds", "cpu_seconds": "cpuSeconds",
            "peak_memory": "peakMemory", "input_rows": "inputRows",
            "input_bytes": "inputBytes", "output_bytes": "outputBytes"}


class UsageLedger(Spool[UsageRecord]):
    def __init__(self, store: UsageStore, retention: float | None = None,
                 flush_interval: float = FLUSH_INTERVAL) -> None:
        super().__init__("usage", store.append, store.purge, retention=retention,
                         flush_interval=flush_interval, written=USAGE_WRITTEN,
                         dropped=USAGE_DROPPED)
        self.store = store

    def find(self, query: UsageQuery) -> tuple[list[dict[str, Any]], bool]:
        """The rows or sums the query asks for (blocking), every run recorded so far
        written first; whether more matched than its limit."""
        self.flush()
        return self.store.find(query)


def query(caller: str, admin: bool, user: str | None = None, since: str | None = None,
          until: str | None = None, by: str = "run", limit: int = 1000) -> UsageQuery:
    """A usage query from what ``caller`` typed: their own runs, or for an ``admin``
    anyone's (everyone's when ``user`` is not given)."""
    if by not in GROUPINGS:
        raise InvalidRequest(f"by must be one of {', '.join(GROUPINGS)}; not {by!r}")
    if not 1 <= limit <= MAX_ITEMS:
        raise InvalidRequest(f"limit must be from 1 to {MAX_ITEMS}")
    who = None if user is None else normalize_user(user, check=False)
    if not admin:
        if who not in (None, caller):
            raise Forbidden("only an admin may see the usage of other users")
        who = caller
    return UsageQuery(user=who, since=None if since is None else parse_instant(since, "since"),
                      until=None if until is None else parse_instant(until, "until"),
                      by=by, limit=limit)


def shown(row: dict[str, Any], by: Grouping) -> dict[str, Any]:
    """One row of the store's answer as the API shows it."""
    item: dict[str, Any] = {"user": row["user_name"]}
    if by == "run":
        item |= {"operation": row["operation"], "script": row["script"],
                 "service": row["service"], "mode": row["mode"], "jobId": row["job_id"],
                 "started": iso_instant(row["started"])}
    elif by == "day":
        item["day"] = iso_date(int(row["day"]) * DAY)[:10]
    else:
        item["script"] = row["script"]
    item |= {api: row[name] for name, api in MEASURES.items()}
    # To the microsecond: a fast sync run takes well under a millisecond, and rounding
    # it to milliseconds would show it as taking no time at all.
    item["cpuSeconds"] = round(float(item["cpuSeconds"]), 6)
    item["wallSeconds"] = round(float(item["wallSeconds"]), 6)
    if by == "run":
        item["outcome"] = row["outcome"]
    else:
        item |= {"runs": int(row["runs"]), "failed": int(row["failed"] or 0)}
        item |= {k: int(item[k]) for k in ("peakMemory", "inputRows", "inputBytes",
                                           "outputBytes")}
    return item
