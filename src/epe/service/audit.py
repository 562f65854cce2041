"""The audit trail: who ran what, on which data, when (docs/operations.md).

``record`` never waits for the database: entries are written in batches by a thread
of their own (``epe.service.spool``), which also purges those older than
``EPE_AUDIT_RETENTION``. A reader sees every entry recorded before it asked: ``find``
writes the queue out first.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

from epe.core.names import normalize_user, parse_instant
from epe.errors import EpeError, InvalidRequest
from epe.observe.logs import REQUEST_ID
from epe.observe.metrics import AUDIT_DROPPED, AUDIT_WRITTEN
from epe.service.spool import FLUSH_INTERVAL, Spool
from epe.store.audit import AuditEntry, AuditQuery, AuditStore

KINDS = ("run", "login", "script", "datastore", "user", "env", "model", "token", "group")
# The automation token the current request came with: every entry it makes names it.
VIA_TOKEN: ContextVar[str | None] = ContextVar("epe_via_token", default=None)
MAX_PAGE = 1000  # entries one query may return


def query(*, user: str | None = None, since: str | None = None, until: str | None = None,
          kind: str | None = None, limit: int = 100, offset: int = 0) -> AuditQuery:
    """An audit query from what an admin typed; ``InvalidRequest`` for what makes no sense."""
    if kind is not None and kind not in KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(KINDS)}; not {kind!r}")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be from 1 to {MAX_PAGE}")
    if offset < 0:
        raise InvalidRequest("offset must not be negative")
    return AuditQuery(user=None if user is None else normalize_user(user, check=False),
                      since=None if since is None else parse_instant(since, "since"),
                      until=None if until is None else parse_instant(until, "until"),
                      kind=kind, limit=limit, offset=offset)


def entry(kind: str, action: str, user: str | None, *, error: BaseException | None = None,
          status: str | None = None, owner: str | None = None, name: str | None = None,
          client: str | None = None, **details: Any) -> AuditEntry:
    """An entry stamped now, with the current request's id; ``error`` fails it."""
    code = None
    if error is not None:
        code = error.code if isinstance(error, EpeError) else 5000
    if (token := VIA_TOKEN.get()) is not None:
        details.setdefault("token", token)
    return AuditEntry(time.time(), kind, action, user,
                      status or ("ok" if error is None else "failed"), code, owner, name,
                      client, REQUEST_ID.get(), {k: v for k, v in details.items()
                                                 if v is not None})


class AuditTrail(Spool[AuditEntry]):
    def __init__(self, store: AuditStore, retention: float | None = None,
                 flush_interval: float = FLUSH_INTERVAL) -> None:
        super().__init__("audit", store.append, store.purge, retention=retention,
                         flush_interval=flush_interval, written=AUDIT_WRITTEN,
                         dropped=AUDIT_DROPPED)
        self.store = store

    def record(self, kind: str, action: str, user: str | None, **fields: Any) -> None:
        """Note an entry (see ``entry``) to be written shortly; never blocks."""
        self.add(entry(kind, action, user, **fields))

    def find(self, query: AuditQuery) -> tuple[list[AuditEntry], bool]:
        """One page of entries (blocking), everything recorded so far written first."""
        self.flush()
        return self.store.find(query)
