"""Earlier versions of epe, taken from this repository's own history and run as they were.

Which ones: the newest release CHANGELOG.md names (its heading carries the commit, in
full: git tags may not travel with a copy of the repository), and, while that release
already has the newest migration, the commit before that migration appeared (so that an
upgrade always runs at least one migration). An old version is checked out with
``git archive`` into a folder of its own and run by a Python of its own whose
site-packages puts the old ``src`` first and this environment's packages after it: the
old code runs on the current dependencies (enough while no release needed a package the
current code dropped; such a release would need its own install here).
"""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHANGELOG = REPO / "CHANGELOG.md"
MIGRATIONS = REPO / "src" / "epe" / "store" / "migrations" / "versions"
_RELEASE = re.compile(r"^## (\d+\.\d+\.\d+\S*) .*\bcommit ([0-9a-f]{40})\s*$", re.MULTILINE)
_REVISION = re.compile(r"^(down_revision|revision)\s*=\s*['\"]?([^'\"\s]+)['\"]?", re.MULTILINE)


class HistoryMissing(RuntimeError):
    """This checkout cannot give an old version: the message says what to do."""


@dataclass(frozen=True)
class OldVersion:
    label: str  # what the test is called after: "0.1.0", "before 0005_job_leases"
    commit: str

    @property
    def short(self) -> str:
        return self.commit[:10]


def project_version() -> str:
    """The one version number, pyproject.toml's."""
    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


def releases() -> list[OldVersion]:
    """The releases CHANGELOG.md names, newest first."""
    return [OldVersion(version, commit)
            for version, commit in _RELEASE.findall(CHANGELOG.read_text())]


def git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0:
        raise HistoryMissing(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def revision_of(migration: Path) -> tuple[str, str]:
    """A migration's revision and the one it follows (``None`` for the first)."""
    found = dict(_REVISION.findall(migration.read_text()))
    return found["revision"], found.get("down_revision", "None")


def newest_migration() -> Path:
    """The migration no other one comes after (the head of the chain)."""
    chain = {revision_of(path): path for path in MIGRATIONS.glob("[0-9]*.py")}
    parents = {parent for _revision, parent in chain}
    heads = [path for (revision, _parent), path in chain.items() if revision not in parents]
    assert len(heads) == 1, f"the migrations have {len(heads)} heads: {heads}"
    return heads[0]


def commit_before(path: Path) -> str | None:
    """The commit before ``path`` appeared on the first-parent line of HEAD (a merge that
    brought it in counts as where it appeared); None while it is not committed."""
    added = git("log", "--first-parent", "--diff-filter=A", "--format=%H", "--",
                str(path.relative_to(REPO))).splitlines()
    return git("rev-parse", f"{added[-1]}^1") if added else None


def has_commit(commit: str) -> bool:
    return subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"],
                          capture_output=True, timeout=60).returncode == 0


def require(commit: str, what: str) -> None:
    """Make sure the commit is here: fetch it when the checkout is shallow or lacks it,
    else fail saying why the test needs it and how to get it."""
    if not (REPO / ".git").exists():
        raise HistoryMissing(f"{REPO} is not a git checkout: the upgrade test runs {what} "
                             f"(commit {commit}) from this repository's history")
    if has_commit(commit):
        return
    shallow = git("rev-parse", "--is-shallow-repository") == "true"
    attempts = [["fetch", "--quiet", "--unshallow"]] if shallow else []
    attempts.append(["fetch", "--quiet", "origin", commit])
    for attempt in attempts:
        subprocess.run(["git", "-C", str(REPO), *attempt], capture_output=True, timeout=300)
        if has_commit(commit):
            return
    raise HistoryMissing(
        f"the upgrade test runs {what}, commit {commit}, and this checkout does not have "
        f"it{' (a shallow clone)' if shallow else ''}, nor could fetch it from origin: "
        "clone with the whole history (no --depth), or `git fetch --unshallow`")


def old_versions() -> list[OldVersion]:
    """The newest release, and the commit before the newest migration while that release
    already has that migration (so that some migration is always run)."""
    found = releases()
    if not found:
        raise HistoryMissing(f"{CHANGELOG} names no release (`## X.Y.Z ... commit SHA`)")
    release = found[0]
    require(release.commit, f"release {release.label}")
    migration = newest_migration()
    before = commit_before(migration)
    versions = [release]
    if before is not None and before != release.commit and subprocess.run(
            ["git", "-C", str(REPO), "merge-base", "--is-ancestor", before, release.commit],
            capture_output=True, timeout=60).returncode == 0:
        versions.append(OldVersion(f"before {migration.stem}", before))
    return versions


def supports_postgresql_metadata(version: OldVersion) -> bool:
    """Whether that version could keep its metadata in PostgreSQL at all."""
    return "psycopg" in git("show", f"{version.commit}:pyproject.toml")


def install(version: OldVersion, root: Path) -> Path:
    """Check ``version`` out under ``root`` and make it runnable; the Python that runs it."""
    root.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar",
                              version.commit, "src"], capture_output=True, check=True,
                             timeout=120)
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True, timeout=120)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    # The old source first, then this environment's packages (whose own .pth files add
    # the current source too, after the old one: `import epe` finds the old).
    current = sysconfig.get_path("purelib")
    (site / "00-epe-old-version.pth").write_text(
        f"{root / 'src'}\nimport site; site.addsitedir({current!r})\n")
    python = venv / "bin" / "python"
    shown = subprocess.run([str(python), "-c", "import epe; print(epe.__file__)"],
                           capture_output=True, text=True, check=True, timeout=60).stdout
    assert shown.startswith(str(root / "src")), shown
    return python
