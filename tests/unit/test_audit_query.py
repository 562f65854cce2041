"""What an admin may ask the audit trail for (epe.service.audit.query) and the times
it takes (epe.core.names.parse_instant)."""

from __future__ import annotations

import pytest

from epe.core.names import iso_instant, parse_instant
from epe.errors import InvalidRequest
from epe.service.audit import MAX_PAGE, query


@pytest.mark.parametrize(("text", "seconds"), [
    ("1700000000", 1700000000.0),
    ("1700000000.5", 1700000000.5),
    ("2023-11-14T22:13:20Z", 1700000000.0),
    ("2023-11-14T22:13:20+00:00", 1700000000.0),
    ("2023-11-15T00:13:20+02:00", 1700000000.0),
    ("2023-11-14T22:13:20", 1700000000.0),  # no offset: UTC
    ("2023-11-14", 1699920000.0),
])
def test_instants_are_unix_seconds_or_iso_8601(text: str, seconds: float) -> None:
    assert parse_instant(text, "since") == seconds


def test_a_bad_instant_names_its_field() -> None:
    with pytest.raises(InvalidRequest, match="until must be"):
        parse_instant("yesterday", "until")


def test_instants_are_shown_to_the_millisecond_in_utc() -> None:
    assert iso_instant(1700000000.1234) == "2023-11-14T22:13:20.123Z"


def test_a_query_normalizes_the_user_and_reads_the_times() -> None:
    made = query(user=" alice ", since="2023-11-14", until="1700000000", kind="run",
                 limit=5, offset=10)
    assert (made.user, made.since, made.until, made.kind, made.limit, made.offset) == (
        "ALICE", 1699920000.0, 1700000000.0, "run", 5, 10)


@pytest.mark.parametrize("wrong", [{"kind": "everything"}, {"limit": 0},
                                   {"limit": MAX_PAGE + 1}, {"offset": -1},
                                   {"since": "soon"}])
def test_what_makes_no_sense_is_refused(wrong: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        query(**wrong)  # type: ignore[arg-type]
