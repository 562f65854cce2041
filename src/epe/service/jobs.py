"""Async jobs: admitted, queued, run, kept, and never lost (docs/api.md, async jobs;
docs/deploy.md, the job queue).

Every state is written to the metadata store before it is acted on, from a
thread, never on the event loop. The jobs table is the queue
(``epe.service.queue``): this server holds the jobs it accepts while they wait,
and runs the ones it claims for its free slots, its own or, where servers share
a PostgreSQL database, another server's. A job's answer (the exact body and
status a sync call would have had) is kept (``epe.service.answers``) before, or
as, the job is marked ended.

A server that stops drains first (``epe.service.drain``): it takes no new jobs,
hands the ones waiting here back to the queue and lets the running ones finish
within its grace. A job that was running when its server stopped, past that
grace or killed, is marked FAILED, never re-run: user code may have had side
effects. The server does it at once, or when it starts again on its data folder;
where servers share the database, any other does it once the stopped server's
lease has run out. A job still waiting then has not started: it is run, by
another server or by this one once it is back. A job deleted through another
server, or failed by one because this one missed its heartbeats, is stopped here
at the next heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace

import orjson

from epe.core.jobs import Status, status_for
from epe.core.results import wrap_result
from epe.data import is_shared
from epe.errors import (
    Conflict,
    EpeError,
    InternalError,
    JobInterrupted,
    NotFound,
    ServerBusy,
    StorageQuotaExceeded,
    TooManyRequests,
)
from epe.observe import metrics
from epe.observe.logs import JOB_ID
from epe.service import runs
from epe.service.answers import Answer, Answers, FolderAnswers, StoreAnswers
from epe.service.pyq import TableFunctions
from epe.service.queue import Accepted, Queue, Work, restore
from epe.service.services import Services
from epe.store.jobs import Admission, JobRecord, NewJob, QueueFull, UserQueueFull

log = logging.getLogger("epe.jobs")

STOPPED_MESSAGE = ("the server stopped while this job was running; it was not re-run, "
                   "because the function may have had side effects: submit it again")
PROGRESS_BATCHES = 20  # an async run is cut into at least this many batches, for progress
SWEEP_INTERVAL = 3600.0


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
        self.queue = Queue(services)
        self._tasks: dict[str, asyncio.Task[None]] = {}  # jobs running here
        self._claiming = False  # a claim under way, which may start jobs here
        self._deleting: set[str] = set()
        self._progress_writes: dict[str, asyncio.Task[None]] = {}
        self._latest: dict[str, tuple[int, int]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._outputs: dict[str, runs.Output] = {}  # of the jobs running here
        self._states: dict[str, Status] = {}  # live jobs here, as the gauge counts them
        self._stopped_message = STOPPED_MESSAGE  # what a job stopped with the server says
        # Kinds of queued work that is not a run: how to make a job's work from its record
        # (blocking), when a server runs a job it did not accept or accepted before it stopped.
        self.restorers: dict[str, Callable[[JobRecord], Work]] = {}

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        for job_id in await self.queue.take_over_leftovers(STOPPED_MESSAGE):
            log.warning("job %s was running when the server stopped; marked FAILED", job_id)
        self._loops = [asyncio.create_task(loop()) for loop in (
            self._dispatch_forever, self._heartbeat_forever, self._sweep_forever)]

    async def stop(self) -> None:
        """Fail the jobs still running here (cleanly: their answer says why) and hand
        the waiting ones back to the queue."""
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        stopped = await self.interrupt(self._stopped_message)
        handed = await self.hand_back()
        if stopped or handed:
            log.info("stopping: %d running jobs marked FAILED, %d waiting jobs handed back",
                     stopped, handed)
        self.queue.close()

    @property
    def running(self) -> int:
        """Jobs (environment builds included) running here."""
        return len(self._tasks)

    @property
    def idle(self) -> bool:
        """No job runs here, and no claim is under way: a claim that began before a drain
        may still start jobs, which the drain must then wait for."""
        return not self._tasks and not self._claiming

    async def hand_back(self) -> int:
        """Give the jobs waiting here back to the queue (the server stops); how many."""
        for job_id in list(self.queue.accepted):
            self._untrack(job_id)
        handed = await self.queue.hand_back()
        for job_id in handed:
            log.info("job %s is handed back to the queue", job_id)
        return len(handed)

    async def interrupt(self, message: str) -> int:
        """Stop the jobs running here: each ends FAILED with ``message``; how many."""
        self._stopped_message = message
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)

    # -- submitting ----------------------------------------------------------------

    async def submit(self, job: runs.Prepared, idempotency_key: str | None) -> JobRecord:
        self.services.drain.admit()
        owner = job.caller.name
        if idempotency_key and (same := await asyncio.to_thread(
                self.store.by_idempotency_key, owner, idempotency_key)):
            return same
        level = job.controls.service or job.body.service
        accepted = Accepted(job, level)
        if job.body.env_name is not None:  # the environment stays while the job waits
            accepted.hold = self.services.environments.hold(job.body.env_name)
        try:
            return await self._enqueue(NewJob(
                owner, job.op.kind, job.body.model_dump_json(by_alias=True),
                idempotency_key=idempotency_key, service=level, source=job.source,
                script=job.script.key, pinned=self._pinned(job)), accepted)
        except Conflict:
            # The same key raced in from a concurrent retry.
            assert idempotency_key is not None
            same = await asyncio.to_thread(self.store.by_idempotency_key, owner,
                                           idempotency_key)
            assert same is not None
            return same

    async def _enqueue(self, new: NewJob, accepted: Accepted) -> JobRecord:
        """Admit a job of ``accepted.level`` under its owner's limits (``_create``): it
        runs at once where a slot is free and its turn has come, else it waits here for
        the fair share to start it (``Queue.claim``)."""
        level = accepted.level
        now = self.queue.take(level)  # a free slot here: it may run at once
        try:
            record = await asyncio.to_thread(self._create, new, running=now)
        except BaseException:
            accepted.release()
            if now:
                self.queue.give_back(level)
            raise
        self._admitted(record, record.status)
        if record.status is Status.RUNNING:
            self._start(record, accepted)
            return record
        if now:  # its owner runs all they may, or others' jobs wait for the slot first
            self.queue.give_back(level)
        self.queue.accept(record.id, accepted)
        return record

    async def submit_work(self, owner: str, kind: str, request: str, work: Work, *,
                          service: str | None = None, pinned: bool = True) -> JobRecord:
        """Run ``work`` as a job of ``owner``.

        With a ``service`` level (a batch scoring run) it is one of the owner's jobs as
        any run is: admitted under their running and waiting limits (429 past the
        waiting one), started by the fair share at that level, by any server unless
        ``pinned`` (another server, or this one started again, makes its work anew
        with ``restorers[kind]``). Without (an admin's environment build) it runs here
        and now, takes no slot and counts towards no limit (docs/operations.md#fair-share).

        Its answer is ``{"result": R}``, R the JSON ``work`` returns, or the error body of
        the ``EpeError`` it raises; what it adds to its ``Output`` is the job's log.
        """
        self.services.drain.admit()
        if service is not None:
            return await self._enqueue(NewJob(owner, kind, request, service=service,
                                              pinned=pinned),
                                       Accepted(None, service, work=work))
        record = await asyncio.to_thread(self._create, NewJob(owner, kind, request,
                                                              pinned=True))
        self._admitted(record, Status.RUNNING)
        self.queue.started(record.id)
        task = self._tasks[record.id] = asyncio.create_task(self._run_work(record.id, work))
        task.add_done_callback(lambda _task: self.queue.freed(record.id, None))
        return record

    def _pinned(self, job: runs.Prepared) -> bool:
        """Whether only this server may run the job: it names an environment (each
        server has its own), or reads tables, which are this server's own unless the
        data layer is shared."""
        tables_here = not is_shared(self.settings.tables_url)
        return job.body.env_name is not None or (job.op.input.query and tables_here)

    def _create(self, job: NewJob, running: bool = False) -> JobRecord:
        """A new job held by this server (blocking); 503 when it holds all it may, 429
        when a run would wait and its owner has all the jobs waiting they may."""
        admission = Admission(held=self.settings.job_queue_limit)
        if job.service is not None:  # a run: its owner's limits count
            limits = self.services.limits.for_user(job.owner)
            admission = replace(admission, running=limits.running_jobs,
                                waiting=limits.waiting_jobs)
        try:
            record = self.store.create(job, id=uuid.uuid4().hex, server=self.queue.name,
                                       lease=self.settings.job_lease, admission=admission,
                                       running=running)
        except QueueFull:
            metrics.REFUSED.labels("job_queue_full").inc()
            raise ServerBusy("the server has as many jobs waiting as it can hold; try again "
                             "later", retry_after=self.settings.retry_after) from None
        except UserQueueFull:
            raise TooManyRequests(
                f"you have {admission.waiting} job{'s' if admission.waiting != 1 else ''} "
                "waiting to run, as many as you may "
                "(EPE_USER_WAITING_JOBS, or the limit an admin set for you): submit more "
                "once some have started", retry_after=self.settings.retry_after) from None
        self.answers.open(record.id)
        return record

    # -- the queue -----------------------------------------------------------------

    async def _dispatch_forever(self) -> None:
        # Jobs accepted here wake the loop at once; other servers' only by looking.
        poll = self.settings.job_poll_interval if self.queue.shared else None
        while True:
            self.queue.wake.clear()
            try:
                await self._claim_and_start()
            except Exception:
                log.exception("claiming jobs failed; trying again")
                await asyncio.sleep(self.settings.job_poll_interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.wake.wait(), poll)

    async def _claim_and_start(self) -> None:
        if self.services.drain.draining:
            return  # a draining server claims nothing more: what waits is another's to run
        self._claiming = True
        try:
            for record, accepted in await self.queue.claim():
                self._start(record, accepted)
        finally:
            self._claiming = False

    def _start(self, record: JobRecord, accepted: Accepted | None) -> None:
        level = str(record.service)
        if record.id in self._deleting:  # deleted here while the claim was under way
            self.queue.freed(record.id, level)
            if accepted is not None:
                accepted.release()
            return
        self.queue.started(record.id)
        self._track(record.id, Status.RUNNING)
        task = self._tasks[record.id] = asyncio.create_task(self._run(record, accepted))
        task.add_done_callback(lambda _task: self.queue.freed(record.id, level))

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.queue.heartbeat_interval)
            try:
                lost = await self.queue.heartbeat(STOPPED_MESSAGE)
            except Exception:
                log.exception("the jobs' heartbeat failed; trying again")
                continue
            for job_id in lost:
                if (task := self._tasks.get(job_id)) is not None:
                    log.warning("job %s is no longer this server's (deleted, or failed by "
                                "another server): stopping it", job_id)
                    task.cancel()

    # -- running -------------------------------------------------------------------

    async def _run(self, record: JobRecord, accepted: Accepted | None) -> None:
        JOB_ID.set(record.id)  # this task's own context: every line it logs names the job
        log.info("job %s runs here%s", record.id, "" if accepted else
                 " (accepted by another server)")
        output = self._outputs[record.id] = runs.Output()

        async def running() -> bytes:
            work = accepted.work if accepted else None
            if work is None and record.kind in self.restorers:  # work accepted elsewhere
                work = await asyncio.to_thread(self.restorers[record.kind], record)
            if work is not None:
                return await work(output)
            job = accepted.job if accepted and accepted.job else await asyncio.to_thread(
                restore, self.services, record)
            return await runs.run(self.services, job, progress=self._progress(record.id),
                                       output=output, min_batches=PROGRESS_BATCHES,
                                       functions=TableFunctions(self.services, job.caller, self))

        # Work's answer is a short summary of what it stored, and that write was checked
        # against the quota itself (a batch run's output table): never refused after it.
        is_work = bool(accepted and accepted.work) or record.kind in self.restorers
        try:
            await self._settle(record.id, running(), output,
                               owner=None if is_work else record.owner)
        finally:
            if accepted is not None:
                accepted.release()

    async def _run_work(self, job_id: str, work: Work) -> None:
        JOB_ID.set(job_id)
        output = self._outputs[job_id] = runs.Output()

        async def running() -> bytes | None:
            if not await asyncio.to_thread(self.store.move, job_id, Status.RUNNING):
                return None
            return await work(output)

        await self._settle(job_id, running(), output)

    async def _settle(self, job_id: str, running: Awaitable[bytes | None],
                      output: runs.Output, owner: str | None = None) -> None:
        """Wait for the job's work and keep its answer, however it ends: a result that
        would take ``owner`` past their storage quota is refused (the answer says so)."""
        try:
            if (body := await running) is None:
                return
            status, answer = Status.FINISH, Answer(200, wrap_result(body))
            if owner is not None:
                status, answer = await asyncio.to_thread(self._within_quota, owner, answer,
                                                         output)
            await self._finish(job_id, status, answer, output)
        except EpeError as e:
            await self._finish(job_id, status_for(e), _error_answer(e, e.status), output)
        except asyncio.CancelledError:
            # Deleted by its owner (the record is going), or the server is stopping.
            await self._finish(job_id, Status.FAILED,
                               _error_answer(JobInterrupted(self._stopped_message), 400),
                               output)
            raise
        except Exception as e:
            log.exception("job %s failed with an internal error", job_id)
            await self._finish(job_id, Status.FAILED, _error_answer(InternalError(
                f"internal error while running the job: {type(e).__name__}"), 500), output)
        finally:
            self._tasks.pop(job_id, None)
            self._outputs.pop(job_id, None)
            self._untrack(job_id)

    def _within_quota(self, owner: str, answer: Answer,
                      output: runs.Output) -> tuple[Status, Answer]:
        """The job's end and answer: FINISH with its result where keeping it (and its log)
        fits ``owner``'s storage quota, FAILED with the refusal where not (blocking)."""
        size = len(answer.body) + len(output.text().encode())
        try:
            self.services.store.storage.check(owner, "keeping the job's result", size,
                                              self.services.limits.for_user(owner).storage)
        except StorageQuotaExceeded as e:
            return Status.FAILED, _error_answer(e, e.status)
        return Status.FINISH, answer

    # -- the jobs gauge: jobs of this server by state ----------------------------------

    def _admitted(self, record: JobRecord, status: Status) -> None:
        metrics.JOBS_SUBMITTED.labels(record.kind).inc()
        self._track(record.id, status)

    def _track(self, job_id: str, status: Status) -> None:
        self._untrack(job_id)
        self._states[job_id] = status
        metrics.JOBS.labels(status.value).inc()

    def _untrack(self, job_id: str) -> None:
        if (state := self._states.pop(job_id, None)) is not None:
            metrics.JOBS.labels(state.value).dec()

    def _progress(self, job_id: str) -> runs.Progress:
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
                      output: runs.Output) -> None:
        if (writing := self._progress_writes.get(job_id)) is not None:
            await asyncio.gather(writing, return_exceptions=True)  # progress lands first
        await asyncio.to_thread(self.answers.keep, job_id, self.queue.name, status, answer,
                                output.text())
        metrics.JOBS_ENDED.labels(status.value).inc()

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
        """The log so far while the job runs here (an environment's build writes as it
        goes), else the one kept with its answer."""
        if (live := self._outputs.get(job.id)) is not None:
            return live.text()
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
            if (accepted := self.queue.accepted.pop(job_id, None)) is not None:
                accepted.release()
                self._untrack(job_id)
            if (task := self._tasks.get(job_id)) is not None:
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


def _error_answer(error: EpeError, status: int) -> Answer:
    return Answer(status, orjson.dumps(error.body()))
