"""A real PostgreSQL server for the tests (and the benchmarks): Debian's binaries,
``initdb`` into a temporary folder, ``pg_ctl start`` on a free port of 127.0.0.1.

One server per test session; each test (or module) asks it for a database of its
own (``new_database``), so tests never see each other's rows. A database epe has
already migrated is copied from a template made once (``migrated=True``): a copy
costs a fraction of a migration. ``initdb`` refuses to run as root: as root, the
cluster belongs to the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

INSTALL_HINT = ("PostgreSQL's server binaries are not installed: `make test` installs "
                "Debian's package (apt-get install postgresql)")
_databases = itertools.count(1)
_data_prefixes = itertools.count(1)


def binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` with ``initdb`` in it."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


# Ports the tests pick: above Ray's workers' (10002-19999 by default), below the kernel's
# ephemeral range, from which outgoing connections and servers bound to port 0 take theirs.
_FIRST_PORT = 20000


def free_port() -> int:
    """A port of 127.0.0.1 nothing holds now and nothing takes by chance later: a port
    the kernel hands out as an ephemeral one could be some connection's by the time a
    server is started on it (the OpenID provider knows epe's callback port from the
    session's start, minutes before that server starts)."""
    ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = list(range(_FIRST_PORT, max(ephemeral, _FIRST_PORT + 1000)))
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port of 127.0.0.1 from {_FIRST_PORT} to {ephemeral}")


def terminate(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """Stop a server process the tests started: SIGTERM, then SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_orphans(bin_dir: Path) -> None:
    """Stop the clusters of sessions that ended without stopping theirs (a test run
    killed, say): ``pg_ctl`` leaves the server running on its own."""
    for owner in Path(tempfile.gettempdir()).glob("epe-pg-*/owner"):
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            if not alive(int(owner.read_text())):
                PostgresServer(bin_dir, root=owner.parent).stop()


class PostgresServer:
    def __init__(self, bin_dir: Path, fsync: bool = False, root: Path | None = None) -> None:
        self.bin = bin_dir
        self.fsync = fsync
        self.root = root or Path(tempfile.mkdtemp(prefix="epe-pg-"))
        self.data, self.sockets = self.root / "data", self.root / "sock"
        self.port = 0
        self._options = ""
        self._template: str | None = None
        self._owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._owner is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed:\n{done.stdout}{done.stderr}")

    def start(self) -> PostgresServer:
        stop_orphans(self.bin)
        (self.root / "owner").write_text(str(os.getpid()))
        self.sockets.mkdir()
        if self._owner is not None:
            for path in (self.root, self.sockets):
                os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-locale", "--no-sync")
        options = f"-p {{port}} -k {self.sockets} -h 127.0.0.1 -c max_connections=300"
        if not self.fsync:  # a test cluster thrown away at the end: no need to sync
            options += " -F -c synchronous_commit=off -c full_page_writes=off"
        for _attempt in range(5):  # a free port may be taken between the probe and the bind
            self.port = free_port()
            try:
                self._options = options.format(port=self.port)
                self._pg_ctl_start()
                return self
            except RuntimeError:
                if "could not bind" not in self.log():
                    raise
        raise RuntimeError("PostgreSQL found no free port:\n" + self.log())

    def _pg_ctl_start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                  "-o", self._options, "start")

    def halt(self) -> None:
        """Shut the server down, clients cut off, its data kept for ``resume``."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start a ``halt``-ed server again, on the same port."""
        self._pg_ctl_start()

    def require_passwords(self) -> None:
        """From now on, roles other than ``postgres`` log in over TCP with a password
        (SCRAM), as on a real server; ``postgres`` itself still needs none."""
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all postgres 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n")
        self._run("pg_ctl", "-D", str(self.data), "reload")

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "log").read_text(errors="replace")
        return ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "epe", migrated: bool = False) -> str:
        """A new database, empty or (``migrated``) with epe's schema; its URL."""
        import psycopg

        template = self._migrated_template() if migrated else "template1"
        name = f"{prefix}_{os.getpid()}_{next(_databases)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database of ``new_database`` (its files are megabytes), clients or not."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')

    def _migrated_template(self) -> str:
        if self._template is None:
            from epe.store import open_store

            url = self.new_database("template")
            open_store(url).close()  # migrated, and no connection left open on it
            self._template = url.rsplit("/", 1)[1]
        return self._template

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def on_postgresql_data(postgres: PostgresServer, env: dict[str, str] | None = None
                       ) -> dict[str, str]:
    """A server's ``env`` with users' tables in a new database of ``postgres``, under
    role names no other server of the session uses (roles are the whole server's)."""
    prefix = f"d{os.getpid()}_{next(_data_prefixes)}_"
    return {"EPE_DATA_URL": postgres.new_database("data"), "EPE_DATA_ROLE_PREFIX": prefix,
            **(env or {})}
