"""Records noted now and written shortly, off the request path: the audit trail's entries
and the usage of runs (docs/operations.md).

``add`` never waits for the database: it puts the record in a queue, and a thread of its
own writes what has gathered, in one transaction, every ``flush_interval`` seconds.
``close`` writes whatever is still queued, so a clean stop loses nothing (a ``kill -9``
loses at most the last interval's records). The same thread purges records older than
the retention. A reader that must see every record noted before it asked calls
``flush`` first.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from prometheus_client import Counter

log = logging.getLogger("epe.spool")

FLUSH_INTERVAL = 0.5  # seconds between writes
QUEUE_LIMIT = 100_000  # records held while the store cannot take them; more are dropped
WRITE_CHUNK = 1000  # records per transaction

T = TypeVar("T")


class Spool(Generic[T]):
    """``what`` names the records in log lines; ``append`` writes a batch in one
    transaction; ``purge`` deletes those older than a time, saying how many; the
    counters count records written and records lost."""

    def __init__(self, what: str, append: Callable[[Sequence[T]], None],
                 purge: Callable[[float], int], *, retention: float | None,
                 flush_interval: float, written: Counter, dropped: Counter) -> None:
        self.what = what
        self._append, self._purge = append, purge
        self.retention = retention
        self.flush_interval = flush_interval
        self._written, self._dropped_counter = written, dropped
        self._queue: queue.SimpleQueue[T] = queue.SimpleQueue()
        self._unwritten: list[T] = []  # refused by the store; tried again
        self._writing = threading.Lock()
        self._stop = threading.Event()
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"epe-{what}", daemon=True)
        self._thread.start()

    def add(self, record: T) -> None:
        """Note ``record`` to be written shortly; never blocks."""
        if self._queue.qsize() >= QUEUE_LIMIT:
            self._dropped_counter.inc()
            if self._dropped % 10_000 == 0:  # said once in a while, not for every record
                log.error("%s records dropped: %d are waiting for the store", self.what,
                          QUEUE_LIMIT)
            self._dropped += 1
            return
        self._queue.put(record)

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        self._stop.set()
        self._thread.join()
        self.flush()
        if self._unwritten:
            self._dropped_counter.inc(len(self._unwritten))
            log.error("%d %s records could not be written and are lost", len(self._unwritten),
                      self.what)
            self._unwritten = []

    def _run(self) -> None:
        next_purge = time.monotonic()
        while not self._stop.wait(self.flush_interval):
            self.flush()
            if self.retention is not None and time.monotonic() >= next_purge:
                self.purge()
                next_purge = time.monotonic() + min(3600.0, max(1.0, self.retention / 4))

    def flush(self) -> None:
        """Write every queued record now (blocking); keep them if the store refuses."""
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
                    self._append(chunk)
                except Exception:
                    log.exception("could not write %d %s records; will try again",
                                  len(batch) - start, self.what)
                    self._keep(batch[start:])
                    return
                self._written.inc(len(chunk))

    def _keep(self, records: list[T]) -> None:
        over = len(records) - QUEUE_LIMIT
        if over > 0:
            self._dropped_counter.inc(over)
            records = records[over:]
        self._unwritten = records

    def purge(self) -> int:
        """Delete the records older than the retention; how many."""
        if self.retention is None:
            return 0
        try:
            gone = self._purge(time.time() - self.retention)
        except Exception:
            log.exception("could not purge old %s records", self.what)
            return 0
        if gone:
            log.info("purged %d %s records past their retention", gone, self.what)
        return gone
