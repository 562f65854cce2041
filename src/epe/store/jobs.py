"""The jobs table: every state a job passes through is written here first.

It is also the queue several servers share (docs/deploy.md). A job is *held* by
one server at a time: the one that accepted it while it waits (``PENDING``),
the one that claimed it while it runs (``RUNNING``). Any server with room claims
the oldest waiting job of a service level (``FOR UPDATE SKIP LOCKED``: two
servers never claim one job, and neither waits for the other), whoever holds
it, or nobody (a stopping server hands its waiting jobs back); a job that names
an environment or reads tables of its server's own is ``pinned`` and only its
holder runs it, the same server started again included. A holder renews the
leases of the jobs it has in hand on a heartbeat; when the lease of a running
job runs out, its holder is taken to have stopped (or lost the job) and any
server marks the job FAILED (``reap``): it may have had side effects. A waiting
job is never failed for its server's sake: it has not started. Lease times are
the database's clock, so servers' clocks need not agree.

A job's answer and log are files in the data folder on a single server
(``epe.service.answers``); where servers share the database they are rows of
``job_answers``, written in the transaction that ends the job.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, delete, false, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from epe.core.jobs import Status, can_move
from epe.errors import Conflict
from epe.store import schema
from epe.store.engine import db_now, writing

_T, _A = schema.jobs, schema.job_answers
UNFINISHED = (Status.PENDING.value, Status.RUNNING.value)


class QueueFull(Exception):
    """The server already holds as many unfinished jobs as it may."""


@dataclass(frozen=True)
class JobRecord:
    id: str
    owner: str
    kind: str
    status: Status
    request: str
    created: float
    started: float | None
    finished: float | None
    http_status: int | None
    result_path: str | None
    error: str | None
    progress_done: int
    progress_total: int
    idempotency_key: str | None
    service: str | None = None
    source: str | None = None
    pinned: bool = False
    server: str | None = None
    lease_expires: float | None = None

    @classmethod
    def from_row(cls, row: Any) -> JobRecord:
        values = dict(row._mapping)
        values["status"] = Status(values["status"])
        return cls(**values)


@dataclass(frozen=True)
class NewJob:
    """A job as it is submitted: whose it is, what it runs, where it may run."""

    owner: str
    kind: str
    request: str  # the request's body, JSON
    idempotency_key: str | None = None
    service: str | None = None
    source: str | None = None  # the script's source, as found when it was submitted
    pinned: bool = False  # only the server that holds it may run it


class JobStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Only this process inserts jobs held by its own server: counting them and
        # inserting one under this lock admits exactly up to the limit.
        self._admitting = threading.Lock()

    def create(self, job: NewJob, *, id: str, server: str | None = None, lease: float = 0.0,
               limit: int | None = None, running: bool = False) -> JobRecord:
        """Insert ``job`` PENDING as ``id`` (RUNNING with ``running``: ``server`` runs it at
        once), held by ``server`` when given. Conflict if the owner already used its
        idempotency key; QueueFull if ``server`` holds ``limit`` jobs."""
        now = time.time()
        values = {**vars(job), "id": id, "created": now,
                  "status": (Status.RUNNING if running else Status.PENDING).value,
                  "started": now if running else None, "progress_done": 0,
                  "progress_total": 0, "server": server}
        try:
            with self._admitting, writing(self.engine) as conn:
                if limit is not None and self._held(conn, server) >= limit:
                    raise QueueFull(f"{limit} jobs waiting or running")
                if server is not None:
                    values["lease_expires"] = db_now(conn) + lease
                conn.execute(insert(_T).values(**values))
        except IntegrityError:
            raise Conflict(f"a job with idempotency key {job.idempotency_key!r} exists"
                           ) from None
        created = self.get(id)
        assert created is not None
        return created

    @staticmethod
    def _held(conn: Any, server: str | None) -> int:
        return int(conn.execute(select(func.count()).select_from(_T).where(
            and_(_T.c.server == server, _T.c.status.in_(UNFINISHED)))).scalar_one())

    def get(self, id: str, owner: str | None = None) -> JobRecord | None:
        where = _T.c.id == id if owner is None else and_(_T.c.id == id, _T.c.owner == owner)
        with self.engine.connect() as conn:
            row = conn.execute(select(_T).where(where)).first()
        return JobRecord.from_row(row) if row else None

    def by_idempotency_key(self, owner: str, key: str) -> JobRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(_T).where(and_(_T.c.owner == owner,
                                                     _T.c.idempotency_key == key))).first()
        return JobRecord.from_row(row) if row else None

    def of_owner(self, owner: str) -> list[JobRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(_T).where(_T.c.owner == owner)
                                .order_by(_T.c.created.desc()))
            return [JobRecord.from_row(r) for r in rows]

    def move(self, id: str, new: Status, **values: Any) -> bool:
        """Change a job's status if the state machine allows it from where it is now."""
        allowed = [s.value for s in Status if can_move(s, new)]
        if new.ended:
            values.setdefault("finished", time.time())
        if new is Status.RUNNING:
            values.setdefault("started", time.time())
        with writing(self.engine) as conn:
            done = conn.execute(update(_T).where(and_(_T.c.id == id, _T.c.status.in_(allowed)))
                                .values(status=new.value, **values))
        return bool(done.rowcount)

    def progress(self, id: str, done: int, total: int) -> None:
        with writing(self.engine) as conn:
            conn.execute(update(_T).where(_T.c.id == id)
                         .values(progress_done=done, progress_total=total))

    def fail_unfinished(self, message: str, held_by: str | None = None,
                        statuses: tuple[str, ...] = UNFINISHED) -> list[str]:
        """End every job of ``statuses`` (held by ``held_by``, if given) FAILED with
        ``message``; their ids."""
        where: Any = _T.c.status.in_(statuses)
        if held_by is not None:
            where = and_(where, _T.c.server == held_by)
        with writing(self.engine) as conn:
            ids = [r.id for r in conn.execute(select(_T.c.id).where(where))]
            conn.execute(update(_T).where(_T.c.id.in_(ids)).values(
                status=Status.FAILED.value, finished=time.time(), error=message,
                http_status=400))
        return ids

    def ended_before(self, when: float) -> list[JobRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(_T).where(and_(_T.c.finished.is_not(None),
                                                      _T.c.finished < when)))
            return [JobRecord.from_row(r) for r in rows]

    def delete(self, id: str) -> bool:
        with writing(self.engine) as conn:
            return bool(conn.execute(delete(_T).where(_T.c.id == id)).rowcount)

    # -- the queue ---------------------------------------------------------------------

    def claim(self, server: str, service: str, n: int, lease: float) -> list[JobRecord]:
        """Up to ``n`` of the oldest waiting jobs of ``service`` that ``server`` may run,
        moved to RUNNING and held by it, oldest first. Jobs other servers are claiming
        at the same moment are skipped, never waited for."""
        with writing(self.engine) as conn:
            now = db_now(conn)
            ids = conn.execute(select(_T.c.id).where(and_(
                _T.c.status == Status.PENDING.value, _T.c.service == service,
                or_(_T.c.pinned == false(), _T.c.server == server)))
                .order_by(_T.c.created).limit(n)
                .with_for_update(skip_locked=True)).scalars().all()
            if not ids:
                return []
            rows = conn.execute(update(_T).where(_T.c.id.in_(ids)).values(
                status=Status.RUNNING.value, server=server, started=time.time(),
                lease_expires=now + lease).returning(*_T.c)).all()
        return sorted((JobRecord.from_row(r) for r in rows), key=lambda j: j.created)

    def hand_back(self, server: str) -> list[str]:
        """Let go of the waiting jobs ``server`` holds that any server may run (it is
        stopping): held by nobody, they are the next claimant's. Jobs pinned to it stay
        its own, for when it starts again. The ids handed back."""
        with writing(self.engine) as conn:
            return list(conn.execute(update(_T).where(and_(
                _T.c.server == server, _T.c.status == Status.PENDING.value,
                _T.c.pinned == false())).values(server=None, lease_expires=None)
                .returning(_T.c.id)).scalars())

    def adopt(self, server: str, lease: float) -> list[str]:
        """Make every waiting job ``server``'s own (a single server started again, under
        whatever name: nothing else may run them); their ids."""
        with writing(self.engine) as conn:
            return list(conn.execute(update(_T).where(_T.c.status == Status.PENDING.value)
                                     .values(server=server, lease_expires=db_now(conn) + lease)
                                     .returning(_T.c.id)).scalars())

    def renew(self, server: str, lease: float, ids: set[str]) -> set[str]:
        """Extend the leases of the jobs ``ids`` that ``server`` still holds; those ids.
        One missing was deleted, or failed by another server after its lease ran out."""
        with writing(self.engine) as conn:
            return set(conn.execute(update(_T).where(and_(
                _T.c.server == server, _T.c.id.in_(ids), _T.c.status.in_(UNFINISHED)))
                .values(lease_expires=db_now(conn) + lease).returning(_T.c.id)).scalars())

    def reap(self, message: str) -> list[str]:
        """End FAILED, with ``message``, the running jobs whose lease ran out: their
        server stopped, or lost them (a live server renews what it runs); their ids."""
        with writing(self.engine) as conn:
            ids = conn.execute(select(_T.c.id).where(and_(
                _T.c.status == Status.RUNNING.value, _T.c.lease_expires < db_now(conn)))
                .with_for_update(skip_locked=True)).scalars().all()
            if ids:
                conn.execute(update(_T).where(_T.c.id.in_(ids)).values(
                    status=Status.FAILED.value, finished=time.time(), error=message,
                    http_status=400))
        return list(ids)

    # -- answers kept in the database --------------------------------------------------

    def finish(self, id: str, server: str, *, status: Status, http_status: int, body: bytes,
               log: str) -> bool:
        """End the job ``server`` holds with its answer and log, in one transaction;
        False (nothing written) if it is no longer that server's to end."""
        allowed = [s.value for s in Status if can_move(s, status)]
        with writing(self.engine) as conn:
            done = conn.execute(update(_T).where(and_(
                _T.c.id == id, _T.c.server == server, _T.c.status.in_(allowed))).values(
                    status=status.value, finished=time.time(), http_status=http_status))
            if not done.rowcount:
                return False
            conn.execute(insert(_A).values(job_id=id, http_status=http_status, body=body,
                                           log=log))
        return True

    def answer(self, id: str) -> tuple[int, bytes] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(_A.c.http_status, _A.c.body)
                               .where(_A.c.job_id == id)).first()
        return None if row is None else (int(row.http_status), bytes(row.body))

    def log(self, id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(_A.c.log).where(_A.c.job_id == id)).scalar()
