"""The jobs table: every state a job passes through is written here first.

It is also the queue several servers share (docs/deploy.md). A job is *held* by
one server at a time: the one that accepted it while it waits (``PENDING``),
the one that claimed it while it runs (``RUNNING``). Any server with room claims
the waiting jobs of a service level by fair share (``claim``: the user with the
fewest jobs running first, each user's oldest first, no user past their running
limit), whoever holds them, or nobody (a stopping server hands its waiting jobs
back). Claims are taken one at a time (an advisory lock on PostgreSQL, SQLite's
write lock), so servers claiming at once never count the same running jobs twice,
and ``FOR UPDATE SKIP LOCKED`` skips a job another transaction is changing rather
than wait for it. A job that names an environment or reads tables of its server's
own is ``pinned`` and only its holder runs it, the same server started again
included. A holder renews the leases of the jobs it has in hand on a heartbeat;
when the lease of a running job runs out, its holder is taken to have stopped (or
lost the job) and any server marks the job FAILED (``reap``): it may have had side
effects. A waiting job is never failed for its server's sake: it has not started.
Lease times are the database's clock, so servers' clocks need not agree.

A job's answer and log are files in the data folder on a single server
(``epe.service.answers``); where servers share the database they are rows of
``job_answers``, written in the transaction that ends the job.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, false, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from epe.core.jobs import Status, can_move
from epe.errors import Conflict
from epe.store import schema
from epe.store.engine import db_now, writing
from epe.store.storage import lock_owner

_T, _A, _L = schema.jobs, schema.job_answers, schema.user_limits
UNFINISHED = (Status.PENDING.value, Status.RUNNING.value)
# The key of PostgreSQL's advisory lock that takes claims one at a time.
CLAIM_LOCK = 0x657065_6A6F6273  # "epe" "jobs"


class QueueFull(Exception):
    """The server already holds as many unfinished jobs as it may."""


class UserQueueFull(Exception):
    """The job's owner already has as many jobs waiting as they may."""


@dataclass(frozen=True)
class Admission:
    """The limits a new job is admitted under: ``server`` holds at most ``held`` jobs
    waiting or running; its owner runs at most ``running`` jobs and has at most
    ``waiting`` waiting (None: no such limit)."""

    held: int | None = None
    running: int | None = None
    waiting: int | None = None


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
    result_bytes: int | None = None
    script: str | None = None  # OWNER.NAME of the stored script it runs

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
    script: str | None = None  # OWNER.NAME of the stored script it runs, if one
    pinned: bool = False  # only the server that holds it may run it


class JobStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Only this process inserts jobs held by its own server: counting them and
        # inserting one under this lock admits exactly up to the limit.
        self._admitting = threading.Lock()

    def create(self, job: NewJob, *, id: str, server: str | None = None, lease: float = 0.0,
               admission: Admission = Admission(), running: bool = False) -> JobRecord:
        """Insert ``job`` as ``id``, held by ``server`` (when given): RUNNING with
        ``running`` (``server`` has a free slot and runs it at once) unless its owner runs
        all the jobs they may, or a job that ``server`` may run waits at its service
        level, which then goes first; PENDING otherwise. Conflict if the owner already
        used its idempotency key; QueueFull if ``server`` holds ``admission.held`` jobs;
        UserQueueFull if the job would wait and its owner has ``admission.waiting``
        waiting."""
        now = time.time()
        values = {**vars(job), "id": id, "created": now, "progress_done": 0,
                  "progress_total": 0, "server": server}
        try:
            with self._admitting, writing(self.engine) as conn:
                if admission.held is not None and self._held(conn, server) >= admission.held:
                    raise QueueFull(f"{admission.held} jobs waiting or running")
                running = self._admit(conn, job.owner, server, job.service, admission, running)
                values.update(status=(Status.RUNNING if running else Status.PENDING).value,
                              started=now if running else None)
                if server is not None:
                    values["lease_expires"] = db_now(conn) + lease
                conn.execute(insert(_T).values(**values))
        except IntegrityError:
            raise Conflict(f"a job with idempotency key {job.idempotency_key!r} exists"
                           ) from None
        created = self.get(id)
        assert created is not None
        return created

    def _admit(self, conn: Connection, owner: str, server: str | None, service: str | None,
               admission: Admission, running: bool) -> bool:
        """Whether the new job runs at once (see ``create``); UserQueueFull if it would
        wait and its owner may have no more waiting."""
        if admission.running is None and admission.waiting is None:
            return running
        lock_owner(conn, owner)  # one admission of this owner at a time, on every server
        now_running, waiting, others_wait = conn.execute(select(
            _count(owner, Status.RUNNING), _count(owner, Status.PENDING),
            _waiting(server, service).exists())).one()
        if admission.running is not None and now_running >= admission.running:
            running = False  # a slot, but its owner runs all they may
        if others_wait:
            running = False  # a slot, but a job that was there first takes it
        if not running and admission.waiting is not None and waiting >= admission.waiting:
            raise UserQueueFull(f"{admission.waiting} jobs waiting")
        return running

    @staticmethod
    def _held(conn: Any, server: str | None) -> int:
        return int(conn.execute(select(func.count()).select_from(_T).where(
            and_(_T.c.server == server, _T.c.status.in_(UNFINISHED)))).scalar_one())

    def counts(self, owner: str) -> tuple[int, int]:
        """How many runs of ``owner``'s are running and waiting as jobs."""
        with self.engine.connect() as conn:
            running, waiting = conn.execute(select(_count(owner, Status.RUNNING),
                                                   _count(owner, Status.PENDING))).one()
        return int(running), int(waiting)

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

    def claim(self, server: str, service: str, n: int, lease: float,
              running_limit: int | None = None) -> list[JobRecord]:
        """Up to ``n`` waiting jobs of ``service`` that ``server`` may run, moved to
        RUNNING and held by it, in their fair order (``turns``). ``running_limit``: how
        many jobs a user may run at once where an admin set them no limit of their own
        (None: no limit, for anyone).
        Jobs other transactions are changing at the same moment are skipped, never
        waited for."""
        with writing(self.engine) as conn:
            if conn.dialect.name == "postgresql":  # SQLite's write lock does the same
                conn.execute(select(func.pg_advisory_xact_lock(CLAIM_LOCK)))
            now = db_now(conn)
            ids = turns(conn, server, service, n, running_limit)
            if not ids:
                return []
            free = set(conn.execute(select(_T.c.id).where(
                _T.c.id.in_(ids), _T.c.status == Status.PENDING.value)
                .with_for_update(skip_locked=True)).scalars())
            ids = [i for i in ids if i in free]
            if not ids:
                return []
            rows = conn.execute(update(_T).where(_T.c.id.in_(ids)).values(
                status=Status.RUNNING.value, server=server, started=time.time(),
                lease_expires=now + lease).returning(*_T.c)).all()
        claimed = {r.id: JobRecord.from_row(r) for r in rows}
        return [claimed[i] for i in ids if i in claimed]

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
                    status=status.value, finished=time.time(), http_status=http_status,
                    result_bytes=len(body) + len(log.encode())))
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


