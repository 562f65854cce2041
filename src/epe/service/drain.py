"""Stopping without losing work: a server told to stop drains first (docs/deploy.md,
restarting without losing work).

On the first SIGTERM (or SIGINT) the server *drains*: ``/health/ready`` answers 503
at once, so that a load balancer sends it nothing more; a new run or job is refused
with 503 and ``Retry-After`` (another server takes it, or this one once it is back);
the jobs waiting here go back to the queue; runs, jobs and requests already under way
finish, for up to ``EPE_SHUTDOWN_GRACE`` seconds. What still runs then is stopped,
with an answer that says so: a job ends FAILED, a sync run answers 400 (1015). Only
then does the server stop listening. A second signal ends the grace at once; a third
exits without cleaning up. Nothing acknowledged is lost either way (``epe.service.jobs``).

``Drain`` is the state every part consults: the run endpoints and the job manager
(``admit``), readiness (``draining``), the middleware that counts requests under way;
the sequence itself is the app's (``epe.app.drain``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from epe.errors import JobInterrupted, ServerBusy

T = TypeVar("T")
POLL = 0.05  # seconds between looks at what still runs while draining


class Drain:
    def __init__(self, grace: float, retry_after: int) -> None:
        self.grace = grace
        self.retry_after = retry_after
        self.began: float | None = None  # time.monotonic() when the drain began
        self.requests = 0  # HTTP requests under way (api.middleware.Draining counts them)
        self._runs: set[asyncio.Future[Any]] = set()  # sync runs under way
        self._hurried = False

    @property
    def draining(self) -> bool:
        return self.began is not None

    @property
    def runs(self) -> int:
        return len(self._runs)

    def begin(self) -> None:
        if self.began is None:
            self.began = time.monotonic()

    def hurry(self) -> None:
        """End the grace now (a second signal)."""
        self.begin()
        self._hurried = True

    def admit(self) -> None:
        """``ServerBusy`` (503, ``Retry-After``) for new work once the server drains."""
        if self.draining:
            raise ServerBusy("this server is stopping (draining for a restart) and takes no "
                             "new runs or jobs: send it to another server, or again once this "
                             "one is back", retry_after=self.retry_after)

    async def guard(self, work: Awaitable[T]) -> T:
        """Run ``work``, a sync run, as one the drain waits for and, once the grace has run
        out, stops: the run then answers ``JobInterrupted``."""
        task = asyncio.ensure_future(work)
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the request itself was cancelled, not the run by the drain
            raise JobInterrupted(self.stopped_message("run")) from None

    async def settle(self, idle: Callable[[], bool]) -> bool:
        """Wait until no run, request or (``idle``) job is under way: True; or until the
        grace runs out, or is cut short: False."""
        assert self.began is not None, "settle() before begin()"
        deadline = self.began + self.grace
        while not (idle() and not self._runs and self.requests <= 0):
            if self._hurried or time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL)
        return True

    def interrupt_runs(self) -> int:
        """Stop the sync runs still under way (each answers ``JobInterrupted``); how many."""
        runs = list(self._runs)
        for task in runs:
            task.cancel()
        return len(runs)

    def stopped_message(self, what: str) -> str:
        why = ("a second stop signal ended its shutdown grace" if self._hurried else
               f"its shutdown grace (EPE_SHUTDOWN_GRACE={self.grace:g} s) ran out")
        again = "submit it again" if what == "job" else "run it again"
        return (f"the server stopped while this {what} was running: {why}. It was not "
                f"finished or re-run, because the function may have had side effects: {again}")
