"""The audit table: entries appended in batches, read by filters, purged by age.

An entry's common fields are columns (who, what, when, how it ended, on which
object); what only one kind records (a run's input query and duration, a grant's
grantee) is a JSON object in ``details``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Engine, insert, select

from epe.store import schema
from epe.store.engine import delete_before, writing

_T = schema.audit


@dataclass(frozen=True)
class AuditEntry:
    time: float
    kind: str  # run, login, script, datastore, user, env, model
    action: str  # the operation (do_eval, ...) or create, delete, grant, revoke, login
    user: str | None  # who acted (the name tried, for a failed login)
    status: str = "ok"  # ok, failed, cancelled
    error_code: int | None = None
    owner: str | None = None
    name: str | None = None
    client: str | None = None
    request_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    id: int | None = None  # given by the store

    def row(self) -> dict[str, Any]:
        # By hand, not dataclasses.asdict, which copies ``details`` deeply: rows are
        # made by the hundred in the writer thread, which shares the GIL with requests.
        return {"time": self.time, "kind": self.kind, "action": self.action,
                "user_name": self.user, "status": self.status, "error_code": self.error_code,
                "owner": self.owner, "name": self.name, "client": self.client,
                "request_id": self.request_id, "details": orjson.dumps(self.details).decode()}

    @classmethod
    def from_row(cls, row: Any) -> AuditEntry:
        values = dict(row._mapping)
        values["user"] = values.pop("user_name")
        values["details"] = orjson.loads(values["details"])
        return cls(**values)


@dataclass(frozen=True)
class AuditQuery:
    """Which entries: each filter given narrows; times are UNIX seconds, ``until`` excluded."""

    user: str | None = None
    since: float | None = None
    until: float | None = None
    kind: str | None = None
    limit: int = 100
    offset: int = 0


class AuditStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(self, entries: Sequence[AuditEntry]) -> None:
        """Insert ``entries`` in one transaction."""
        if entries:
            with writing(self.engine) as conn:
                conn.execute(insert(_T), [e.row() for e in entries])

    def find(self, query: AuditQuery) -> tuple[list[AuditEntry], bool]:
        """One page of the matching entries, oldest first, and whether more follow."""
        where = []
        if query.user is not None:
            where.append(_T.c.user_name == query.user)
        if query.kind is not None:
            where.append(_T.c.kind == query.kind)
        if query.since is not None:
            where.append(_T.c.time >= query.since)
        if query.until is not None:
            where.append(_T.c.time < query.until)
        select_ = select(_T).where(*where).order_by(_T.c.time, _T.c.id) \
            .limit(query.limit + 1).offset(query.offset)
        with self.engine.connect() as conn:
            rows = conn.execute(select_).fetchall()
        return [AuditEntry.from_row(r) for r in rows[:query.limit]], len(rows) > query.limit

    def purge(self, before: float) -> int:
        """Delete the entries older than ``before``; how many."""
        return delete_before(self.engine, _T.c.time, before)
