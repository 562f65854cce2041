"""When a batch scoring job runs (docs/models.md#schedules): its start, its repeat rule
(RFC 5545's RRULE, as Oracle's ``repeatInterval`` writes it: ``FREQ=DAILY``,
``FREQ=HOURLY;INTERVAL=2``), its end and its largest number of runs. Pure.

The next run is always the first slot *after now*: a server that was down while
several slots passed runs the job once when it is back, not once per slot.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dateutil.rrule import rrule, rrulestr

from epe.errors import InvalidRequest


@dataclass(frozen=True)
class Schedule:
    start: float  # UNIX seconds, whole
    repeat: str
    end: float | None = None
    max_runs: int | None = None


def _moment(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def rule_of(repeat: str, start: float) -> rrule:
    """The repeat rule from ``start``; a 400 naming ``repeatInterval`` if it is not one."""
    text = repeat.strip()
    if text.upper().startswith("RRULE:"):
        text = text[len("RRULE:"):]
    try:
        rule = rrulestr(text, dtstart=_moment(start))
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise InvalidRequest(f"repeatInterval {repeat!r} is not a repeat rule such as "
                             f"FREQ=DAILY or FREQ=HOURLY;INTERVAL=2: {e}") from None
    if not isinstance(rule, rrule):
        raise InvalidRequest("repeatInterval must be one rule, such as FREQ=DAILY")
    if "COUNT=" in text.upper():
        raise InvalidRequest("repeatInterval may not say COUNT: give maxRuns instead")
    return rule


def check(schedule: Schedule) -> None:
    """Refuse now what could never run: a bad rule, an end before the start, no slot."""
    if schedule.end is not None and schedule.end < schedule.start:
        raise InvalidRequest("jobEndDate is before jobStartDate")
    if schedule.max_runs is not None and schedule.max_runs < 1:
        raise InvalidRequest("maxRuns must be at least 1")
    if first_run(schedule, schedule.start) is None:
        raise InvalidRequest("the schedule has no run between jobStartDate and jobEndDate")


def _within(schedule: Schedule, moment: dt.datetime | None) -> float | None:
    if moment is None:
        return None
    ts = moment.timestamp()
    return None if schedule.end is not None and ts > schedule.end else ts


def first_run(schedule: Schedule, now: float) -> float | None:
    """The first slot at or after both the start and ``now`` (a job made, or enabled)."""
    rule = rule_of(schedule.repeat, schedule.start)
    return _within(schedule, rule.after(_moment(max(now, schedule.start)), inc=True))


def run_after(schedule: Schedule, slot: float, now: float, runs: int) -> float | None:
    """The slot after ``slot`` is claimed at ``now`` with ``runs`` runs begun so far: the
    first one after now (the ones in between were missed, and are not made up), or
    ``None`` when the end or the largest number of runs is reached.

    The rule is counted from ``slot``, a slot of it: the same slots follow, without
    walking every one since the start.
    """
    if schedule.max_runs is not None and runs >= schedule.max_runs:
        return None
    rule = rule_of(schedule.repeat, slot)
    return _within(schedule, rule.after(_moment(max(now, slot)), inc=False))
