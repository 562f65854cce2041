"""Building a named environment: a venv layered on the server's, packages by pip.

The venv is made from the interpreter the server's own venv was made from, without pip
of its own. A ``.pth`` file in its ``site-packages`` adds the server's ``site-packages``
*after* the venv's own, so numpy, pandas, matplotlib, epe itself (and pip) resolve
there, while a package installed in the environment comes first. pip runs as
``<env python> -m pip install ...`` in a subprocess: a package the server already has
is "already satisfied" and not installed again; one the server lacks, or in another
version, is installed into the environment.

Every step runs in ``.building-<name>-<id>/`` under an exclusive lock; the folder is
renamed to its name only when pip succeeded, the worker user could import what workers
need from it, and ``env.json`` is written. Whatever fails (pip, the check, a time limit,
a cancelled job) removes the folder: a run can never pick a half-made environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import site
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from epe.envs.registry import (
    BUILDING,
    Environment,
    check_name,
    create_lock,
    read,
    site_packages,
)
from epe.errors import Conflict, InternalError, InvalidRequest

MAX_PACKAGES = 500
MAX_DESCRIPTION = 4000
KEPT_OUTPUT = 64 * 1024  # characters of pip's output an error body carries
LAYER_FILE = "_epe_layer.pth"
# What a worker imports before it says it is ready (epe.runner.worker), checked as the
# worker user: a package that breaks numpy or pandas fails the build, not every run.
WORKER_IMPORTS = "import epe.runner.worker.main, numpy, pandas"

Log = Callable[[str], None]


@dataclass(frozen=True)
class RunAs:
    """Who a build checks the new environment's Python as: the user workers run as
    (``epe.runner.identity`` decides; ``name`` None: the server's own user)."""

    name: str | None = None
    subprocess_args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Spec:
    """What to build (POST /envs, ``epe env create``)."""

    name: str
    packages: tuple[str, ...] = ()
    requirements: str | None = None  # the text of a requirements file
    description: str = ""
    find_links: str | None = None  # a folder (or URL) of wheels
    no_index: bool | None = None  # None: only when find_links is given

    @classmethod
    def of(cls, env: Environment) -> Spec:
        """What ``env`` was built from: the same request, to build it again."""
        return cls(env.name, env.packages, env.requirements, env.description, env.find_links,
                   env.no_index)

    def pip_options(self) -> list[str]:
        offline = self.no_index if self.no_index is not None else self.find_links is not None
        return [*(["--no-index"] if offline else []),
                *(["--find-links", self.find_links] if self.find_links else [])]


@dataclass(frozen=True)
class Base:
    """What environments are layered on: the server's interpreter and site-packages."""

    executable: str
    sites: tuple[Path, ...]
    python_version: str

    @classmethod
    def current(cls) -> Base:
        executable = getattr(sys, "_base_executable", None) or sys.executable
        sites = tuple(Path(p) for p in site.getsitepackages() if os.path.isdir(p))
        return cls(executable, sites, f"{sys.version_info.major}.{sys.version_info.minor}")


def _is_path(entry: str) -> bool:
    return "/" in entry or entry.endswith((".whl", ".tar.gz", ".zip"))


def _is_url(entry: str) -> bool:
    return "://" in entry


def check_spec(spec: Spec, root: Path) -> None:
    """Refuse, before any work, what cannot be built."""
    check_name(spec.name)
    if not spec.packages and not (spec.requirements or "").strip():
        raise InvalidRequest("give the packages to install (\"packages\") or a requirements file")
    if len(spec.packages) > MAX_PACKAGES:
        raise InvalidRequest(f"at most {MAX_PACKAGES} packages at once")
    if len(spec.description) > MAX_DESCRIPTION:
        raise InvalidRequest(f"the description is longer than {MAX_DESCRIPTION} characters")
    for entry in spec.packages:
        _check_entry(entry, "package")
    if spec.find_links is not None:
        _check_entry(spec.find_links, "findLinks")
        if not _is_url(spec.find_links) and not os.path.isabs(spec.find_links):
            raise InvalidRequest("findLinks must be an absolute path or a URL")
    if read(root, spec.name) is not None:
        raise Conflict(f"environment {spec.name!r} already exists; delete it first")


def _check_entry(entry: str, what: str) -> None:
    # Each entry is one argument of pip: one starting with "-" would be an option.
    if not entry.strip() or entry.startswith("-") or any(c in entry for c in "\n\r\0"):
        raise InvalidRequest(f"invalid {what} {entry!r}: give a requirement such as "
                             "'name>=1.0', or the absolute path of a wheel")
    if what == "package" and _is_path(entry) and not _is_url(entry) \
            and not os.path.isabs(entry):
        raise InvalidRequest(f"invalid package {entry!r}: paths must be absolute")


async def build(spec: Spec, root: Path, base: Base, *, run_as: RunAs,
                timeout: float, log: Log = lambda _text: None) -> Environment:
    """Build environment ``spec.name`` under ``root``; raise an ``EpeError`` if it fails."""
    check_spec(spec, root)
    build_id = uuid.uuid4().hex
    folder = root / f"{BUILDING}{spec.name}-{build_id[:12]}"
    folder.mkdir(mode=0o755)
    lock = create_lock(folder)
    try:
        try:
            async with asyncio.timeout(timeout):
                await _make_venv(folder, base, log)
                _layer(folder, base)
                await _pip_install(folder, spec, log)
                await _check_imports(folder, run_as, log)
        except TimeoutError:
            raise InvalidRequest(f"building environment {spec.name!r} took longer than "
                                 f"{timeout:g} s and was stopped") from None
        final = root / spec.name
        env = await asyncio.to_thread(_finish, folder, final, spec, build_id, base)
        _place(folder, final)
        return replace(env, path=final)
    finally:
        os.close(lock)
        await asyncio.to_thread(shutil.rmtree, folder, True)  # gone already if it worked


async def _make_venv(folder: Path, base: Base, log: Log) -> None:
    log(f"creating a virtual environment from {base.executable}\n")
    code, output = await run_logged([base.executable, "-m", "venv", "--without-pip",
                                     str(folder)], log)
    if code != 0:
        raise InternalError(f"could not create a virtual environment with {base.executable} "
                            f"(exit code {code})", stdout=output[-KEPT_OUTPUT:])


def _layer(folder: Path, base: Base) -> None:
    """Make the server's site-packages visible after the environment's own."""
    lines = [f"import site; site.addsitedir({str(p)!r})\n" for p in base.sites]
    (site_packages(folder, base.python_version) / LAYER_FILE).write_text("".join(lines))


async def _pip_install(folder: Path, spec: Spec, log: Log) -> None:
    requirements: list[str] = []
    if spec.requirements:
        (folder / "requirements.txt").write_text(spec.requirements)
        requirements = ["-r", str(folder / "requirements.txt")]
    argv = [str(folder / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
            "--no-input", "--progress-bar", "off", "--no-warn-script-location",
            *spec.pip_options(), *requirements, *spec.packages]
    log("$ pip install " + " ".join(argv[4:]) + "\n")
    code, output = await run_logged(argv, log, cwd=folder)
    if code != 0:
        raise InvalidRequest(f"pip could not install the packages (exit code {code}): "
                             f"{_pip_errors(output)}", stdout=output[-KEPT_OUTPUT:])


def _pip_errors(output: str) -> str:
    errors = [line.strip() for line in output.splitlines() if line.startswith("ERROR:")]
    lines = errors or [line.strip() for line in output.splitlines() if line.strip()][-3:]
    return " ".join(lines)[:2000] or "no output"


async def _check_imports(folder: Path, run_as: RunAs, log: Log) -> None:
    """The worker user can start this Python and import what a worker imports."""
    who = run_as.name or "the server's user"
    log(f"checking that {who} can run the environment's Python\n")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/",
           "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}
    code, output = await run_logged([str(folder / "bin" / "python"), "-c", WORKER_IMPORTS],
                                    log, cwd=Path("/"), env=env,
                                    **run_as.subprocess_args)
    if code != 0:
        raise InvalidRequest(
            f"{who} cannot run the new environment's Python and import what workers need "
            f"(exit code {code}): {_pip_errors(output)}; a package may have replaced one the "
            "server needs (numpy, pandas), or the data folder may not be traversable by "
            "that user (see docs/environments.md)", stdout=output[-KEPT_OUTPUT:])


async def run_logged(argv: list[str], log: Log, *, cwd: Path | None = None,
                     env: dict[str, str] | None = None, **identity: Any) -> tuple[int, str]:
    """Run ``argv`` to its end, passing its output to ``log`` line by line.

    Killed with its process group if the caller is cancelled (a time limit, a deleted job).
    """
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, cwd=cwd, env=env or _tool_environment(),
        start_new_session=True, limit=2**20, **identity)
    chunks: list[str] = []
    try:
        assert proc.stdout is not None
        async for line in proc.stdout:
            text = line.decode(errors="replace")
            chunks.append(text)
            log(text)
        code = await proc.wait()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    return code, "".join(chunks)


def _tool_environment() -> dict[str, str]:
    # pip and build backends get the server's environment (proxies, PIP_INDEX_URL, ...)
    # without its EPE_ settings or anything that would point Python elsewhere.
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("EPE_", "PYTHON")) and k != "VIRTUAL_ENV"}


