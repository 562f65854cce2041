"""docs/architecture.md draws the whole package: every module and folder of
``src/epe`` is in its tree, and nothing in the tree is missing from the code."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "epe"
DOC = ROOT / "docs" / "architecture.md"
# Leaves the tree leaves out: package markers, and what a folder's own line stands for.
UNDRAWN = {"__init__.py", "py.typed", "script.py.mako"}


def drawn() -> set[str]:
    """The paths the tree in the doc names, relative to src/epe."""
    tree = DOC.read_text().split("```", 2)[1]
    paths: set[str] = set()
    stack: list[tuple[int, str]] = []
    for line in tree.splitlines()[2:]:  # after "src/epe/"
        match = re.match(r"^([│ ]*)[├└]── (\S+)", line)
        if not match:
            continue
        depth = len(match.group(1)) // 4
        name = match.group(2)
        stack = stack[:depth]
        parents = [n.rstrip("/") for _, n in stack]
        for part in name.rstrip("/").split("/"):
            paths.add("/".join([*parents, part]))
            parents.append(part)
        stack.append((depth, name))
    return paths


def real() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*"):
        relative = path.relative_to(PACKAGE)
        if "__pycache__" in relative.parts or path.name in UNDRAWN:
            continue
        if relative.parts[:3] == ("store", "migrations", "versions") and len(relative.parts) > 3:
            continue  # the numbered migrations are drawn as their folder
        if relative.parts[:2] == ("console", "static") and len(relative.parts) > 2:
            continue  # the built bundle is drawn as its folder
        found.add(str(relative))
    return found


def test_every_module_and_folder_is_drawn() -> None:
    assert sorted(real() - drawn()) == []


def test_everything_drawn_exists() -> None:
    assert sorted(drawn() - real()) == []
