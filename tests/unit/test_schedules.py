"""When batch scoring jobs run (epe.core.schedules): the first slot, the slot after a
claim, missed slots made up once, the end and the largest number of runs."""

from __future__ import annotations

import pytest

from epe.core.schedules import Schedule, check, first_run, run_after
from epe.errors import InvalidRequest

T0 = 1_800_000_000.0  # a whole second, 2027-01-15T08:00:00Z
EVERY_3S = Schedule(T0, "FREQ=SECONDLY;INTERVAL=3")


def test_the_first_run_is_the_first_slot_from_the_start_or_from_now() -> None:
    assert first_run(EVERY_3S, T0 - 100) == T0
    assert first_run(EVERY_3S, T0 + 4) == T0 + 6
    assert first_run(Schedule(T0, "FREQ=DAILY;BYHOUR=3"), T0) == T0 + 19 * 3600


def test_the_next_run_is_the_first_slot_after_now_however_many_were_missed() -> None:
    assert run_after(EVERY_3S, T0, T0 + 0.5, 1) == T0 + 3
    assert run_after(EVERY_3S, T0, T0 + 3000.5, 1) == T0 + 3003  # a thousand missed
    daily = Schedule(T0, "FREQ=DAILY")
    assert run_after(daily, T0, T0 + 10 * 86400 + 5, 1) == T0 + 11 * 86400


def test_the_end_and_the_largest_number_of_runs_stop_it() -> None:
    ending = Schedule(T0, "FREQ=SECONDLY;INTERVAL=3", end=T0 + 7)
    assert run_after(ending, T0 + 6, T0 + 6.1, 3) is None
    capped = Schedule(T0, "FREQ=SECONDLY;INTERVAL=3", max_runs=2)
    assert run_after(capped, T0, T0 + 0.1, 1) == T0 + 3
    assert run_after(capped, T0 + 3, T0 + 3.1, 2) is None


@pytest.mark.parametrize(("schedule", "said"), [
    (Schedule(T0, "FREQ=NEVER"), "repeatInterval"),
    (Schedule(T0, "FREQ=DAILY;COUNT=3"), "maxRuns"),
    (Schedule(T0, "FREQ=DAILY", end=T0 - 1), "jobEndDate"),
    (Schedule(T0, "FREQ=DAILY", max_runs=0), "maxRuns"),
    (Schedule(T0, "FREQ=YEARLY;BYMONTH=6", end=T0 + 86400), "no run"),
])
def test_what_could_never_run_is_refused(schedule: Schedule, said: str) -> None:
    with pytest.raises(InvalidRequest, match=said):
        check(schedule)
