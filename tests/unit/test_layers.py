"""The layers of docs/architecture.md hold: every import runs downward, and no module
imports itself through others. ``lint-imports`` checks the contracts in pyproject.toml
(``make test`` runs it too); each check is shown failing on a copy of the package with
one bad import added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# Prints every import of a module of ``epe`` that comes back to it through others.
FIND_CYCLES = """
import grimp
graph = grimp.build_graph("epe")
for module in sorted(graph.modules):
    for imported in sorted(graph.find_modules_directly_imported_by(module)):
        if graph.chain_exists(importer=imported, imported=module):
            print(module, "->", imported)
"""


def run_on(package_parent: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(list(args), cwd=ROOT, env=env, text=True, capture_output=True,
                          timeout=120)


def lint(package_parent: Path) -> subprocess.CompletedProcess[str]:
    return run_on(package_parent, str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"),
                  "--no-cache")


def cycles(package_parent: Path) -> list[str]:
    found = run_on(package_parent, sys.executable, "-c", FIND_CYCLES)
    assert found.returncode == 0, found.stderr
    return found.stdout.splitlines()


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the package to break, importable from the folder returned."""
    shutil.copytree(ROOT / "src" / "epe", tmp_path / "epe",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def add_import(copy: Path, module: str, line: str) -> None:
    path = copy / "epe" / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_contracts_hold() -> None:
    result = lint(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(copy: Path) -> None:
    add_import(copy, "core.plan", "import epe.service.runs  # noqa")
    result = lint(copy)
    assert result.returncode != 0
    assert "epe.core.plan -> epe.service.runs" in result.stdout


def test_the_worker_may_not_import_the_local_pool(copy: Path) -> None:
    add_import(copy, "runner.worker.invoke", "import epe.runner.local.pool  # noqa")
    result = lint(copy)
    assert result.returncode != 0
    assert "epe.runner.worker.invoke -> epe.runner.local.pool" in result.stdout


def test_the_client_may_not_import_the_server(copy: Path) -> None:
    add_import(copy, "client._jobs", "import epe.store  # noqa")
    result = lint(copy)
    assert result.returncode != 0
    assert "epe.client._jobs -> epe.store" in result.stdout


def test_there_is_no_import_cycle() -> None:
    assert cycles(ROOT / "src") == []


def test_a_cycle_is_found(copy: Path) -> None:
    # The store and its datastores part once imported each other; it must show.
    add_import(copy, "store.datastores", "import epe.store.store  # noqa")
    assert "epe.store.datastores -> epe.store.store" in cycles(copy)
