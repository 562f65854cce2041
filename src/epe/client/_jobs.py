"""Async jobs from the client (docs/client.md): status, a progress bar, result, log, cancel."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from epe.client._connection import API, Connection, current, result_of, segment
from epe.client._results import decode
from epe.errors import NotFound

ENDED = ("FINISH", "FAILED", "CANCELLED", "TIMEOUT")


def list_jobs(connection: Connection) -> list[dict[str, Any]]:
    """The caller's jobs, newest first, as ``GET /jobs`` lists them."""
    jobs: list[dict[str, Any]] = connection.get_json("/jobs")
    return jobs


class Job:
    """An async run (``oml_async_flag=True``): ask its ``status()``, ``wait()`` for it
    with a progress bar, then take its ``result()`` (or ``log()``, or ``cancel()``)."""

    def __init__(self, job_id: str, connection: Connection | None = None,
                 kind: str | None = None, graphics: bool = False, pickled: bool = False,
                 keep: Any = None, shape: Callable[[Any], Any] | None = None) -> None:
        self.id = job_id
        self._shape = shape  # func_value's table of the value (docs/client.md)
        self._connection = connection or current()
        self._kind = kind
        self._graphics = graphics
        self._pickled = pickled
        self._keep = keep  # the input's proxy: a pushed table must outlive the job

    @property
    def url(self) -> str:
        """The job's status URL."""
        return f"{self._connection.url}{API}/jobs/{self.id}"

    def __repr__(self) -> str:
        return f"<epe job {self.id}>"

    def _path(self, suffix: str = "") -> str:
        return f"/jobs/{segment(self.id)}{suffix}"

    def info(self) -> dict[str, Any]:
        """The job's row of ``GET /jobs``: status, createdDate, elapsedTime, progress."""
        for job in list_jobs(self._connection):
            if job.get("job_id") == self.id:
                return job
        raise NotFound(f"no job {self.id} that you may see")

    def status(self) -> str:
        """PENDING, RUNNING, FINISH, FAILED, CANCELLED or TIMEOUT."""
        return str(self.info()["status"])

    def poll(self) -> tuple[bool, int, int]:
        """(ended, invocations done, invocations in all) from the status URL."""
        r = self._connection.request("GET", self._path())
        if r.status_code == 302:
            return True, 0, 0
        progress = (r.json() or {}).get("progress") or {}
        return False, int(progress.get("done") or 0), int(progress.get("total") or 0)

    def done(self) -> bool:
        """Whether the job has ended, however it ended."""
        return self.poll()[0]

    def wait(self, progress: bool = True, timeout: float | None = None,
             console: Console | None = None) -> str:
        """Wait for the job to end, with a progress bar of its invocations unless
        ``progress=False``; return how it ended (FINISH, FAILED, CANCELLED, TIMEOUT).

        ``timeout`` (seconds) raises ``TimeoutError`` if the job is still running by then;
        the job goes on.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), console=console or Console(stderr=True),
                       disable=not progress)
        with bar:
            task = bar.add_task(f"job {self.id[:8]}", total=None)
            interval = 0.1
            while True:
                ended, done, total = self.poll()
                if ended:
                    break
                if total:
                    bar.update(task, completed=done, total=total)
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {self.id} is still running after {timeout} s")
                time.sleep(interval)
                interval = min(interval * 1.5, 1.0)
            info = self.info()
            status = str(info["status"])
            final = info.get("progress") or {}
            total = int(final.get("total") or 0)
            bar.update(task, completed=int(final.get("done") or 0), total=total or 1,
                       description=f"job {self.id[:8]} {status}")
            if status == "FINISH" and not total:
                bar.update(task, completed=1)
        return status

    def raw_result(self) -> Any:
        """The ``result`` of the job's answer as JSON; raises the job's error if it failed.
        Waits for the job to end first."""
        self.wait(progress=False)
        return result_of(self._connection.request("GET", self._path("/result")))

    def result(self) -> Any:
        """The job's value, as the sync call would have returned it (waits for the job to
        end first); raises the job's error if it failed."""
        raw = self.raw_result()
        if self._pickled and self._kind is not None:
            value = decode(self._kind, raw, self._graphics)
            return value if self._shape is None else self._shape(value)
        return raw

    def log(self) -> str:
        """What the job's function printed (stdout and stderr)."""
        return str(self._connection.get_json(self._path("/log")))

    def cancel(self) -> None:
        """Stop the job if it is running, and delete it."""
        self._connection.delete(self._path())
