"""The release, built once per session and shared by the wheel and image tests: the sdist
and the wheel (``python -m build``, which builds the wheel from the sdist, so the sdist is
shown complete), and a wheelhouse of the wheel and every dependency (``pip wheel``), from
which both install without reaching a package index."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.release.history import REPO


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path
    wheelhouse: Path  # the wheel, and wheels of all it needs with the postgres extra


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"{pattern} in {folder}: {found}"
    return found[0]


def _run(*command: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd,
                          timeout=900)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-4000:]}{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out / "dist", REPO)
    wheel = _one(out / "dist", "epe-*.whl")
    # What the image installs: epe with its PostgreSQL driver (docs/deploy.md).
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", out / "wheelhouse",
         f"{wheel}[postgres]")
    return Dist(sdist=_one(out / "dist", "epe-*.tar.gz"), wheel=wheel,
                wheelhouse=out / "wheelhouse")
