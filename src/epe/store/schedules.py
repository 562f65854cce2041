"""Batch scoring jobs on a schedule, and each of their runs (docs/models.md#schedules).

The schedule is a row of ``scoring_jobs``; its ``next_run`` is the slot it waits
for. Every server looks for due rows and *claims* them as the job queue claims jobs
(``epe.store.jobs``): ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the write lock on
SQLite, and in the same transaction ``next_run`` moves to the next slot and the run
is written. Two servers can never claim one slot: the second one either skips the
locked row or, once the first has committed, no longer finds it due. "Now" is the
database's clock, so servers' clocks need not agree.

A job with a run still going is not claimed again: a slot that passes meanwhile is
missed, not queued.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, delete, exists, func, insert, not_, or_, select, update
from sqlalchemy.exc import IntegrityError

from epe.errors import Conflict
from epe.store import schema
from epe.store.engine import db_now, writing

_J, _R = schema.scoring_jobs, schema.scoring_runs
RUNNING, FINISH, FAILED = "RUNNING", "FINISH", "FAILED"
_ENDED_JOBS = ("FINISH", "FAILED", "CANCELLED", "TIMEOUT")


@dataclass(frozen=True)
class ScoringJobRecord:
    id: str
    owner: str
    name: str
    model_id: str
    input_table: str
    output_table: str
    supplemental: str  # JSON list
    start_at: float
    end_at: float | None
    repeat: str
    max_runs: int | None
    enabled: bool
    next_run: float | None
    run_count: int
    server: str | None
    created: float

    @property
    def supplemental_columns(self) -> list[str]:
        return list(json.loads(self.supplemental))


@dataclass(frozen=True)
class RunRecord:
    id: int
    scoring_job: str
    scheduled: float | None
    status: str
    started: float
    finished: float | None
    server: str
    job_id: str | None
    rows: int | None
    error: str | None


@dataclass(frozen=True)
class Claimed:
    job: ScoringJobRecord
    run: int  # the run's id


# Given a job and the slot it is claimed for, the database's now and the runs begun with
# this one: its next slot, or None when it has no more.
NextSlot = Callable[[ScoringJobRecord, float, float, int], float | None]


class ScheduleStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, record: ScoringJobRecord) -> None:
        try:
            with writing(self.engine) as conn:
                conn.execute(insert(_J).values(**vars(record)))
        except IntegrityError:
            raise Conflict(f"a scoring job named {record.name} exists already") from None

    def get(self, job_id: str, owner: str) -> ScoringJobRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(_J).where(and_(_J.c.id == job_id,
                                                     _J.c.owner == owner))).first()
        return None if row is None else ScoringJobRecord(**row._mapping)

    def of_owner(self, owner: str) -> list[ScoringJobRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(_J).where(_J.c.owner == owner).order_by(_J.c.created))
            return [ScoringJobRecord(**r._mapping) for r in rows]

    def naming_model(self, model_id: str) -> list[str]:
        """The names of the scoring jobs that score with ``model_id``."""
        with self.engine.connect() as conn:
            return list(conn.execute(select(_J.c.name).where(_J.c.model_id == model_id))
                        .scalars())

    def set_enabled(self, job_id: str, enabled: bool, next_run: float | None) -> None:
        with writing(self.engine) as conn:
            conn.execute(update(_J).where(_J.c.id == job_id).values(enabled=enabled,
                                                                     next_run=next_run))

    def delete(self, job_id: str) -> bool:
        with writing(self.engine) as conn:
            return bool(conn.execute(delete(_J).where(_J.c.id == job_id)).rowcount)

    # -- runs ----------------------------------------------------------------------------

    def runs(self, job_id: str, limit: int) -> list[RunRecord]:
        """The job's runs, the newest first."""
        query = select(_R).where(_R.c.scoring_job == job_id) \
            .order_by(_R.c.started.desc(), _R.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [RunRecord(**r._mapping) for r in conn.execute(query)]

    def claim_due(self, server: str, limit: int, next_slot: NextSlot) -> list[Claimed]:
        """Claim up to ``limit`` due jobs ``server`` may run: move each one's next run
        on and write its run, in one transaction."""
        running = exists().where(and_(_R.c.scoring_job == _J.c.id, _R.c.status == RUNNING))
        with writing(self.engine) as conn:
            now = float(conn.execute(select(db_now(conn))).scalar_one())
            rows = conn.execute(select(_J).where(and_(
                _J.c.enabled, _J.c.next_run <= now, not_(running),
                or_(_J.c.server.is_(None), _J.c.server == server)))
                .order_by(_J.c.next_run).limit(limit)
                .with_for_update(skip_locked=True, of=_J)).all()
            claimed = []
            for row in rows:
                job = ScoringJobRecord(**row._mapping)
                assert job.next_run is not None
                upcoming = next_slot(job, job.next_run, now, job.run_count + 1)
                conn.execute(update(_J).where(_J.c.id == job.id).values(
                    next_run=upcoming, run_count=_J.c.run_count + 1))
                claimed.append(Claimed(job, self._begin(conn, job.id, job.next_run, server)))
            return claimed

    def start_now(self, job_id: str, server: str) -> int:
        """A run begun by hand (it moves no slot); Conflict while one is going."""
        with writing(self.engine) as conn:
            going = conn.execute(select(_R.c.id).where(and_(
                _R.c.scoring_job == job_id, _R.c.status == RUNNING))).first()
            if going is not None:
                raise Conflict("a run of this scoring job is going; run it again once it "
                               "has ended")
            return self._begin(conn, job_id, None, server)

    @staticmethod
    def _begin(conn: Any, job_id: str, slot: float | None, server: str) -> int:
        return int(conn.execute(insert(_R).values(
            scoring_job=job_id, scheduled=slot, status=RUNNING, started=time.time(),
            server=server).returning(_R.c.id)).scalar_one())

    def run_job(self, run_id: int, job_id: str) -> None:
        """The async job the run runs as."""
        with writing(self.engine) as conn:
            conn.execute(update(_R).where(_R.c.id == run_id).values(job_id=job_id))

    def run_ended(self, run_id: int, status: str, rows: int | None = None,
                  error: str | None = None) -> None:
        with writing(self.engine) as conn:
            conn.execute(update(_R).where(and_(_R.c.id == run_id, _R.c.status == RUNNING))
                         .values(status=status, finished=time.time(), rows=rows,
                                 error=error))

    def reap(self, message: str, grace: float) -> int:
        """Fail the runs whose server stopped under them: their async job ended without
        them (or is gone), or, never given one, they began longer than ``grace`` ago."""
        jobs = schema.jobs
        ended = select(jobs.c.id).where(jobs.c.status.in_(_ENDED_JOBS))
        missing = not_(exists().where(jobs.c.id == _R.c.job_id))
        stale = or_(_R.c.job_id.in_(ended), and_(_R.c.job_id.is_not(None), missing))
        with writing(self.engine) as conn:
            now = float(conn.execute(select(db_now(conn))).scalar_one())
            never = and_(_R.c.job_id.is_(None), _R.c.started < now - grace)
            done = conn.execute(update(_R).where(and_(_R.c.status == RUNNING,
                                                      or_(stale, never)))
                                .values(status=FAILED, finished=time.time(), error=message))
            return int(done.rowcount)

    def earliest(self, server: str) -> float | None:
        """The soonest next run of the enabled jobs ``server`` may run, in UNIX seconds
        by the database's clock; with how far that clock is from this one."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.min(_J.c.next_run) - db_now(conn) + time.time())
                                .where(and_(_J.c.enabled, or_(_J.c.server.is_(None),
                                                              _J.c.server == server)))
                                ).scalar()
