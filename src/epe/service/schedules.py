"""Batch scoring jobs on a schedule (docs/models.md#schedules): made, listed, enabled,
disabled, run at once, deleted; and the loop that runs them when they are due.

Every server runs the loop. It claims the due jobs it may run (``ScheduleStore``:
once per slot, whichever server claims it) and runs each as an async job of its
owner (kind ``model_scoring``, in the owner's job list, with the owner's workers:
``service.scoring``), recording how each run ended beside the schedule. A run's own
row is ended before its async job is, so a run still RUNNING whose async job has
ended means its server stopped under it: the next pass marks it FAILED. Runs never
overlap: a job whose run is still going is not claimed, and the slots that pass
meanwhile are missed, as are those that pass while no server runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

import orjson

from epe.core import schedules as timing
from epe.core.names import check_object_name, iso_instant, parse_instant
from epe.core.requests import ScoringJobCreate
from epe.data import is_shared
from epe.data.names import check_table_name
from epe.errors import EpeError, NotFound
from epe.observe import metrics
from epe.service import scoring
from epe.service.jobs import JobManager
from epe.service.models import Models
from epe.service.services import Services
from epe.service.sessions import Caller
from epe.store.schedules import FAILED, FINISH, Claimed, RunRecord, ScoringJobRecord

log = logging.getLogger("epe.models")

STOPPED = "the server running this run stopped before it ended"
CLAIMS_PER_PASS = 8  # due jobs one server claims at a time
RUNS_SHOWN = 50  # runs a job's listing shows, the newest first


def schedule_of(job: ScoringJobRecord) -> timing.Schedule:
    return timing.Schedule(job.start_at, job.repeat, job.end_at, job.max_runs)


def next_slot(job: ScoringJobRecord, slot: float, now: float, runs: int) -> float | None:
    return timing.run_after(schedule_of(job), slot, now, runs)


def status_of(job: ScoringJobRecord) -> str:
    if job.next_run is None:
        return "COMPLETED"
    return "ENABLED" if job.enabled else "DISABLED"


def _date(ts: float | None) -> str | None:
    return None if ts is None else iso_instant(ts)


def describe_run(run: RunRecord) -> dict[str, Any]:
    return {"runId": run.id, "scheduledDate": _date(run.scheduled), "status": run.status,
            "startedDate": _date(run.started), "finishedDate": _date(run.finished),
            "rows": run.rows, "errorMessage": run.error, "jobId": run.job_id,
            "server": run.server}


def describe(job: ScoringJobRecord, runs: list[RunRecord] | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "jobId": job.id, "jobName": job.name, "jobType": "MODEL_SCORING",
        "jobStatus": status_of(job), "owner": job.owner,
        "jobSchedule": {"jobStartDate": _date(job.start_at), "repeatInterval": job.repeat,
                        "jobEndDate": _date(job.end_at), "maxRuns": job.max_runs},
        "jobProperties": {"modelId": job.model_id, "inputData": job.input_table,
                          "outputData": job.output_table,
                          "supplementalColumnNames": job.supplemental_columns},
        "nextRunDate": _date(job.next_run), "runCount": job.run_count,
        "createdDate": _date(job.created)}
    if runs is not None:
        info["runs"] = [describe_run(r) for r in runs]
    return info


class ScoringJobs:
    def __init__(self, services: Services, jobs: JobManager) -> None:
        self.services = services
        self.jobs = jobs
        self.store = services.store.schedules
        self.models = Models(services)
        self.server = jobs.queue.name
        self.wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    # -- making and changing -------------------------------------------------------------

    def create(self, caller: Caller, body: ScoringJobCreate) -> ScoringJobRecord:
        """A new schedule of the caller's, for a model they may score: their own, a
        shared one, or one granted to them (blocking)."""
        props, when = body.job_properties, body.job_schedule
        model = self.models.get(caller, props.model_id)
        supplemental = [check_table_name(s) for s in props.supplemental_column_names]
        scoring.check_supplemental(model.function, supplemental)
        schedule = timing.Schedule(
            float(int(parse_instant(when.job_start_date, "jobStartDate"))),
            when.repeat_interval,
            None if when.job_end_date is None else parse_instant(when.job_end_date,
                                                                 "jobEndDate"),
            when.max_runs)
        timing.check(schedule)
        now = time.time()
        job = ScoringJobRecord(
            id=uuid.uuid4().hex, owner=caller.name,
            name=check_object_name(body.job_name, "job"), model_id=model.id,
            input_table=check_table_name(props.input_data),
            output_table=check_table_name(props.output_data),
            supplemental=orjson.dumps(supplemental).decode(), start_at=schedule.start,
            end_at=schedule.end, repeat=schedule.repeat, max_runs=schedule.max_runs,
            enabled=True, next_run=timing.first_run(schedule, now), run_count=0,
            # Tables kept by each server (embedded DuckDB) are read where they are.
            server=None if is_shared(self.services.settings.tables_url) else self.server,
            created=now)
        self.store.create(job)
        self.services.audit.record("model", "schedule", caller.name, owner=caller.name,
                                   name=job.id, jobName=job.name, modelId=model.id)
        self.wake.set()
        return job

    def get(self, caller: Caller, job_id: str) -> ScoringJobRecord:
        job = self.store.get(job_id, caller.name)
        if job is None:
            raise NotFound(f"no scoring job {job_id}")
        return job

    def listing(self, caller: Caller) -> list[ScoringJobRecord]:
        return self.store.of_owner(caller.name)

    def runs(self, job: ScoringJobRecord) -> list[RunRecord]:
        return self.store.runs(job.id, RUNS_SHOWN)

    async def act(self, caller: Caller, job_id: str, action: str) -> dict[str, Any]:
        """ENABLE (from the next slot after now), DISABLE, or RUN once now."""
        job = await asyncio.to_thread(self.get, caller, job_id)
        if action == "RUN":
            run = await asyncio.to_thread(self.store.start_now, job.id, self.server)
            await self._launch(Claimed(job, run))
            self.services.audit.record("model", "run", caller.name, owner=caller.name,
                                       name=job.id)
            return {"runId": run}
        upcoming = timing.first_run(schedule_of(job), time.time()) \
            if action == "ENABLE" and (job.max_runs is None or job.run_count < job.max_runs) \
            else job.next_run
        await asyncio.to_thread(self.store.set_enabled, job.id, action == "ENABLE", upcoming)
        self.services.audit.record("model", action.lower(), caller.name, owner=caller.name,
                                   name=job.id)
        self.wake.set()
        return {"jobStatus": status_of(await asyncio.to_thread(self.get, caller, job_id))}

    def delete(self, caller: Caller, job_id: str) -> None:
        """The schedule and its runs' history; a run going now finishes."""
        job = self.get(caller, job_id)
        self.store.delete(job.id)
        self.services.audit.record("model", "unschedule", caller.name, owner=caller.name,
                                   name=job.id)

    # -- the loop --------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.create_task(self._forever())

    async def stop(self) -> None:
        """Stop claiming; runs going here end with their async jobs (the job manager
        stops them, and they are recorded FAILED)."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)

    async def _forever(self) -> None:
        poll = self.services.settings.schedule_poll_interval
        grace = 2 * self.services.settings.job_lease
        while True:
            self.wake.clear()
            try:
                await asyncio.to_thread(self.store.reap, STOPPED, grace)
                # A draining server starts no new run: another server claims it.
                for claimed in [] if self.services.drain.draining else await asyncio.to_thread(
                        self.store.claim_due, self.server, CLAIMS_PER_PASS, next_slot):
                    await self._launch(claimed)
                soonest = await asyncio.to_thread(self.store.earliest, self.server)
            except Exception:
                log.exception("looking for due scoring jobs failed; trying again")
                soonest = None
            wait = poll if soonest is None else min(poll, max(0.0, soonest - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), wait + 0.01)

    async def _launch(self, claimed: Claimed) -> None:
        """Run a claimed run as an async job of the job's owner."""
        job, run = claimed.job, claimed.run
        log.info("scoring job %s (%s of %s): run %d begins here", job.id, job.name, job.owner,
                 run)
        request = orjson.dumps({"scoringJob": job.id, "jobName": job.name, "run": run,
                                "modelId": job.model_id, "inputData": job.input_table,
                                "outputData": job.output_table}).decode()
        try:
            record = await self.jobs.submit_work(
                job.owner, "model_scoring", request,
                lambda output: self._run(job, run, output.parts))
        except BaseException as e:
            await asyncio.to_thread(self.store.run_ended, run, FAILED,
                                    error=e.message if isinstance(e, EpeError) else STOPPED)
            raise
        await asyncio.to_thread(self.store.run_job, run, record.id)

    async def _run(self, job: ScoringJobRecord, run: int, log_lines: list[str]) -> bytes:
        """One run: the table scored and written; the run's row ended first."""
        try:
            model = await asyncio.to_thread(self.services.store.models.get, job.model_id)
            if model is None:
                raise NotFound(f"model {job.model_id} no longer exists")
            # Asked at every run: a revoked grant, or a membership that ended, stops it.
            if not await asyncio.to_thread(self.services.store.models.open_to, model,
                                           job.owner):
                raise NotFound(f"model {job.model_id} is no longer shared with or granted "
                               f"to {job.owner}")
            target = scoring.Target(job.owner, job.input_table, job.output_table,
                                    tuple(job.supplemental_columns))
            rows = await scoring.score_table(self.services, model, target,
                                             self.services.settings.default_timeout)
        except BaseException as e:
            message = e.message if isinstance(e, EpeError) else \
                STOPPED if isinstance(e, asyncio.CancelledError) else \
                f"internal error: {type(e).__name__}"
            log_lines.append(f"run {run} failed: {message}\n")
            await asyncio.shield(asyncio.to_thread(self.store.run_ended, run, FAILED,
                                                   error=message))
            metrics.series(metrics.SCORING_RUNS, FAILED).inc()
            raise
        log_lines.append(f"run {run}: {rows} rows scored into {job.output_table}\n")
        await asyncio.to_thread(self.store.run_ended, run, FINISH, rows=rows)
        metrics.series(metrics.SCORING_RUNS, FINISH).inc()
        self.services.audit.record("model", "batch", job.owner, owner=job.owner, name=job.id,
                                   rows=rows)
        return orjson.dumps({"scoringJob": job.id, "run": run, "rows": rows,
                             "outputData": job.output_table})
