"""Async jobs: admitted, queued, run, kept, and never lost (docs/api.md, async jobs;
docs/deploy.md, the job queue).

Every state is written to the metadata store before it is acted on, from a
thread, never on the event loop. The jobs table is the queue (``epe.store.jobs``):
this server holds the jobs it accepts while they wait; whenever it has a free
slot at a job's service level it claims the oldest waiting one, its own or,
where servers share a PostgreSQL database, another server's. A job's answer
(the exact body and status a sync call would have had) is kept
(``epe.service.answers``) before, or as, the job is marked ended.

A job that was waiting or running when its server stopped is marked FAILED,
never re-run: user code may have had side effects. A single server does it at
its next start; where servers share the database, any other does it once the
stopped server's lease has run out (a heartbeat renews the leases of a live
one). A job deleted through another server, or failed by one because this one
missed its heartbeats, is stopped here at the next heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from epe.auth.tokens import TokenClaims
from epe.core.jobs import Status, status_for
from epe.core.operations import OPERATIONS
from epe.core.params import parse_parameters
from epe.core.requests import Service
from epe.core.results import wrap_result
from epe.errors import (
    Conflict,
    EpeError,
    InternalError,
    JobInterrupted,
    NotFound,
    ServerBusy,
)
from epe.service import runs as execution
from epe.service.answers import Answer, Answers, FolderAnswers, StoreAnswers
from epe.service.services import Services
from epe.service.sessions import Caller
from epe.store.jobs import JobRecord, QueueFull

log = logging.getLogger("epe.jobs")

STOPPED_MESSAGE = ("the server stopped while this job was waiting or running; it was not "
                   "re-run, because the function may have had side effects: submit it again")
PROGRESS_BATCHES = 20  # an async run is cut into at least this many batches, for progress
SWEEP_INTERVAL = 3600.0
HEARTBEATS_PER_LEASE = 5
LEVELS: tuple[Service, ...] = ("LOW", "MEDIUM", "HIGH")

# Work a job does that is not a run: given the job's output, it returns its result's JSON.
Work = Callable[[execution.Output], Awaitable[bytes]]

__all__ = ["STOPPED_MESSAGE", "Answer", "JobManager", "Work"]


@dataclass
class _Accepted:
    """A job this server accepted and nobody has claimed yet."""

    job: execution.Prepared
    level: str  # its service level
    since: float  # time.monotonic() when it was accepted
    hold: Any = None  # the lease on its named environment, while it waits and runs


def answers_for(services: Services) -> Answers:
    if services.store.shared:
        return StoreAnswers(services.store.jobs)
    return FolderAnswers(services.settings.data_dir / "jobs", services.store.jobs)


class JobManager:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.store = services.store.jobs
        self.answers = answers_for(services)
        self.server = uuid.uuid4().hex  # this server's name in the queue
        self._tasks: dict[str, asyncio.Task[None]] = {}  # jobs running here
        self._since: dict[str, float] = {}  # when each of them was claimed (monotonic)
        self._accepted: dict[str, _Accepted] = {}
        self._free: dict[str, int] = {level: self.settings.job_concurrency(level)
                                      for level in LEVELS}
        self._deleting: set[str] = set()
        self._progress_writes: dict[str, asyncio.Task[None]] = {}
        self._latest: dict[str, tuple[int, int]] = {}
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        if not self.services.store.shared:  # one server: what is unfinished was its own
            for job_id in await asyncio.to_thread(self.store.fail_unfinished,
                                                  STOPPED_MESSAGE):
                log.warning("job %s was unfinished when the server stopped; marked FAILED",
                            job_id)
        self._loops = [asyncio.create_task(loop()) for loop in (
            self._dispatch_forever, self._heartbeat_forever, self._sweep_forever)]

    async def stop(self) -> None:
        """Fail the jobs still going or waiting here (cleanly: their answer says why)."""
        for loop in self._loops:
            loop.cancel()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._loops, return_exceptions=True)
        waiting = await asyncio.to_thread(self.store.fail_unfinished, STOPPED_MESSAGE,
                                          self.server, (Status.PENDING.value,))
        log.info("stopped: %d running and %d waiting jobs marked FAILED", len(tasks),
                 len(waiting))
        for accepted in self._accepted.values():
            _release(accepted)
        self._accepted.clear()

    # -- submitting ----------------------------------------------------------------

    async def submit(self, job: execution.Prepared, idempotency_key: str | None) -> JobRecord:
        owner = job.caller.name
        if idempotency_key and (same := await asyncio.to_thread(
                self.store.by_idempotency_key, owner, idempotency_key)):
            return same
        level = job.controls.service or job.body.service
        try:
            record = await asyncio.to_thread(
                self._create, owner=owner, kind=job.op.kind,
                request=job.body.model_dump_json(by_alias=True),
                idempotency_key=idempotency_key, service=level, source=job.source,
                pinned=job.body.env_name is not None)
        except Conflict:  # the same key raced in from a concurrent retry
            assert idempotency_key is not None
            same = await asyncio.to_thread(self.store.by_idempotency_key, owner,
                                           idempotency_key)
            assert same is not None
            return same
        accepted = self._accepted[record.id] = _Accepted(job, level, time.monotonic())
        if job.body.env_name is not None:  # the environment stays while the job waits
            accepted.hold = self.services.environments.hold(job.body.env_name)
        self._wake.set()
        return record

    async def submit_work(self, owner: str, kind: str, request: str, work: Work) -> JobRecord:
        """Run ``work`` as a job of ``owner``, here and now: one that is not a run
        (building an environment), so no other server may take it.

        Its answer is ``{"result": R}``, R the JSON ``work`` returns, or the error body of
        the ``EpeError`` it raises; what it adds to its ``Output`` is the job's log.
        """
        record = await asyncio.to_thread(self._create, owner=owner, kind=kind,
                                         request=request, idempotency_key=None, service=None,
                                         source=None, pinned=True)
        self._track(record.id, asyncio.create_task(self._run_work(record.id, work)))
        return record

    def _create(self, **values: Any) -> JobRecord:
        """A new job held by this server (blocking); 503 when it holds all it may."""
        try:
            record = self.store.create(id=uuid.uuid4().hex, server=self.server,
                                       lease=self.settings.job_lease,
                                       limit=self.settings.job_queue_limit, **values)
        except QueueFull:
            raise ServerBusy("the server has as many jobs waiting as it can hold; try again "
                             "later", retry_after=self.settings.retry_after) from None
        self.answers.open(record.id)
        return record

    # -- claiming ------------------------------------------------------------------

    async def _dispatch_forever(self) -> None:
        # Jobs accepted here wake the loop at once; other servers' only by looking.
        poll = self.settings.job_poll_interval if self.services.store.shared else None
        while True:
            self._wake.clear()
            try:
                await self._claim()
            except Exception:
                log.exception("claiming jobs failed; trying again")
                await asyncio.sleep(self.settings.job_poll_interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll)

    async def _claim(self) -> None:
        for level in LEVELS:
            # One server alone looks only when it has accepted something of this level.
            if self._free[level] <= 0 or not (self.services.store.shared or any(
                    a.level == level for a in self._accepted.values())):
                continue
            claimed = await asyncio.to_thread(self.store.claim, self.server, level,
                                              self._free[level], self.settings.job_lease)
            for record in claimed:
                self._free[level] -= 1
                self._start(record, level)

    def _start(self, record: JobRecord, level: str) -> None:
        accepted = self._accepted.pop(record.id, None)
        if record.id in self._deleting:  # deleted here while the claim was under way
            self._freed(level)
            if accepted is not None:
                _release(accepted)
            return
        task = asyncio.create_task(self._run(record, accepted))
        self._track(record.id, task)
        task.add_done_callback(lambda _task: self._freed(level))

    def _track(self, job_id: str, task: asyncio.Task[None]) -> None:
        self._tasks[job_id], self._since[job_id] = task, time.monotonic()

    def _freed(self, level: str) -> None:
        self._free[level] += 1
        self._wake.set()

    # -- leases --------------------------------------------------------------------

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.job_lease / HEARTBEATS_PER_LEASE)
            try:
                await self._heartbeat()
            except Exception:
                log.exception("the jobs' heartbeat failed; trying again")

    async def _heartbeat(self) -> None:
        """Renew this server's leases; stop what is no longer its own; fail the jobs of
        servers whose leases ran out."""
        began = time.monotonic()
        held = await asyncio.to_thread(self.store.renew, self.server, self.settings.job_lease)
        self._let_go(held, began)
        if self.services.store.shared:
            for job_id in await asyncio.to_thread(self.store.reap, self.server,
                                                  STOPPED_MESSAGE):
                log.warning("job %s: its server stopped renewing its lease; marked FAILED",
                            job_id)
        self._wake.set()

    def _let_go(self, held: set[str], began: float) -> None:
        """Jobs this server had before ``began`` that the database no longer says it
        holds: claimed by another server (waiting ones), deleted, or failed."""
        for job_id, since in list(self._since.items()):
            if job_id not in held and since < began and (task := self._tasks.get(job_id)):
                log.warning("job %s is no longer this server's (deleted, or failed by "
                            "another server): stopping it", job_id)
                task.cancel()
        for job_id, accepted in list(self._accepted.items()):
            if job_id not in held and accepted.since < began:
                _release(self._accepted.pop(job_id))

    # -- running -------------------------------------------------------------------

    async def _run(self, record: JobRecord, accepted: _Accepted | None) -> None:
        output = execution.Output()

        async def running() -> bytes:
            job = accepted.job if accepted else await asyncio.to_thread(
                restore, self.services, record)
            return await execution.run(self.services, job, self._progress(record.id), output,
                                       min_batches=PROGRESS_BATCHES)

        try:
            await self._settle(record.id, running(), output)
        finally:
            if accepted is not None:
                _release(accepted)

    async def _run_work(self, job_id: str, work: Work) -> None:
        output = execution.Output()

        async def running() -> bytes | None:
            if not await asyncio.to_thread(self.store.move, job_id, Status.RUNNING):
                return None
            return await work(output)

        await self._settle(job_id, running(), output)

    async def _settle(self, job_id: str, running: Awaitable[bytes | None],
                      output: execution.Output) -> None:
        """Wait for the job's work and keep its answer, however it ends."""
        try:
            if (body := await running) is None:
                return
            await self._finish(job_id, Status.FINISH, Answer(200, wrap_result(body)), output)
        except EpeError as e:
            await self._finish(job_id, status_for(e), _error_answer(e, e.status), output)
        except asyncio.CancelledError:
            # Deleted by its owner (the record is going), or the server is stopping.
            await self._finish(job_id, Status.FAILED,
                               _error_answer(JobInterrupted(STOPPED_MESSAGE), 400), output)
            raise
        except Exception as e:
            log.exception("job %s failed with an internal error", job_id)
            await self._finish(job_id, Status.FAILED, _error_answer(InternalError(
                f"internal error while running the job: {type(e).__name__}"), 500), output)
        finally:
            self._tasks.pop(job_id, None)
            self._since.pop(job_id, None)

    def _progress(self, job_id: str) -> execution.Progress:
        # Every update is written, the latest first if several wait: a job has at most a
        # few dozen batches, and a throttle would drop the last update before a long pause.
        def report(done: int, total: int) -> None:
            self._latest[job_id] = (done, total)
            if job_id not in self._progress_writes:
                self._progress_writes[job_id] = asyncio.create_task(self._write_progress(job_id))

        return report

    async def _write_progress(self, job_id: str) -> None:
        try:
            while (latest := self._latest.pop(job_id, None)) is not None:
                await asyncio.to_thread(self.store.progress, job_id, *latest)
        finally:
            self._progress_writes.pop(job_id, None)

    async def _finish(self, job_id: str, status: Status, answer: Answer,
                      output: execution.Output) -> None:
        if (writing := self._progress_writes.get(job_id)) is not None:
            await asyncio.gather(writing, return_exceptions=True)  # progress lands first
        await asyncio.to_thread(self.answers.keep, job_id, self.server, status, answer,
                                output.text())

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
        if (kept := self.answers.read(job)) is not None:
            return kept
        if job.error is not None:  # ended because its server stopped: the row says why
            return _error_answer(JobInterrupted(job.error), job.http_status or 400)
        raise NotFound(f"the result of job {job.id} is no longer kept")

    def log_text(self, job: JobRecord) -> str:
        return self.answers.log(job)

    def jobs_of(self, owner: str) -> list[JobRecord]:
        return self.store.of_owner(owner)

    # -- deleting ------------------------------------------------------------------

    async def delete(self, job_id: str, owner: str) -> None:
        """Stop the job if it runs here (its workers are killed and replaced; on another
        server, at that server's next heartbeat) and delete it."""
        await asyncio.to_thread(self.get, job_id, owner)
        self._deleting.add(job_id)
        try:
            await asyncio.to_thread(self.answers.drop, job_id)
            await asyncio.to_thread(self.store.delete, job_id)
            if (accepted := self._accepted.pop(job_id, None)) is not None:
                _release(accepted)
            task = self._tasks.get(job_id)
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        finally:
            self._deleting.discard(job_id)

    async def delete_all(self, owner: str) -> None:
        """Every job of ``owner`` stopped and deleted (the user is going away)."""
        for job in await asyncio.to_thread(self.store.of_owner, owner):
            await self.delete(job.id, owner)

    async def _sweep_forever(self) -> None:
        # Often enough that a short retention (in tests, say) is honoured promptly.
        interval = min(SWEEP_INTERVAL, max(1.0, self.settings.job_retention / 4))
        while True:
            try:
                await asyncio.to_thread(self.sweep)
            except Exception:
                log.exception("sweeping old jobs failed; trying again later")
            await asyncio.sleep(interval)

    def sweep(self) -> int:
        """Delete jobs that ended longer ago than the retention setting (blocking)."""
        expired = self.store.ended_before(time.time() - self.settings.job_retention)
        for job in expired:
            self.answers.drop(job.id)
            self.store.delete(job.id)
        if expired:
            log.info("deleted %d jobs past their retention", len(expired))
        return len(expired)


def restore(services: Services, record: JobRecord) -> execution.Prepared:
    """A job accepted by another server, as that server prepared it (blocking): its
    request, the script found when it was submitted, and its owner as the caller."""
    user = services.store.get_user(record.owner)
    if user is None or record.source is None:
        raise NotFound(f"the job's user {record.owner} no longer exists")
    op = OPERATIONS[record.kind]
    body = op.request.model_validate_json(record.request)
    kwargs, controls = parse_parameters(body.parameters)
    # The token was checked when the job was submitted; the run acts as its owner.
    claims = TokenClaims(user.name, jti="", issued=record.created, expires=record.created,
                         chain_start=record.created)
    return execution.Prepared(Caller(user, claims), op, body, record.source, kwargs, controls,
                              execution.run_timeout(services, body))


def _release(accepted: _Accepted) -> None:
    if accepted.hold is not None:
        accepted.hold.release()
        accepted.hold = None


def _error_answer(error: EpeError, status: int) -> Answer:
    return Answer(status, orjson.dumps(error.body()))
