"""What the bench scripts share: a real ``epe serve`` process and small helpers.

The server runs in a subprocess on a free port of 127.0.0.1 with its own data
folder, its output going to a file rather than a pipe: a thread reading a pipe
would compete with the measuring thread for the GIL.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

READY = re.compile(r"epe serving on (http://\S+)")


class BenchServer:
    def __init__(self, data_dir: Path, env: dict[str, str] | None = None,
                 command: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir.parent / "server.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EPE_")}
        self.env.update(env or {})
        self.command = command or [sys.executable, "-m", "epe", "serve", "--data-dir",
                                   str(data_dir), "--host", "127.0.0.1", "--port", "0"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def add_user(self, user: str, password: str, admin: bool = False) -> None:
        done = subprocess.run([sys.executable, "-m", "epe", "user", "add", user, "--data-dir",
                               str(self.data_dir), "--password-stdin",
                               *(["--admin"] if admin else [])], input=password + "\n",
                              text=True, capture_output=True, env=self.env, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"epe user add failed:\n{done.stdout}{done.stderr}")

    def start(self, timeout: float = 120) -> None:
        """Start (or start again) and wait for the ready line of this start."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if m := READY.search(self.log_path.read_bytes()[offset:].decode(errors="replace")):
                self.url = m.group(1)
                return
            time.sleep(0.05)
        raise RuntimeError("the bench server did not start:\n" + self.output())

    def output(self, tail: int = 100) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines(keepends=True)
        except FileNotFoundError:
            return ""
        return "".join(lines[-tail:])

    @contextmanager
    def guarded(self) -> Iterator[BenchServer]:
        """Stop the server however the block ends (SIGTERM included); on a failure,
        show what it printed."""
        signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
        try:
            yield self
        except BaseException:
            print("the server's output:\n" + self.output(), file=sys.stderr)
            raise
        finally:
            self.stop()

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def library_versions() -> str:
    """The versions both sides of a comparison run (the server's workers use this same
    environment): what moves the figures most from one release to the next."""
    from importlib.metadata import version

    return ", ".join(f"{name} {version(name)}"
                     for name in ("pandas", "numpy", "pyarrow", "duckdb", "fastapi"))


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0-100) of already sorted values."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def commit() -> str | None:
    """The checked-out commit of epe's repository, ``+dirty`` if ``src`` has changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root,
                               text=True, capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")