def _count(owner: str, status: Status) -> Any:
    """How many runs of ``owner``'s are in ``status`` (not environment builds), as a scalar
    subquery (from the owner's index)."""
    return select(func.count()).where(_T.c.owner == owner, _T.c.status == status.value,
                                      _T.c.service.is_not(None)).scalar_subquery()


def _waiting(server: str | None, service: str | None) -> Any:
    """The waiting jobs of ``service`` that ``server`` may run, whoever holds them: the
    queue of one service level, as one server sees it."""
    return select(_T.c.id).where(
        _T.c.status == Status.PENDING.value, _T.c.service == service,
        or_(_T.c.pinned == false(), _T.c.server == server))


def turns(conn: Connection, server: str, service: str, n: int,
          running_limit: int | None) -> list[str]:
    """The next ``n`` waiting jobs of ``service`` that ``server`` may run, by fair share.

    One at a time: of each user's oldest waiting job, that of the user with the fewest
    jobs running (every service level, the jobs already picked counted) goes next, the
    oldest where they tie. A user running as many jobs as their limit allows (an admin's
    for them, else ``running_limit``; None: no limit) waits.
    """
    waiting = _waiting(server, service).whereclause
    running: dict[str, int] = {owner: int(count) for owner, count in conn.execute(
        select(_T.c.owner, func.count()).where(_T.c.status == Status.RUNNING.value,
                                               _T.c.service.is_not(None))
        .group_by(_T.c.owner))}
    picked: list[str] = []
    limits: dict[str, float] | None = None
    for _ in range(n):
        firsts = _firsts(conn, waiting, picked)
        if limits is None:  # later turns are among the same users
            limits = _running_limits(conn, list(firsts), running_limit)
        ready = [(running.get(o, 0), created, job, o) for o, (created, job) in firsts.items()
                 if running.get(o, 0) < limits[o]]
        if not ready:
            break
        _held, _created, job, owner = min(ready)
        picked.append(job)
        running[owner] = running.get(owner, 0) + 1
    return picked


def _firsts(conn: Connection, waiting: Any, picked: list[str]) -> dict[str, tuple[float, str]]:
    """Each user's oldest waiting job (of those ``waiting`` selects, but ``picked``): its
    time and id, found from the queue's index."""
    candidates = and_(waiting, _T.c.id.not_in(picked))
    first = select(_T.c.owner, func.min(_T.c.created).label("created")).where(candidates) \
        .group_by(_T.c.owner).subquery()
    rows = conn.execute(select(_T.c.owner, _T.c.created, _T.c.id).join(first, and_(
        _T.c.owner == first.c.owner, _T.c.created == first.c.created)).where(candidates)
        .order_by(_T.c.id.desc())).all()
    return {owner: (created, job) for owner, created, job in rows}  # the least id of ties


def _running_limits(conn: Connection, owners: list[str],
                    default: int | None) -> dict[str, float]:
    """How many jobs each of ``owners`` may run at once: an admin's limit for them, else
    ``default`` (None: no limit, infinity)."""
    own = dict(conn.execute(select(_L.c.user_name, _L.c.running_jobs).where(
        _L.c.user_name.in_(owners), _L.c.running_jobs.is_not(None))).all())
    return {o: own.get(o, math.inf if default is None else default) for o in owners}
