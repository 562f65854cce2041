"""Entering a worker's sandbox (in the worker, right after the fork server forks it).

Run as root, with the kernel's interfaces directly (``unshare``, ``setns``, ``mount``,
``mount_setattr``, ``prctl``, ``setresuid``) through libc: no helper binary, and
nothing for a fork to wait on, so a sandboxed worker starts in milliseconds. The fork
server forks each sandboxed worker straight into a new PID namespace (``fork_into_new_
pid_namespace``): the child is process 1 of it from birth, and is the worker. It
enters the rest in two parts:

- ``prepare``, the same for every user (a spare does it ahead of need, before it knows
  whose worker it becomes): it unshares new mount, network, IPC and UTS namespaces, sees
  the whole filesystem read-only and its own ``/proc`` (its namespace's processes alone),
  and has only a loopback interface (unless the network is allowed);
- ``finish``, once the user is known: it gets a private ``/tmp`` (its home and working
  folder) and ``/dev/shm``, sees the data folder as an empty folder, and sees, read-only,
  the folders it needs (the Python, the venv, the project, an environment's folder, its
  user's input folder) at their own paths, whatever the modes of the folders above them
  (they are bound back under an empty cover); then it drops to the epe user's own uid
  and gid on the host, with no supplementary group, sets ``no_new_privs`` and dies with
  the fork server.

docs/security.md says what each step stops.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000

SYS_MOUNT_SETATTR = 442  # x86_64 and aarch64 alike
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2

PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1

_libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(RuntimeError):
    """The kernel refused a step; the message names it."""


@dataclass(frozen=True)
class Spec:
    """A sandbox as the pool asks for it (the JSON a spawn request carries)."""

    uid: int
    gid: int
    data_dir: str  # hidden
    exchange: str  # the user's input folder: the one folder of the server's it may read
    reach: list[str] = field(default_factory=list)  # folders it must read (Python, venv)
    network: bool = False
    tmp_size: int = 1 << 30

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Spec:
        return cls(**value)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SandboxError(f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
           f"mount {fstype or source or ''} on {target}")


def _b(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, value, 0, 0, 0), f"prctl {option}")


def fork_into_new_pid_namespace() -> int:
    """``os.fork()``, the child process 1 of a PID namespace of its own (in the fork
    server).

    ``unshare(CLONE_NEWPID)`` moves only the caller's future children into a new
    namespace, so the fork server asks for one just before it forks and returns to its
    own at once after: one fork makes the worker, where forking again inside the sandbox
    cost a second copy of the fork server's page tables and a process to wait for it.
    """
    unshare(CLONE_NEWPID)
    try:
        pid = os.fork()
    except BaseException:
        _back_to_own_pid_namespace()
        raise
    if pid:  # the fork server: its next children are its own namespace's again
        _back_to_own_pid_namespace()
    return pid


def _back_to_own_pid_namespace() -> None:
    fd = os.open("/proc/self/ns/pid", os.O_RDONLY)  # the active one, not the children's
    try:
        _check(_libc.setns(fd, CLONE_NEWPID), "setns back to the fork server's PID namespace")
    finally:
        os.close(fd)


def enter(spec: Spec) -> None:
    """Enter the sandbox, in a child of ``fork_into_new_pid_namespace`` (process 1 of its
    PID namespace)."""
    prepare(network=spec.network)
    finish(spec)


def prepare(network: bool) -> None:
    """The part of the sandbox that is the same whoever's worker this becomes: the
    namespaces, the read-only filesystem, its own ``/proc``, loopback, the host name.

    A spare does this ahead of need (``zygote``), still root and still running epe's
    own code alone, so that a user's first run pays only for ``finish``. After it the
    host's file systems are read-only here, the cgroup files included: whoever puts this
    process in its user's groups must do it from outside (the fork server, by pid)."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the worker dies with the fork server
    flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS
    unshare(flags if network else flags | CLONE_NEWNET)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _read_only_tree()
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if not network:
        _loopback_up()
    socket.sethostname("epe-worker")


def finish(spec: Spec) -> None:
    """The user's part, after ``prepare(spec.network)``: their own ``/tmp`` and
    ``/dev/shm``, the data folder hidden, the folders they read bound back; then their
    uid."""
    _user_view(spec)
    _drop_privileges(spec.uid, spec.gid)


def _user_view(spec: Spec) -> None:
    keep = {path: os.open(path, os.O_PATH | os.O_DIRECTORY)
            for path in [*spec.reach, spec.exchange] if os.path.isdir(path)}
    covers = _covers(spec)  # while every path is still where it was
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
           f"mode=0700,uid={spec.uid},gid={spec.gid},size={spec.tmp_size}")
    _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV,
           f"mode=0700,uid={spec.uid},gid={spec.gid},size={spec.tmp_size}")
    for cover in covers:
        if os.path.isdir(cover):  # not already under an outer cover
            _mount("tmpfs", cover, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    for path, fd in keep.items():
        if not os.path.isdir(path):
            _bind_back(fd, path)
    for cover in covers:
        if os.path.ismount(cover):
            _mount(None, cover, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for fd in keep.values():
        os.close(fd)


def _read_only_tree() -> None:
    # Not nodev: /dev/null and /dev/urandom must keep working (read-only does not stop
    # writing to a device, only to files).
    attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    result = _libc.syscall(SYS_MOUNT_SETATTR, -100, b"/", AT_RECURSIVE, ctypes.byref(attr),
                           ctypes.sizeof(attr))
    _check(result, "mount_setattr / read-only")


def _covers(spec: Spec) -> list[str]:
    """What to hide under an empty folder: the data folder, and the outermost folder
    that other users may not traverse above each folder the worker must read."""
    found = {os.path.abspath(spec.data_dir)} if os.path.isdir(spec.data_dir) else set()
    for path in [*spec.reach, spec.exchange]:
        blocked = _outermost_closed(path)
        if blocked is not None:
            found.add(blocked)
    return sorted(found, key=lambda p: p.count("/"))


def _outermost_closed(path: str) -> str | None:
    parts = os.path.abspath(path).split("/")[1:]
    for i in range(1, len(parts)):
        folder = "/" + "/".join(parts[:i])
        if not os.stat(folder).st_mode & 0o001:
            return folder
    return None


def _bind_back(fd: int, path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)
    _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND)
    _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        try:
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))
        except PermissionError:
            # A container's default capabilities lack it (podman, docker: --cap-add).
            raise SandboxError("bringing up loopback in the worker's network namespace: "
                               "the server lacks CAP_NET_ADMIN") from None


def _drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    # After the uid change, which clears it: die when the fork server dies.
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def probe() -> str | None:
    """Why workers cannot be sandboxed here, or ``None`` when they can: a child tries
    the namespaces and the read-only view, then ends."""
    if os.geteuid() != 0:
        return "the server does not run as root"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        refusal = b""
        try:
            unshare(CLONE_NEWPID)  # what the fork server does around each fork
            _back_to_own_pid_namespace()
            unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
            _mount(None, "/", None, MS_REC | MS_PRIVATE)
            _read_only_tree()
            _loopback_up()  # what a worker without network does first
        except Exception as e:
            refusal = str(e).encode()
        os.write(write, refusal)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        message = answer.read().decode()
    os.waitpid(pid, 0)
    return message or None
