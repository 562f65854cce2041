"""Who workers run as: decided here, for the pools and for environment builds.

When the server runs as root, user code runs as the unprivileged
``EPE_WORKER_USER`` (``nobody`` by default), so it cannot read the data folder.
Run as anyone else, the server's workers run as the server's user.
"""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from epe.settings import Settings

log = logging.getLogger("epe.runner")


@dataclass(frozen=True)
class WorkerIdentity:
    name: str
    uid: int
    gid: int

    def subprocess_args(self) -> dict[str, Any]:
        """What ``asyncio.create_subprocess_exec`` needs to start a child as this user."""
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def worker_identity(settings: Settings) -> WorkerIdentity | None:
    """The worker user when the server runs as root; ``None``: the server's own user."""
    if os.geteuid() != 0 or not settings.worker_user:
        return None
    try:
        entry = pwd.getpwnam(settings.worker_user)
    except KeyError:
        log.warning("workers run as the server's user: EPE_WORKER_USER %r does not exist",
                    settings.worker_user)
        return None
    return WorkerIdentity(settings.worker_user, entry.pw_uid, entry.pw_gid)


def subprocess_args(identity: WorkerIdentity | None) -> dict[str, Any]:
    return {} if identity is None else identity.subprocess_args()


def unreachable(paths: Iterable[str]) -> list[str]:
    """Those of ``paths`` that not every user may traverse to and read or run: every
    folder on the way counts, both as written (a venv's own) and after symlinks."""
    return [p for p in paths if not _world_reachable(p)]


def _world_reachable(path: str) -> bool:
    def chain(start: str) -> list[str]:
        parents = [start]
        while (parent := os.path.dirname(parents[-1])) != parents[-1]:
            parents.append(parent)
        return parents

    on_the_way = set(chain(os.path.abspath(path))) | set(chain(os.path.realpath(path)))
    try:
        return all(os.stat(p).st_mode & 0o005 for p in on_the_way)
    except OSError:
        return False
