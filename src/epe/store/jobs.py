"""The jobs table: every state a job passes through is written here first.

The job's result and log are files (see ``epe.jobs``); this table holds the
status, times, progress and where the result is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from epe.core.jobs import Status, can_move
from epe.errors import Conflict
from epe.store import schema
from epe.store.engine import writing

_T = schema.jobs


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

    @classmethod
    def from_row(cls, row: Any) -> JobRecord:
        values = dict(row._mapping)
        values["status"] = Status(values["status"])
        return cls(**values)


class JobStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, *, id: str, owner: str, kind: str, request: str,
               idempotency_key: str | None) -> JobRecord:
        """Insert a PENDING job; Conflict if the owner already used ``idempotency_key``."""
        values = {"id": id, "owner": owner, "kind": kind, "status": Status.PENDING.value,
                  "request": request, "created": time.time(), "progress_done": 0,
                  "progress_total": 0, "idempotency_key": idempotency_key}
        try:
            with writing(self.engine) as conn:
                conn.execute(insert(_T).values(**values))
        except IntegrityError:
            raise Conflict(f"a job with idempotency key {idempotency_key!r} exists") from None
        created = self.get(id)
        assert created is not None
        return created

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

    def fail_unfinished(self, message: str) -> list[str]:
        """End every waiting or running job FAILED (after a restart); their ids."""
        unfinished = [Status.PENDING.value, Status.RUNNING.value]
        with writing(self.engine) as conn:
            ids = [r.id for r in conn.execute(select(_T.c.id)
                                              .where(_T.c.status.in_(unfinished)))]
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
