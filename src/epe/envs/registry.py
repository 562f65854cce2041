"""Named environments on disk (docs/environments.md): where they live and who may touch them.

``<data_dir>/envs/`` (mode 0755: workers, running as another user, start their Python
from here) holds one folder per environment, ``<name>/``: a virtual environment whose
``site-packages`` layers the server's own after its own (see ``build.py``), ``env.json``
(what it is; written last) and ``env.lock`` (0600).

``env.lock`` is how the server and the ``epe env`` command, two processes, agree on
whether an environment may go: a run holds a shared ``flock`` on it for as long as it
uses the environment, and deleting takes an exclusive one without waiting, so it fails
(409) while anything runs there. A build is made in ``.building-<name>-<id>/`` and renamed
into place only when complete; a deleted environment is first renamed to
``.deleting-<name>-<id>/``. Neither name is one a run can ask for.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from epe.core.names import ENV_NAME, checked_name
from epe.errors import Conflict, InvalidRequest, NotFound

log = logging.getLogger("epe.envs")

META = "env.json"
LOCK = "env.lock"
BUILDING = ".building-"
DELETING = ".deleting-"
APPLICATION = "OML4PY"  # the tag OML gives environments made for OML4Py


def envs_root(data_dir: Path) -> Path:
    # Absolute: workers start from <root>/<name>/bin/python in their own folder.
    return data_dir.absolute() / "envs"


def prepare_root(data_dir: Path) -> Path:
    """Create ``<data_dir>/envs``, traversable and readable by the worker user."""
    root = envs_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    return root


def check_name(name: str) -> str:
    return checked_name(name, ENV_NAME, "environment", "use up to 64 letters, digits, '_' "
                        "and '-', starting with a letter or digit")


def unknown(name: str) -> InvalidRequest:
    return InvalidRequest(f"unknown environment {name!r}")


@dataclass(frozen=True)
class Environment:
    """One complete environment, as ``env.json`` describes it."""

    name: str
    path: Path
    id: str  # of the build: a new environment of the same name is a new id
    description: str
    packages: tuple[str, ...]  # as requested
    created: float
    python_version: str  # "3.11"
    size: int  # bytes on disk, the layered server environment not counted
    # The rest of what it was built from (a backup keeps it, to build it again).
    requirements: str | None = None
    find_links: str | None = None
    no_index: bool | None = None

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def site_packages(self) -> Path:
        return site_packages(self.path, self.python_version)

    def to_json(self) -> bytes:
        return orjson.dumps({"name": self.name, "id": self.id, "description": self.description,
                             "packages": list(self.packages), "created": self.created,
                             "python": self.python_version, "size": self.size,
                             "requirements": self.requirements,
                             "findLinks": self.find_links, "noIndex": self.no_index},
                            option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, path: Path, data: dict[str, Any]) -> Environment:
        return cls(name=path.name, path=path, id=str(data["id"]),
                   description=str(data.get("description") or ""),
                   packages=tuple(data.get("packages") or ()), created=float(data["created"]),
                   python_version=str(data["python"]), size=int(data.get("size") or 0),
                   requirements=data.get("requirements"), find_links=data.get("findLinks"),
                   no_index=data.get("noIndex"))


def site_packages(folder: Path, python_version: str) -> Path:
    return folder / "lib" / f"python{python_version}" / "site-packages"


def read(root: Path, name: str) -> Environment | None:
    """The complete environment called ``name``, or ``None``."""
    if not ENV_NAME.fullmatch(name):
        return None
    folder = root / name
    try:
        return Environment.from_json(folder, orjson.loads((folder / META).read_bytes()))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (ValueError, KeyError, TypeError):  # not ours, or damaged: not an environment
        log.warning("ignoring %s: its %s cannot be read", folder, META)
        return None


def listing(root: Path) -> list[Environment]:
    """Every complete environment, by name."""
    try:
        names = sorted(p.name for p in root.iterdir())
    except FileNotFoundError:
        return []
    return [env for name in names if (env := read(root, name)) is not None]


# -- locks ---------------------------------------------------------------------------


def _lock(path: Path, mode: int) -> int | None:
    """An fd holding ``flock(mode)`` on ``path``, or ``None`` if it is held otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        # The folder may have been renamed away between open and flock: the lock
        # counts only if the name still leads to the file we locked.
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def hold_shared(root: Path, name: str) -> tuple[int, Environment] | None:
    """Mark ``name`` as in use: an fd holding a shared lock, and the environment.

    ``None`` when there is no such environment, or it is being deleted.
    """
    if not ENV_NAME.fullmatch(name):
        return None
    fd = _lock(root / name / LOCK, fcntl.LOCK_SH)
    if fd is None:
        return None
    env = read(root, name)
    if env is None:
        os.close(fd)
        return None
    return fd, env


def release(fd: int) -> None:
    os.close(fd)  # closing the only fd of the open file drops its flock


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[bool]:
    """Whether an exclusive lock on ``path`` was had (held for the block)."""
    fd = _lock(path, fcntl.LOCK_EX)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)


def create_lock(folder: Path) -> int:
    """Create ``folder/env.lock`` (0600: user code cannot open it) and lock it exclusively."""
    fd = os.open(folder / LOCK, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


# -- deleting ------------------------------------------------------------------------


def remove(root: Path, name: str) -> None:
    """Delete environment ``name``; ``Conflict`` while a run or job uses it."""
    if read(root, name) is None:
        raise NotFound(f"no environment {name!r}")
    folder = root / name
    with exclusive(folder / LOCK) as had:
        if not had:
            raise Conflict(f"environment {name!r} is in use by runs or jobs (or being "
                           "deleted); delete it when they have ended")
        doomed = root / f"{DELETING}{name}-{uuid.uuid4().hex[:12]}"
        os.rename(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def sweep(root: Path) -> list[str]:
    """Remove what crashed builds and deletions left behind; the names removed."""
    removed = []
    for folder in root.glob(".*-*"):
        if folder.name.startswith(DELETING):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
        elif folder.name.startswith(BUILDING):
            with exclusive(folder / LOCK) as had:  # a build in progress holds it
                if had or _abandoned(folder):
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder.name)
    return removed


def _abandoned(folder: Path) -> bool:
    """A build folder without its lock, old enough that its builder is not about to lock."""
    try:
        return not (folder / LOCK).exists() and time.time() - folder.stat().st_mtime > 60
    except FileNotFoundError:
        return False


# -- describing ----------------------------------------------------------------------


def human_size(size: int) -> str:
    """Bytes as OML shows an environment's size: ``"1.7 GiB"``."""
    value, unit = float(size), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"


def _project(entry: str) -> str | None:
    for suffix in (".dist-info", ".egg-info"):
        if entry.endswith(suffix):
            return re.sub(r"[-_.]+", "-", entry[:-len(suffix)].split("-")[0]).lower()
    return None


def installed_packages(folders: list[Path]) -> set[str]:
    """The distributions installed in ``folders`` (site-packages), by normalized name."""
    found: set[str] = set()
    for folder in folders:
        with contextlib.suppress(FileNotFoundError):
            found.update(p for e in os.listdir(folder) if (p := _project(e)) is not None)
    return found


def describe(env: Environment, base: list[Path]) -> dict[str, Any]:
    """``env`` in OML's shape (docs/environments.md), plus what it was built from."""
    return {"name": env.name, "description": env.description, "size": human_size(env.size),
            "number_of_installed_packages": len(installed_packages([env.site_packages, *base])),
            "tags": {"python": env.python_version, "application": APPLICATION},
            "packages": list(env.packages)}
