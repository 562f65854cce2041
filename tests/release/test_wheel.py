"""The release as a new user gets it: the wheel installed into a new virtual environment
outside the repository answers ``epe --version``, makes the demo and serves it, console
included, passing the README's smoke checks (tests/acceptance/test_smoke.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from tests.acceptance.test_smoke import check_new_install, check_walkthrough
from tests.release.conftest import Dist
from tests.release.history import CHANGELOG
from tests.release.history import project_version as version
from tests.serverproc import EpeServer

DEMO_PASSWORD = "demo-Secret1"


def test_the_version_is_written_once_and_named_in_the_changelog() -> None:
    import epe

    assert epe.__version__ == version()
    # A release's own commit heads it without its commit id, which the next one adds.
    headings = re.findall(r"^## (\d\S*) ", CHANGELOG.read_text(), re.MULTILINE)
    assert version() in headings or ".dev" in version(), (
        f"pyproject.toml's version {version()} is neither a release {CHANGELOG.name} "
        f"names ({headings}) nor a .devN on the way to the next one")


def test_the_sdist_and_the_wheel_carry_what_epe_serves(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "CHANGELOG.md",
            "src/epe/console/static/console.js",
            "src/epe/store/migrations/versions/0001_initial.py"} <= names
    with zipfile.ZipFile(dist.wheel) as wheel:
        files = set(wheel.namelist())
    assert {"epe/console/index.html", "epe/console/static/console.js", "epe/py.typed",
            "epe/store/migrations/script.py.mako", "epe/store/migrations/env.py"} <= files
    assert not any(name.startswith(("tests/", "bench/")) for name in files)


def test_the_wheel_installs_into_a_new_venv_and_serves(dist: Dist, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "VIRTUAL_ENV"} and not k.startswith("EPE_")}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # From the wheelhouse, offline: the same resolution a package index would give.
    subprocess.run([venv / "bin" / "pip", "install", "--quiet", "--no-index", "--find-links",
                    dist.wheelhouse, dist.wheel], check=True, timeout=600, cwd=tmp_path,
                   env=env)
    epe = venv / "bin" / "epe"

    def run(*args: str) -> str:
        done = subprocess.run([str(epe), *args], capture_output=True, text=True, cwd=tmp_path,
                              env={**env, "EPE_DEMO_PASSWORD": DEMO_PASSWORD}, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert run("--version").strip() == f"epe, version {version()}"
    where = subprocess.run([venv / "bin" / "python", "-c", "import epe; print(epe.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path, env=env)
    assert where.stdout.startswith(str(venv)), where.stdout  # the wheel's, not the checkout's
    data = tmp_path / "data"
    assert "IRIS" in run("demo", "--data-dir", str(data))
    server = EpeServer(data, epe=(str(epe),))
    server.env = env  # nothing that would point it back at the checkout
    server.start()
    try:
        check_walkthrough(server)
        check_new_install(server, DEMO_PASSWORD)
    finally:
        server.stop()
