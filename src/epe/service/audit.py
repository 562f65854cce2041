"""The audit trail: who ran what, on which data, when (docs/operations.md).

``record`` never waits for the database: it puts the entry in a queue, and a thread
of its own writes what has gathered, in one transaction, every ``FLUSH_INTERVAL``
seconds. ``close`` writes whatever is still queued, so a clean stop loses nothing (a
``kill -9`` loses at most the last interval's entries). The same thread purges
entries older than ``EPE_AUDIT_RETENTION``. A reader sees every entry recorded before
it asked: ``find`` writes the queue out first.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from contextvars import ContextVar
from typing import Any

from epe.core.names import normalize_user, parse_instant
from epe.errors import EpeError, InvalidRequest
from epe.observe.logs import REQUEST_ID
from epe.observe.metrics import AUDIT_DROPPED, AUDIT_WRITTEN
from epe.store.audit import AuditEntry, AuditQuery, AuditStore

log = logging.getLogger("epe.audit")

FLUSH_INTERVAL = 0.5  # seconds between writes
QUEUE_LIMIT = 100_000  # entries held while the store cannot take them; more are dropped
WRITE_CHUNK = 1000  # entries per transaction
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


class AuditTrail:
    def __init__(self, store: AuditStore, retention: float | None = None,
                 flush_interval: float = FLUSH_INTERVAL) -> None:
        self.store = store
        self.retention = retention
        self.flush_interval = flush_interval
        self._queue: queue.SimpleQueue[AuditEntry] = queue.SimpleQueue()
        self._unwritten: list[AuditEntry] = []  # refused by the store; tried again
        self._writing = threading.Lock()
        self._stop = threading.Event()
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name="epe-audit", daemon=True)
        self._thread.start()

    def record(self, kind: str, action: str, user: str | None, **fields: Any) -> None:
        """Note an entry (see ``entry``) to be written shortly; never blocks."""
        self.add(entry(kind, action, user, **fields))

    def add(self, made: AuditEntry) -> None:
        if self._queue.qsize() >= QUEUE_LIMIT:
            AUDIT_DROPPED.inc()
            if self._dropped % 10_000 == 0:  # said once in a while, not for every entry
                log.error("audit entries dropped: %d are waiting for the store", QUEUE_LIMIT)
            self._dropped += 1
            return
        self._queue.put(made)

    def find(self, query: AuditQuery) -> tuple[list[AuditEntry], bool]:
        """One page of entries (blocking), everything recorded so far written first."""
        self.flush()
        return self.store.find(query)

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        self._stop.set()
        self._thread.join()
        self.flush()
        if self._unwritten:
            AUDIT_DROPPED.inc(len(self._unwritten))
            log.error("%d audit entries could not be written and are lost",
                      len(self._unwritten))
            self._unwritten = []

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        next_purge = time.monotonic()
        while not self._stop.wait(self.flush_interval):
            self.flush()
            if self.retention is not None and time.monotonic() >= next_purge:
                self.purge()
                next_purge = time.monotonic() + min(3600.0, max(1.0, self.retention / 4))

    def flush(self) -> None:
        """Write every queued entry now (blocking); keep them if the store refuses."""
        with self._writing:
            batch, self._unwritten = self._unwritten, []
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for start in range(0, len(batch), WRITE_CHUNK):
                chunk = batch[start:start + WRITE_CHUNK]
                try:
                    self.store.append(chunk)
                except Exception:
                    log.exception("could not write %d audit entries; will try again",
                                  len(batch) - start)
                    self._keep(batch[start:])
                    return
                AUDIT_WRITTEN.inc(len(chunk))

    def _keep(self, entries: list[AuditEntry]) -> None:
        over = len(entries) - QUEUE_LIMIT
        if over > 0:
            AUDIT_DROPPED.inc(over)
            entries = entries[over:]
        self._unwritten = entries

    def purge(self) -> int:
        """Delete the entries older than the retention; how many."""
        if self.retention is None:
            return 0
        try:
            gone = self.store.purge(time.time() - self.retention)
        except Exception:
            log.exception("could not purge old audit entries")
            return 0
        if gone:
            log.info("purged %d audit entries past their retention", gone)
        return gone
