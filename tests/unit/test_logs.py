"""JSON log lines and request ids (epe.observe.logs)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from epe.observe import logs
from epe.observe.logs import JOB_ID, REQUEST_ID, JsonFormatter, request_id_from
from tests.serverproc import wait_for


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("epe.test", logging.WARNING, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_a_line_is_one_json_object_with_the_ids_in_context() -> None:
    request, job = REQUEST_ID.set("req-1"), JOB_ID.set("job-1")
    try:
        line = JsonFormatter().format(record("ran %s for %d ms", "f", 12,
                                             fields={"status": 200}))
    finally:
        REQUEST_ID.reset(request)
        JOB_ID.reset(job)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry == {"time": entry["time"], "level": "WARNING", "logger": "epe.test",
                     "message": "ran f for 12 ms", "requestId": "req-1", "jobId": "job-1",
                     "status": 200}
    assert entry["time"].endswith("Z")


def test_without_a_request_the_ids_are_left_out() -> None:
    entry = json.loads(JsonFormatter().format(record("started")))
    assert "requestId" not in entry and "jobId" not in entry


def test_an_exception_and_line_breaks_stay_on_one_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        import sys

        made = record("failed:\n%s", "two lines")
        made.exc_info = sys.exc_info()
    line = JsonFormatter().format(made)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed:\ntwo lines"
    assert "ValueError: bad" in entry["exception"]


@pytest.mark.parametrize("given", ["abc", "3f2a-11ee-b0d1", "trace:1/2+3=4@x", "a" * 128])
def test_a_tame_request_id_is_kept(given: str) -> None:
    assert request_id_from(given) == given


@pytest.mark.parametrize("given", [None, "", "a b", 'a"b', "line\nbreak", "a" * 129, "é"])
def test_any_other_is_replaced_by_a_new_one(given: str | None) -> None:
    made = request_id_from(given)
    assert made != given and len(made) == 16
    assert made != request_id_from(given)


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, its handlers and level put back (and the writer stopped) after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield root
    logs.stop()
    root.handlers[:], level = saved
    root.setLevel(level)


def test_lines_are_written_by_a_thread_with_the_ids_they_were_logged_with(
        root_logger: logging.Logger, capfd: pytest.CaptureFixture[str]) -> None:
    logs.configure("json", "INFO")
    token = REQUEST_ID.set("queued-1")
    logging.getLogger("epe.test").info("one %s", "line")
    REQUEST_ID.reset(token)  # gone before the writer formats the line
    logging.getLogger("epe.test").debug("below the level")
    logs.stop()
    logging.getLogger("epe.test").warning("after the stop")
    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines()]
    assert [(x["message"], x.get("requestId")) for x in lines] == [
        ("one line", "queued-1"), ("after the stop", None)]


def wakeups(thread_id: int) -> int:
    """How many times a thread of this process has gone to sleep and been woken."""
    status = Path(f"/proc/self/task/{thread_id}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:")[1].split()[0])


def test_the_writer_sleeps_while_nothing_is_logged_and_wakes_for_a_line(
        root_logger: logging.Logger, capfd: pytest.CaptureFixture[str]) -> None:
    logs.configure("plain", "INFO")
    assert logs._writer is not None
    writer = logs._writer._thread.native_id
    assert writer is not None
    written = ""

    def shown(line: str) -> bool:
        nonlocal written
        written += capfd.readouterr().err
        return line in written

    logging.getLogger("epe.test").info("before the quiet")
    wait_for(lambda: shown("before the quiet"))
    time.sleep(0.1)  # its writer past the lines that came with it
    before = wakeups(writer)
    time.sleep(0.5)  # a writer looking every 20 ms would wake about 25 times
    quiet = wakeups(writer) - before
    logging.getLogger("epe.test").info("after the quiet")
    wait_for(lambda: shown("after the quiet"))  # written by the writer: it woke for it
    assert quiet <= 2  # at most the end of the wait it was in, and the sleep after


def test_a_failed_statement_does_not_show_its_values(tmp_path: object) -> None:
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from epe.store import open_store
    from epe.store.schema import users

    store = open_store(f"sqlite:///{Path(str(tmp_path)) / 'metadata.sqlite'}")
    try:
        row = {"name": "ALICE", "password_hash": "secret-hash-value", "is_admin": False,
               "created": 1.0}
        with store.engine.begin() as conn:
            conn.execute(insert(users).values(**row))
        with pytest.raises(IntegrityError) as failed, store.engine.begin() as conn:
            conn.execute(insert(users).values(**row))  # the same name again
        assert "secret-hash-value" not in str(failed.value)
    finally:
        store.close()
