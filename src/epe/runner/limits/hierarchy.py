"""Finding the cgroups this process was started in, and the small file operations on
them that both versions share.

Where a hierarchy is mounted comes from ``/proc/self/mountinfo``; where in it this
process is, from ``/proc/self/cgroup`` (``N:controllers:/path``; ``0::/path`` for
version 2). Inside a cgroup namespace both are relative to the namespace's root,
which is what a container sees as ``/``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from epe.runner.limits.groups import Unavailable


@dataclass(frozen=True)
class Mount:
    root: str  # the hierarchy's folder mounted here ("/" unless a part of it was bound)
    point: str
    fstype: str
    options: frozenset[str]  # the superblock's: "memory", "cpu,cpuacct" split up, ...


def mounts(text: str | None = None) -> list[Mount]:
    if text is None:
        text = Path("/proc/self/mountinfo").read_text()
    found = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        root, point = (_unescape(f) for f in fields[3:5])
        fstype, options = fields[dash + 1], fields[dash + 3] if len(fields) > dash + 3 else ""
        if fstype in ("cgroup", "cgroup2"):
            found.append(Mount(root, point, fstype, frozenset(options.split(","))))
    return found


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def own_paths(text: str | None = None) -> dict[str, str]:
    """This process's cgroup in each hierarchy: by controller name (``""`` for v2)."""
    if text is None:
        text = Path("/proc/self/cgroup").read_text()
    paths = {}
    for line in text.splitlines():
        _id, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def own_dir(mount: Mount, path: str) -> Path:
    """The folder of cgroup ``path`` under ``mount``; ``Unavailable`` if it is not
    visible there (a part of the hierarchy that does not hold it was mounted)."""
    root = mount.root.rstrip("/")
    if path != root and not path.startswith(root + "/"):
        raise Unavailable(f"this process's cgroup {path} is outside what is mounted at "
                          f"{mount.point}")
    return Path(mount.point) / path[len(root):].lstrip("/")


def own_memory_limit() -> int | None:
    """The smallest memory limit of this process's cgroup and those above it, if any."""
    paths, found = own_paths(), []
    for mount in mounts():
        if mount.fstype == "cgroup2" and "" in paths:
            path, name = paths[""], "memory.max"
        elif mount.fstype == "cgroup" and "memory" in mount.options and "memory" in paths:
            path, name = paths["memory"], "memory.limit_in_bytes"
        else:
            continue
        try:
            folder = own_dir(mount, path)
        except Unavailable:
            continue
        while folder != Path(mount.point).parent:
            with contextlib.suppress(OSError, ValueError):
                found.append(int((folder / name).read_text()))
            folder = folder.parent
    limits = [n for n in found if n < 1 << 60]  # "unlimited" in version 1 is ~2**63
    return min(limits) if limits else None


# -- file operations -----------------------------------------------------------------


def write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def read_int(fd: int) -> int:
    """A file holding one number, read again from its start (cgroup files regenerate
    their text on each read from offset 0)."""
    return int(os.pread(fd, 64, 0))


def read_key(fd: int, key: str) -> int:
    """The number after ``key`` in a ``key value`` per line file (``memory.events``)."""
    for line in os.pread(fd, 4096, 0).decode().splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def make(path: Path) -> None:
    """Make cgroup ``path`` and any parent missing (another server may remove an empty
    parent at the same moment: try again)."""
    for _ in range(5):
        try:
            os.mkdir(path)
            return
        except FileExistsError:
            return
        except FileNotFoundError:
            make(path.parent)


def remove(path: Path, patience: float = 0.0) -> bool:
    """Remove an empty cgroup; False if it still holds processes or groups (processes
    just killed may take a moment to leave: wait up to ``patience`` seconds)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() >= deadline:
                return False
        time.sleep(0.02)


def close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def check_writable(path: Path) -> None:
    """``Unavailable`` unless this process may make groups in ``path``."""
    if not os.access(path, os.W_OK | os.X_OK):
        owner = path.stat().st_uid if path.exists() else None
        raise Unavailable(f"{path} is not writable by uid {os.geteuid()} (owned by uid "
                          f"{owner}): delegate it to the server's user")


class Made:
    """The groups one server made: leaves of workers that ended are removed at once,
    or, if their last processes are still leaving, at the next look or at the end."""

    def __init__(self) -> None:
        self.leftover: set[Path] = set()
        self.users: set[Path] = set()

    def gone(self, leaves: list[Path]) -> None:
        self.leftover.update(p for p in leaves if not remove(p))

    def sweep(self, patience: float = 0.0) -> None:
        for leaf in list(self.leftover):  # a snapshot: ``close`` runs off the event loop
            if remove(leaf, patience):
                self.leftover.discard(leaf)

    def close(self, tops: list[Path]) -> None:
        """Remove leftover leaves and this process's other leaves in its users' groups
        (workers that died with their fork server, never removed one by one), then the
        users' groups and the tops that are empty (other servers started in the same
        cgroup may still use them: those stay)."""
        self.leftover.update(leaf for group in self.users for leaf in _own_leaves(group))
        self.sweep(patience=2.0)
        for group in self.users:
            remove(group, patience=0.5)  # a worker just killed may still be leaving it
        for top in tops:
            remove(top)


_LEAF = re.compile(r"w(\d+)-\d+")  # a worker's leaf: made by the process of that pid


def _own_leaves(group: Path) -> list[Path]:
    """The workers' leaves in ``group`` that this process made."""
    mine = str(os.getpid())
    with contextlib.suppress(OSError):
        return [leaf for leaf in group.iterdir()
                if (m := _LEAF.fullmatch(leaf.name)) and m.group(1) == mine]
    return []


def sweep_dead(top: Path) -> None:
    """Remove the empty leaves that servers which died without stopping left in ``top``
    (a Ray node's agent ended by Ray, a server killed), and the users' groups that hold
    nothing then, leaves or not (made at a sign-in, never run in). A live server's idle
    user's group may go too: its next worker makes it again (``Cgroup*.worker``)."""
    with contextlib.suppress(OSError):
        for user in top.iterdir():
            if not user.is_dir():
                continue
            dead = [leaf for leaf in user.iterdir()
                    if (m := _LEAF.fullmatch(leaf.name)) and not _alive(int(m.group(1)))]
            if all(remove(leaf) for leaf in dead):
                remove(user)  # only if empty: one with processes or live leaves stays


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
