"""A real ``epe serve`` process for tests, and clients that talk HTTP to it.

No mocks: every acceptance test goes through the CLI, a subprocess, a port and
httpx, as a user would.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

EPE = [sys.executable, "-m", "epe"]
# Where the API lives (OML's paths), written here once for every test: v2, and v1 beside it.
ROOT = "/oml/api/py-scripts"
API = f"{ROOT}/v2"
API1 = f"{ROOT}/v1"
TOKEN_URL = "/omlusers/api/oauth2/v1/token"
USERS = "/omlusers/api/v1/users"
_READY = re.compile(r"epe serving on (http://\S+)")
_names = itertools.count(1)


def unique_name(prefix: str = "U") -> str:
    return f"{prefix}{os.getpid()}_{next(_names)}"


def run_cli(*args: str, stdin: str = "", env: dict[str, str] | None = None,
            check: bool = True, epe: Sequence[str] = EPE) -> subprocess.CompletedProcess[str]:
    """``epe ARGS``; ``epe``: the command that is epe (another install's, a container's)."""
    return subprocess.run([*epe, *args], input=stdin, text=True, capture_output=True,
                          env={**os.environ, **(env or {})}, check=check, timeout=120)


class EpeServer:
    """``epe serve`` on a free port with its own data folder."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None,
                 wrapper: tuple[str, ...] = (), port: int = 0, epe: Sequence[str] = EPE,
                 cli: Sequence[str] | None = None) -> None:
        """``wrapper``: a command that runs the server as its arguments (it must ``exec``
        them, or pass signals on, so that the signals the tests send reach the server).
        ``port``: 0, a free one; a fixed one where another party must know it first (an
        OpenID provider's redirect URIs). ``epe``: the command that is epe (this checkout's
        by default; an installed wheel's, an old version's); ``cli``: the one that runs its
        other commands beside the server (``epe`` by default; in a container, ``podman
        exec``)."""
        self.data_dir = data_dir
        self.port = port
        self.wrapper = wrapper
        self.epe, self.cli = tuple(epe), tuple(cli if cli is not None else epe)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EPE_")}
        # A stopping server lets what runs finish for this long: the tests' sleepers would
        # hold every stop for the default's 25 s (a test of stopping sets its own).
        self.env["EPE_SHUTDOWN_GRACE"] = "3"
        self.env.update(env or {})
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.output: list[str] = []
        self._bootstrap: tuple[str, str] | None = None  # the admin add_user works as

    def start(self, timeout: float = 60) -> EpeServer:
        self.output = []
        self.url = ""
        self.proc = subprocess.Popen(
            [*self.wrapper, *self.epe, "serve", "--data-dir", str(self.data_dir), "--port",
             str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env)
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(ready,), daemon=True).start()
        if not ready.wait(timeout) or not self.url:
            self.stop()
            raise RuntimeError("epe serve did not start:\n" + "".join(self.output))
        return self

    def _pump(self, ready: threading.Event) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if (m := _READY.search(line)) and not ready.is_set():
                self.url = m.group(1)
                ready.set()
        ready.set()  # it ended: a start still waiting fails now, not at its timeout

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def add_user(self, name: str | None = None, password: str = "pw-Secret1",
                 admin: bool = False) -> tuple[str, str]:
        """A new user. While the server runs, through the admin API as an admin of the
        tests' own (``epe user add`` once per data folder): a CLI process per user costs
        two seconds of imports and migration checks, hundreds of times a session. The
        CLI itself is tested in tests/acceptance/test_users.py."""
        name = name or unique_name()
        if self.proc is None or self.proc.poll() is not None:
            self._add_with_cli(name, password, admin)
            return name.upper(), password
        if self._bootstrap is None:
            self._bootstrap = (unique_name("TESTS_ADMIN_"), secrets.token_urlsafe(12))
            self._add_with_cli(*self._bootstrap, admin=True)
        token = self.token(*self._bootstrap)
        with self.http(headers={"Authorization": f"Bearer {token}"}) as c:
            r = c.post(USERS, json={"username": name, "password": password, "admin": admin})
        if r.status_code == 401:  # a server whose tokens live a second or less
            self._add_with_cli(name, password, admin)
        elif r.status_code != 201:
            raise RuntimeError(f"creating user {name} failed: {r.status_code} {r.text}")
        return name.upper(), password

    def _add_with_cli(self, name: str, password: str, admin: bool) -> None:
        args = ["user", "add", name, "--data-dir", str(self.data_dir), "--password-stdin"]
        run_cli(*args, *(["--admin"] if admin else []), stdin=password + "\n", env=self.env,
                epe=self.cli)

    def http(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kw)

    def token(self, user: str, password: str) -> str:
        with self.http() as c:
            r = c.post(TOKEN_URL, json={"grant_type": "password", "username": user,
                                        "password": password})
            r.raise_for_status()
            return str(r.json()["accessToken"])

    def client(self, user: str, password: str) -> httpx.Client:
        """An httpx client logged in as ``user``, based at the server's root."""
        return self.http(headers={"Authorization": f"Bearer {self.token(user, password)}"})

    def new_client(self, admin: bool = False) -> tuple[str, httpx.Client]:
        user, password = self.add_user(admin=admin)
        return user, self.client(user, password)


def assert_error(r: httpx.Response, status: int = 400, code: int | None = None) -> dict[str, Any]:
    """``r`` is an error body (docs/errors.md) with ``status`` (and ``code``)."""
    assert r.status_code == status, r.text[:2000]
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body: dict[str, Any] = r.json()
    assert isinstance(body.get("errorCode"), int) and not isinstance(body["errorCode"], bool)
    assert isinstance(body.get("errorMessage"), str) and body["errorMessage"], body
    if code is not None:
        assert body["errorCode"] == code, body
    return body


def put_table(c: httpx.Client, name: str, csv: str) -> None:
    """Upload ``csv`` as the caller's table ``name`` (docs/tables.md)."""
    r = c.put(f"{API}/tables/{name}", content=csv.encode(),
              headers={"Content-Type": "text/csv"})
    assert r.status_code == 201, r.text


def iris_csv() -> str:
    """Fisher's iris data in OML's shape (scikit-learn's bundled copy, no network)."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    out = io.StringIO()
    out.write("SEPAL_LENGTH,SEPAL_WIDTH,PETAL_LENGTH,PETAL_WIDTH,SPECIES\n")
    for row, target in zip(iris.data, iris.target, strict=True):
        out.write(",".join(f"{v:g}" for v in row) + f",{iris.target_names[target]}\n")
    return out.getvalue()


def wait_for(predicate: Any, timeout: float = 30, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (for state, never timing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")
