"""A job's status and how it may change (docs/api.md#async-jobs). Changed in this one place."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from epe.errors import EpeError, TimeLimitExceeded


class Status(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    FINISH = "FINISH"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"

    @property
    def ended(self) -> bool:
        return self not in (Status.PENDING, Status.RUNNING)


_NEXT: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.RUNNING, Status.FAILED, Status.CANCELLED}),
    Status.RUNNING: frozenset({Status.FINISH, Status.FAILED, Status.CANCELLED,
                               Status.TIMEOUT}),
}


def can_move(current: Status, new: Status) -> bool:
    return new in _NEXT.get(current, frozenset())


def status_for(error: EpeError) -> Status:
    return Status.TIMEOUT if isinstance(error, TimeLimitExceeded) else Status.FAILED


def elapsed(start: float, end: float) -> str:
    """``HH:MM:SS`` (hours may exceed 24), as OML shows a job's elapsed time."""
    seconds = max(0, int(end - start))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def created_date(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
