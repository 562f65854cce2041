"""Async jobs: admitted, run, kept, and never lost (docs/api.md, async jobs).

Every state is written to the metadata store before it is acted on; a job's
answer (the exact body and status a sync call would have had) is written to a
file atomically before the job is marked ended. A job that was waiting or
running when the server stopped is marked FAILED at the next start, never
re-run: user code may have had side effects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from epe.core.jobs import Status, status_for
from epe.core.results import wrap_result
from epe.errors import (
    Conflict,
    EpeError,
    InternalError,
    JobInterrupted,
    NotFound,
    ServerBusy,
)
from epe.observe import metrics
from epe.observe.logs import JOB_ID
from epe.service import runs as execution
from epe.service.services import Services
from epe.store.jobs import JobRecord

log = logging.getLogger("epe.jobs")

STOPPED_MESSAGE = ("the server stopped while this job was waiting or running; it was not "
                   "re-run, because the function may have had side effects: submit it again")
PROGRESS_BATCHES = 20  # an async run is cut into at least this many batches, for progress
SWEEP_INTERVAL = 3600.0

# Work a job does that is not a run: given the job's output, it returns its result's JSON.
Work = Callable[[execution.Output], Awaitable[bytes]]


@dataclass(frozen=True)
class Answer:
    """A finished job's answer: the HTTP status and body a sync call would have had."""

    status: int
    body: bytes


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class JobManager:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = services.store.jobs
        self.root = services.settings.data_dir / "jobs"
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._outputs: dict[str, execution.Output] = {}  # of the jobs that have not ended
        self._states: dict[str, Status] = {}  # each live job's state, as the gauge counts it
        self._gates = {level: asyncio.Semaphore(services.settings.job_concurrency(level))
                       for level in ("LOW", "MEDIUM", "HIGH")}
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for job_id in self.store.fail_unfinished(STOPPED_MESSAGE):
            self._write_answer(job_id, _error_answer(JobInterrupted(STOPPED_MESSAGE), 400))
            log.warning("job %s was unfinished when the server stopped; marked FAILED", job_id)
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def stop(self) -> None:
        """Fail the jobs still going (cleanly: their answer says why) and stop."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- submitting ----------------------------------------------------------------

    def submit(self, job: execution.Prepared, idempotency_key: str | None) -> JobRecord:
        if idempotency_key and (same := self.store.by_idempotency_key(job.caller.name,
                                                                      idempotency_key)):
            return same
        self._admit()
        try:
            record = self.store.create(id=uuid.uuid4().hex, owner=job.caller.name,
                                       kind=job.op.kind,
                                       request=job.body.model_dump_json(by_alias=True),
                                       idempotency_key=idempotency_key)
        except Conflict:  # the same key raced in from a concurrent retry
            assert idempotency_key is not None
            same = self.store.by_idempotency_key(job.caller.name, idempotency_key)
            assert same is not None
            return same
        (self.root / record.id).mkdir(parents=True, exist_ok=True)
        self._admitted(record, Status.PENDING)
        task = self._tasks[record.id] = asyncio.create_task(self._run(record.id, job))
        if job.body.env_name is not None:  # the environment stays while the job waits
            lease = self.services.environments.hold(job.body.env_name)
            task.add_done_callback(lambda _task: lease.release())
        return record

    def submit_work(self, owner: str, kind: str, request: str, work: Work) -> JobRecord:
        """Run ``work`` as a job of ``owner``: one that is not a run (building an environment).

        Its answer is ``{"result": R}``, R the JSON ``work`` returns, or the error body of
        the ``EpeError`` it raises; what it adds to its ``Output`` is the job's log.
        """
        self._admit()
        record = self.store.create(id=uuid.uuid4().hex, owner=owner, kind=kind, request=request,
                                   idempotency_key=None)
        (self.root / record.id).mkdir(parents=True, exist_ok=True)
        self._admitted(record, Status.PENDING)
        self._tasks[record.id] = asyncio.create_task(self._run_work(record.id, work))
        return record

    def _admit(self) -> None:
        if len(self._tasks) >= self.services.settings.job_queue_limit:
            metrics.REFUSED.labels("job_queue_full").inc()
            raise ServerBusy("the server has as many jobs waiting as it can hold; try again "
                             "later", retry_after=self.services.settings.retry_after)

    # -- running -------------------------------------------------------------------

    async def _run(self, job_id: str, job: execution.Prepared) -> None:
        JOB_ID.set(job_id)  # this task's own context: every line it logs names the job
        output = self._outputs[job_id] = execution.Output()

        async def running() -> bytes | None:
            async with self._gates[job.controls.service or job.body.service]:
                if not self._start(job_id):
                    return None
                return await execution.run(self.services, job, self._progress(job_id), output,
                                           min_batches=PROGRESS_BATCHES)

        await self._settle(job_id, running(), output)

    async def _run_work(self, job_id: str, work: Work) -> None:
        JOB_ID.set(job_id)  # this task's own context: every line it logs names the job
        output = self._outputs[job_id] = execution.Output()

        async def running() -> bytes | None:
            if not self._start(job_id):
                return None
            return await work(output)

        await self._settle(job_id, running(), output)

    async def _settle(self, job_id: str, running: Awaitable[bytes | None],
                      output: execution.Output) -> None:
        """Wait for the job's work and write its answer, however it ends."""
        try:
            if (body := await running) is None:
                return
            self._finish(job_id, Status.FINISH, Answer(200, wrap_result(body)), output)
        except EpeError as e:
            self._finish(job_id, status_for(e), _error_answer(e, e.status), output)
        except asyncio.CancelledError:
            # Deleted by its owner (the record is going), or the server is stopping.
            self._finish(job_id, Status.FAILED,
                         _error_answer(JobInterrupted(STOPPED_MESSAGE), 400), output)
            raise
        except Exception as e:
            log.exception("job %s failed with an internal error", job_id)
            self._finish(job_id, Status.FAILED, _error_answer(InternalError(
                f"internal error while running the job: {type(e).__name__}"), 500), output)
        finally:
            self._tasks.pop(job_id, None)
            self._outputs.pop(job_id, None)
            self._untrack(job_id)

    def _start(self, job_id: str) -> bool:
        if not self.store.move(job_id, Status.RUNNING):
            return False
        self._untrack(job_id)
        self._states[job_id] = Status.RUNNING
        metrics.JOBS.labels(Status.RUNNING.value).inc()
        return True

    def _admitted(self, record: JobRecord, status: Status) -> None:
        metrics.JOBS_SUBMITTED.labels(record.kind).inc()
        self._states[record.id] = status
        metrics.JOBS.labels(status.value).inc()

    def _untrack(self, job_id: str) -> None:
        if (state := self._states.pop(job_id, None)) is not None:
            metrics.JOBS.labels(state.value).dec()

    def _progress(self, job_id: str) -> execution.Progress:
        # Every update is written: a job has at most a few dozen batches, and a
        # throttle would drop the last update before a long pause.
        def report(done: int, total: int) -> None:
            self.store.progress(job_id, done, total)

        return report

    def _finish(self, job_id: str, status: Status, answer: Answer,
                output: execution.Output) -> None:
        folder = self.root / job_id
        if not folder.is_dir():
            return  # deleted while it ran
        with contextlib.suppress(FileNotFoundError):
            write_atomically(folder / "log.txt", output.text().encode())
            self._write_answer(job_id, answer)
            if self.store.move(job_id, status, http_status=answer.status,
                               result_path=str(folder / "answer.json")):
                metrics.JOBS_ENDED.labels(status.value).inc()

    def _write_answer(self, job_id: str, answer: Answer) -> None:
        folder = self.root / job_id
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / "answer.json", answer.body)
        write_atomically(folder / "status", str(answer.status).encode())

    # -- reading -------------------------------------------------------------------

    def get(self, job_id: str, owner: str) -> JobRecord:
        job = self.store.get(job_id, owner)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job

    def answer(self, job: JobRecord) -> Answer | None:
        """The finished job's answer; ``None`` while it has not ended."""
        if not job.status.ended:
            return None
        folder = self.root / job.id
        try:
            status = int((folder / "status").read_bytes())
            return Answer(status, (folder / "answer.json").read_bytes())
        except FileNotFoundError:
            raise NotFound(f"the result of job {job.id} is no longer kept") from None

    def log_text(self, job: JobRecord) -> str:
        """The log so far while the job runs (an environment's build writes as it goes)."""
        if (live := self._outputs.get(job.id)) is not None:
            return live.text()
        try:
            return (self.root / job.id / "log.txt").read_text()
        except FileNotFoundError:
            return ""

    def jobs_of(self, owner: str) -> list[JobRecord]:
        return self.store.of_owner(owner)

    # -- deleting ------------------------------------------------------------------

    async def delete(self, job_id: str, owner: str) -> None:
        """Stop the job if it runs (its workers are killed and replaced) and delete it."""
        self.get(job_id, owner)
        shutil.rmtree(self.root / job_id, ignore_errors=True)
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.store.delete(job_id)

    async def delete_all(self, owner: str) -> None:
        """Every job of ``owner`` stopped and deleted (the user is going away)."""
        for job in self.store.of_owner(owner):
            await self.delete(job.id, owner)

    async def _sweep_forever(self) -> None:
        # Often enough that a short retention (in tests, say) is honoured promptly.
        interval = min(SWEEP_INTERVAL, max(1.0, self.services.settings.job_retention / 4))
        while True:
            self.sweep()
            await asyncio.sleep(interval)

    def sweep(self) -> int:
        """Delete jobs that ended longer ago than the retention setting."""
        expired = self.store.ended_before(time.time() - self.services.settings.job_retention)
        for job in expired:
            shutil.rmtree(self.root / job.id, ignore_errors=True)
            self.store.delete(job.id)
        if expired:
            log.info("deleted %d jobs past their retention", len(expired))
        return len(expired)


def _error_answer(error: EpeError, status: int) -> Answer:
    return Answer(status, orjson.dumps(error.body()))
