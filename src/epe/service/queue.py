"""This server's side of the job queue (docs/deploy.md): its name, its free slots at
each service level, the jobs it accepted that wait, and its leases.

The queue is the jobs table (``epe.store.jobs``). A server claims waiting jobs
for as many free slots as it has at a level: its own at once (``wake``), other
servers' by looking every ``EPE_JOB_POLL_INTERVAL`` where servers share a
PostgreSQL database. Its heartbeat renews the leases on what it holds, lets go
of what the database says is no longer its own (claimed elsewhere, deleted, or
failed by another server), and fails the running jobs of servers whose leases
ran out. A server that stops hands its waiting jobs back (``hand_back``).

A server's name is kept in its data folder (``server-name``, locked while it
runs), so that a server started again on the same folder fails its own leftover
running jobs at once instead of waiting for its old lease to run out, and runs
the waiting jobs pinned to it. A second server on a folder whose name is locked
takes a random name.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from epe.auth.tokens import TokenClaims
from epe.core.jobs import Status
from epe.core.operations import OPERATIONS
from epe.core.params import parse_parameters
from epe.core.requests import SERVICE_LEVELS
from epe.errors import NotFound
from epe.service import runs
from epe.service.scripts import source_hash
from epe.service.services import Services
from epe.service.sessions import Caller
from epe.store.jobs import JobRecord

log = logging.getLogger("epe.jobs")

HEARTBEATS_PER_LEASE = 5


@dataclass
class Accepted:
    """A job this server accepted that nobody has claimed yet."""

    job: runs.Prepared
    level: str  # its service level
    hold: Any = None  # the lease on its named environment, while it waits and runs
    since: float = 0.0  # time.monotonic() when it was recorded as accepted here

    def release(self) -> None:
        if self.hold is not None:
            self.hold.release()
            self.hold = None


def server_name(data_dir: Path) -> tuple[str, IO[str] | None]:
    """This server's name, and the open file whose lock keeps it this server's alone."""
    path = data_dir / "server-name"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    kept = os.fdopen(fd, "r+")
    try:
        fcntl.flock(kept, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        kept.close()
        log.warning("another server runs on %s: this one takes a name of its own", data_dir)
        return uuid.uuid4().hex, None
    name = kept.read().strip()
    if not name:
        name = uuid.uuid4().hex
        kept.write(name)
        kept.flush()
    return name, kept


class Queue:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = services.store.jobs
        self.settings = services.settings
        self.shared = services.store.shared
        self.name, self._name_file = server_name(self.settings.data_dir)
        self.free: dict[str, int] = {level: self.settings.job_concurrency(level)
                                     for level in SERVICE_LEVELS}
        self.accepted: dict[str, Accepted] = {}
        self.running: dict[str, float] = {}  # jobs running here: since when (monotonic)
        self.wake = asyncio.Event()
        # Levels where a server alone looks for waiting jobs it did not accept itself
        # since it started: those left from before it stopped.
        self.backlog: set[str] = set() if self.shared else set(SERVICE_LEVELS)

    async def take_over_leftovers(self, message: str) -> list[str]:
        """Fail what this server was running when it last stopped (what was running at
        all, on a database no other server uses), and make the jobs that waited its own
        to run (on such a database: pinned ones stay the server's where servers share
        it). The ids failed."""
        if self.shared:
            return await asyncio.to_thread(self.store.fail_unfinished, message, self.name,
                                           (Status.RUNNING.value,))
        failed = await asyncio.to_thread(self.store.fail_unfinished, message, None,
                                         (Status.RUNNING.value,))
        await asyncio.to_thread(self.store.adopt, self.name, self.settings.job_lease)
        return failed

    async def hand_back(self) -> list[str]:
        """Give the jobs waiting here back to the queue (this server stops): any server
        may claim them, but those pinned to this one, which wait for it to start again."""
        for accepted in self.accepted.values():
            accepted.release()
        self.accepted.clear()
        return await asyncio.to_thread(self.store.hand_back, self.name)

    @property
    def owns_folder(self) -> bool:
        """Whether this server holds its data folder's name: no other runs on it."""
        return self._name_file is not None

    def close(self) -> None:
        for accepted in self.accepted.values():
            accepted.release()
        self.accepted.clear()
        if self._name_file is not None:
            self._name_file.close()  # and its lock with it
            self._name_file = None

    # -- claiming ------------------------------------------------------------------

    def accept(self, job_id: str, accepted: Accepted) -> None:
        """Record a job accepted here, once its row is written: a heartbeat that began
        before this leaves it alone."""
        accepted.since = time.monotonic()
        self.accepted[job_id] = accepted
        self.wake.set()

    def take(self, level: str) -> bool:
        """A free slot at ``level`` for a job accepted here to run at once, if there is one."""
        if self.free[level] <= 0:
            return False
        self.free[level] -= 1
        return True

    async def claim(self) -> list[tuple[JobRecord, Accepted | None]]:
        """Jobs claimed for this server's free slots, and what it kept of those it
        accepted itself."""
        found: list[tuple[JobRecord, Accepted | None]] = []
        for level in SERVICE_LEVELS:
            # One server alone looks only when it has accepted something of this level,
            # or has leftovers from before it started.
            if self.free[level] <= 0 or not (self.shared or level in self.backlog or any(
                    a.level == level for a in self.accepted.values())):
                continue
            n, self.free[level] = self.free[level], 0  # taken while the claim is under way
            claimed = await asyncio.to_thread(self.store.claim, self.name, level, n,
                                              self.settings.job_lease)
            self.free[level] += n - len(claimed)
            if len(claimed) < n:
                self.backlog.discard(level)
            found += [(record, self.accepted.pop(record.id, None)) for record in claimed]
        return found

    def started(self, job_id: str) -> None:
        self.running[job_id] = time.monotonic()

    def freed(self, job_id: str, level: str | None) -> None:
        """The job ended here: its slot at ``level`` is free (None: it took none)."""
        self.running.pop(job_id, None)
        if level is not None:
            self.give_back(level)

    def give_back(self, level: str) -> None:
        self.free[level] += 1
        self.wake.set()

    # -- leases --------------------------------------------------------------------

    @property
    def heartbeat_interval(self) -> float:
        return self.settings.job_lease / HEARTBEATS_PER_LEASE

    async def heartbeat(self, message: str) -> list[str]:
        """Renew the leases of what this server has in hand, and fail run-out ones (with
        ``message``); the jobs running here that are no longer this server's."""
        began = time.monotonic()
        mine = set(self.accepted) | set(self.running)
        held = await asyncio.to_thread(self.store.renew, self.name, self.settings.job_lease,
                                       mine) if mine else set()
        for job_id, accepted in list(self.accepted.items()):
            if job_id not in held and accepted.since < began:  # claimed elsewhere, or deleted
                self.accepted.pop(job_id).release()
        for job_id in await asyncio.to_thread(self.store.reap, message):
            log.warning("job %s: its server stopped renewing its lease; marked FAILED", job_id)
        self.wake.set()
        return [job_id for job_id, since in self.running.items()
                if job_id not in held and since < began]


def restore(services: Services, record: JobRecord) -> runs.Prepared:
    """A job accepted by another server, as that server prepared it (blocking): its
    request, the script found when it was submitted, and its owner as the caller."""
    user = services.store.get_user(record.owner)
    if user is None or record.source is None:
        raise NotFound(f"the job's user {record.owner} no longer exists")
    op = OPERATIONS[record.kind]
    body = op.request.model_validate_json(record.request)
    kwargs, controls = parse_parameters(body.parameters)
    # The token was checked when the job was submitted; the run acts as its owner.
    claims = TokenClaims(user.name, jti="", issued=record.created, expires=record.created,
                         chain_start=record.created)
    source = runs.Source(record.source)
    return runs.Prepared(Caller(user, claims), op, body, source, kwargs, controls,
                              runs.run_timeout(services, body),
                              source_hash(record.source))

