"""The repository cites only itself: code, tests and docs point to files in ``docs/``,
never to sections of a contract or to issue numbers kept elsewhere, and every
``docs/NAME.md#anchor`` they point to exists."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ["src", "tests", "bench", "docs", "README.md"]
SUFFIXES = {".py", ".md", ".toml", ".txt", ".cfg", ".ini", ".sh", ".mako"}

# The word in capitals followed by a section id (A3, B2b, C, ...): a section of a file
# that is not in the repository. Built from pieces so that this file does not match itself.
OUTSIDE_SECTION = re.compile("CONTRACT" + r"\s+[A-E](\d+[a-z]?)?\b")
ISSUE = re.compile(r"\b[Ii]ssue" + r"\s+#?\d+")
DOC_REFERENCE = re.compile(r"(?:docs/)?([\w-]+\.md)#([\w-]+)")


def files() -> Iterator[Path]:
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            yield path
            continue
        for found in sorted(path.rglob("*")):
            if found.is_file() and found.suffix in SUFFIXES and \
                    not {"__pycache__", "node_modules"} & set(found.parts):
                yield found


def anchors(doc: Path) -> set[str]:
    """GitHub's anchors for the headings of ``doc``."""
    found = set()
    in_code = False
    for line in doc.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"#{1,6}\s+(.*)", line)):
            text = m.group(1).strip().lower().replace("`", "")
            found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


def test_the_scan_sees_the_tree() -> None:
    scanned = {p.relative_to(ROOT).as_posix() for p in files()}
    assert {"README.md", "docs/api.md", "src/epe/app.py", "tests/conftest.py"} <= scanned


@pytest.mark.parametrize("pattern", [OUTSIDE_SECTION, ISSUE], ids=["contract", "issue"])
def test_nothing_cites_a_section_or_an_issue_kept_elsewhere(pattern: re.Pattern[str]) -> None:
    hits = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
            for path in files()
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
            if pattern.search(line)]
    assert not hits, "cite docs/ instead:\n" + "\n".join(hits)


def test_the_patterns_catch_what_they_are_for() -> None:
    contract, issue = "CONTRACT", "issue"  # in pieces: this file must not match itself
    for text in (f"({contract} A3)", f"{contract} B2b", f"{contract} C", f"see {contract} D."):
        assert OUTSIDE_SECTION.search(text), text
    for text in (f"({issue} 8)", f"{issue.title()} 13", f"{issue} #4"):
        assert ISSUE.search(text), text
    assert not OUTSIDE_SECTION.search("the contract of the executor")
    assert not ISSUE.search("an issue with the token")


def test_every_anchor_cited_exists() -> None:
    docs = {doc.name: anchors(doc) for doc in (ROOT / "docs").glob("*.md")}
    docs["README.md"] = anchors(ROOT / "README.md")
    missing = [f"{path.relative_to(ROOT)}: {name}#{anchor}"
               for path in files()
               for name, anchor in DOC_REFERENCE.findall(path.read_text(errors="replace"))
               if name in docs and anchor not in docs[name]]
    assert not missing, "no such heading:\n" + "\n".join(missing)