def _finish(folder: Path, final: Path, spec: Spec, build_id: str, base: Base) -> Environment:
    """Point scripts at the final folder, open it to the worker user, write env.json."""
    _retarget_scripts(folder, final)
    _open_up(folder)
    env = Environment(name=spec.name, path=folder, id=build_id, description=spec.description,
                      packages=spec.packages, created=time.time(),
                      python_version=base.python_version, size=_size(folder),
                      requirements=spec.requirements, find_links=spec.find_links,
                      no_index=spec.no_index)
    meta = folder / "env.json"
    meta.write_bytes(env.to_json())
    os.chmod(meta, 0o644)
    return env


def _retarget_scripts(folder: Path, final: Path) -> None:
    """Scripts pip wrote name the build folder in their ``#!`` line: name the final one."""
    old, new = str(folder).encode(), str(final).encode()
    for script in (folder / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        data = script.read_bytes()
        if old in data:
            script.write_bytes(data.replace(old, new))


def _open_up(folder: Path) -> None:
    """Folders 0755 and files a+r (a+x where executable): the worker user reads them."""
    os.chmod(folder, 0o755)
    for top, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(top, name), 0o755)
        for name in files:
            path = os.path.join(top, name)
            if os.path.islink(path) or path == str(folder / "env.lock"):
                continue
            mode = os.stat(path).st_mode & 0o7777
            os.chmod(path, mode | 0o444 | (0o111 if mode & 0o100 else 0))


def _size(folder: Path) -> int:
    total = 0
    for top, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(top, name)).st_size
    return total


def _place(folder: Path, final: Path) -> None:
    try:
        os.rename(folder, final)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise Conflict(f"environment {final.name!r} already exists; delete it "
                           "first") from None
        raise

