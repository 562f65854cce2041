"""Backing up a data folder while its server serves, and restoring a backup into a new
folder (docs/deploy.md#backups).

A backup is a folder, 0700 (it holds password hashes and the token signing key):

    backup.json            what it holds and each file's SHA-256; written last
    metadata.sqlite        users, tokens revoked, scripts, grants, datastores, models, jobs,
                           the audit trail
    token-signing.key      the key the server signs tokens with
    tables/USER.duckdb     each user's tables
    jobs/ID/               the answer and log of each job that had ended
    envs/NAME.json         what each named environment was built from

Each part is a consistent copy, taken one after the other while the server writes on:
the metadata by SQLite's online backup API (one snapshot; writers are not held up), a
user's tables in one read-only DuckDB transaction, by the process that holds them (the
server, asked through its control socket, ``epe.service.control``), the answers of the
jobs that had ended in that metadata copy (an answer is written before its job is marked
ended). The backup is made under a temporary name and renamed into place only when
complete.

Restoring writes a new folder: the same users and passwords, tokens (the same key),
scripts, grants, tables, datastores, models and finished jobs; environments are built
again from their definitions. A job that was waiting or running when the backup was taken ends
FAILED there, saying so: it may have run since, on the server that was backed up.

Where the metadata is in PostgreSQL, the database is backed up with ``pg_dump``; a backup
then holds what the data folder alone keeps (tables in DuckDB, environments).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.engine import make_url

from epe import __version__
from epe.core.jobs import Status
from epe.data import Catalog
from epe.data.duckdb.catalog import DuckDBCatalog
from epe.envs import Base, Environment, Spec, build, envs_root, listing, prepare_root
from epe.errors import EpeError, InvalidRequest
from epe.runner.environments import run_as
from epe.runner.worker.sandbox import probe
from epe.service.services import prepare_data_dir
from epe.settings import Settings
from epe.store import open_store

log = logging.getLogger("epe.backup")

FORMAT = 1
MANIFEST = "backup.json"
METADATA = "metadata.sqlite"
KEY = "token-signing.key"
RESTORED_MESSAGE = ("this job was waiting or running when the backup this server was restored "
                    "from was taken; it was not run here (it may have run on the server backed "
                    "up): submit it again")
ENDED = tuple(s.value for s in Status if s.ended)

Say = Callable[[str], None]


@dataclass(frozen=True)
class Manifest:
    """What a backup holds (``backup.json``)."""

    values: dict[str, Any]

    @property
    def files(self) -> dict[str, str]:
        return dict(self.values["files"])

    def summary(self) -> str:
        counts = self.values["counts"]
        return ", ".join(f"{n} {what}" for what, n in counts.items())


# -- taking a backup -------------------------------------------------------------------


def take(settings: Settings, catalog: Catalog, to: Path) -> Manifest:
    """Back up the data folder of ``settings`` into the new folder ``to`` (blocking)."""
    to = to.absolute()
    if to.exists():
        raise InvalidRequest(f"{to} exists: give a path that does not, for the new backup")
    if not to.parent.is_dir():
        raise InvalidRequest(f"{to.parent} is not a folder: make it first")
    partial = to.with_name(f".{to.name}.partial-{uuid.uuid4().hex[:12]}")
    partial.mkdir(mode=0o700)
    try:
        manifest = _write(settings, catalog, partial)
        os.rename(partial, to)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return manifest


def _write(settings: Settings, catalog: Catalog, folder: Path) -> Manifest:
    counts: dict[str, int] = {}
    sqlite_path = _sqlite_path(settings)
    if sqlite_path is not None:
        _copy_sqlite(sqlite_path, folder / METADATA)
        counts.update(_count(folder / METADATA))
        if settings.key_path.exists():
            _copy_private(settings.key_path, folder / KEY)
        counts["job answers"] = _copy_answers(settings.data_dir / "jobs", folder / "jobs",
                                              _ended_jobs(folder / METADATA))
    if isinstance(catalog, DuckDBCatalog):
        counts["tables"] = _copy_tables(catalog, folder / "tables")
    counts["environments"] = _copy_definitions(settings, folder / "envs")
    manifest = Manifest({
        "format": FORMAT, "epe": __version__, "taken": time.time(),
        "dataDir": str(settings.data_dir.absolute()),
        "metadata": "sqlite" if sqlite_path is not None else "postgresql",
        "tables": "duckdb" if isinstance(catalog, DuckDBCatalog) else "postgresql",
        "counts": counts, "files": {str(p.relative_to(folder)): _sha256(p)
                                    for p in sorted(_files(folder))}})
    _write_private(folder / MANIFEST, orjson.dumps(manifest.values, option=orjson.OPT_INDENT_2))
    return manifest


def _sqlite_path(settings: Settings) -> Path | None:
    url = make_url(settings.metadata_store_url)
    return Path(str(url.database)) if url.get_backend_name() == "sqlite" else None


def _copy_sqlite(source: Path, to: Path) -> None:
    """SQLite's online backup: every page of one snapshot, in one step, while the server
    goes on writing (WAL: readers never block it)."""
    _write_private(to, b"")
    with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src, \
            contextlib.closing(sqlite3.connect(to)) as dst:
        src.execute("PRAGMA busy_timeout=30000")
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one file: no write-ahead log beside it


def _count(metadata: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{metadata}?mode=ro", uri=True)) as db:
        return {what: int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                for what, table in (("users", "users"), ("scripts", "scripts"),
                                    ("datastores", "datastores"), ("jobs", "jobs"))}


def _ended_jobs(metadata: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{metadata}?mode=ro", uri=True)) as db:
        marks = ",".join("?" * len(ENDED))
        return [row[0] for row in db.execute(f"SELECT id FROM jobs WHERE status IN ({marks})",
                                             ENDED)]


def _copy_answers(root: Path, to: Path, ended: list[str]) -> int:
    """The answer folders of the jobs ``ended`` (one deleted since has none: skipped)."""
    copied = 0
    for job_id in ended:
        with contextlib.suppress(FileNotFoundError):
            shutil.copytree(root / job_id, to / job_id, ignore=shutil.ignore_patterns("*.tmp"))
            copied += 1
    return copied


def _copy_tables(catalog: DuckDBCatalog, to: Path) -> int:
    to.mkdir(mode=0o700)
    tables = 0
    for owner in catalog.owners():
        target = to / f"{owner}.duckdb"
        tables += len(catalog.copy_tables(owner, target))
        os.chmod(target, 0o600)
    return tables


def _copy_definitions(settings: Settings, to: Path) -> int:
    envs = listing(envs_root(settings.data_dir))
    if envs:
        to.mkdir(mode=0o700)
    for env in envs:
        _write_private(to / f"{env.name}.json", env.to_json())
    return len(envs)


async def answer(settings: Settings, catalog: Catalog, request: dict[str, Any]
                 ) -> dict[str, Any]:
    """The server's answer to ``epe backup`` (``epe.service.control``): the backup taken."""
    to = Path(str(request.get("to", "")))
    if not to.is_absolute():
        return {"ok": False, "error": f"the backup's path must be absolute, not {str(to)!r}"}
    try:
        manifest = await asyncio.to_thread(take, settings, catalog, to)
    except EpeError as e:
        log.warning("a backup to %s was refused: %s", to, e.message)
        return {"ok": False, "error": e.message}
    log.info("backup written to %s: %s", to, manifest.summary())
    return {"ok": True, "manifest": manifest.values}


# -- restoring ---------------------------------------------------------------------------


def read_manifest(source: Path) -> Manifest:
    """The manifest of the backup at ``source``, each file checked against it."""
    try:
        values = orjson.loads((source / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise InvalidRequest(f"{source} is not a backup made by epe backup (it has no "
                             f"{MANIFEST}), or one that did not finish") from None
    if values.get("format") != FORMAT:
        raise InvalidRequest(f"{source} is a backup of format {values.get('format')!r}, which "
                             f"this epe ({__version__}) cannot read")
    manifest = Manifest(values)
    for name, digest in manifest.files.items():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise InvalidRequest(f"{source / MANIFEST} names {name!r}, outside the backup")
        if not (source / name).is_file() or _sha256(source / name) != digest:
            raise InvalidRequest(f"{source / name} is missing or damaged (its SHA-256 is not "
                                 f"the one {MANIFEST} records): the backup cannot be trusted")
    return manifest


def restore(source: Path, settings: Settings, say: Say) -> tuple[Manifest, list[str]]:
    """Rebuild the data folder of ``settings``, which must be new or empty, from the backup
    at ``source`` (blocking); what it held, and the environments that could not be built
    again."""
    manifest = read_manifest(source)
    target = settings.data_dir
    if target.exists() and any(target.iterdir()):
        raise InvalidRequest(f"{target} is not empty: restore into a new folder")
    prepare_data_dir(settings)
    if manifest.values["metadata"] == "sqlite":
        _restore_metadata(source, manifest, settings, say)
        if settings.metadata_url:
            say("EPE_METADATA_URL is set: a server started with it uses that database, not "
                f"the metadata restored into {settings.metadata_path}")
    else:
        say("the metadata was in PostgreSQL: restore that database with pg_restore "
            "(docs/deploy.md#backups)")
    _restore_files(source, target, [n for n in manifest.files if n.startswith("tables/")])
    definitions = [source / n for n in sorted(manifest.files) if n.startswith("envs/")]
    return manifest, _rebuild_environments(definitions, settings, say)


def _restore_files(source: Path, target: Path, names: list[str]) -> None:
    """The backup's files ``names`` (checked against its manifest) into ``target``."""
    for name in names:
        (target / name).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _copy_private(source / name, target / name)


def _restore_metadata(source: Path, manifest: Manifest, settings: Settings, say: Say) -> None:
    _copy_private(source / METADATA, settings.metadata_path)
    if (source / KEY).exists():
        _copy_private(source / KEY, settings.key_path)
    _restore_files(source, settings.data_dir,
                   [n for n in manifest.files if n.startswith("jobs/")])
    store = open_store(f"sqlite:///{settings.metadata_path}")  # migrated to this epe's
    try:
        unfinished = store.jobs.fail_unfinished(RESTORED_MESSAGE)
    finally:
        store.close()
    if unfinished:
        say(f"{len(unfinished)} jobs that were waiting or running when the backup was taken "
            "are marked FAILED (they were not run here)")


def _rebuild_environments(definitions: list[Path], settings: Settings, say: Say) -> list[str]:
    """Build each environment again from its definition; the names of those that failed."""
    if not definitions:
        return []
    root = prepare_root(settings.data_dir)
    failed = []
    for file in definitions:
        env = Environment.from_json(root / file.stem, orjson.loads(file.read_bytes()))
        say(f"building environment {env.name} again ({', '.join(env.packages) or 'requirements'})")
        try:
            asyncio.run(build(Spec.of(env), root, Base.current(),
                              run_as=run_as(settings, isolated=probe() is None),
                              timeout=settings.env_build_timeout))
        except EpeError as e:
            say(f"environment {env.name} could not be built again: {e.message}")
            failed.append(env.name)
    return failed


# -- files ---------------------------------------------------------------------------------


def _files(folder: Path) -> Iterator[Path]:
    return (p for p in folder.rglob("*") if p.is_file())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _copy_private(source: Path, to: Path) -> None:
    """A copy only the server's user may read."""
    _write_private(to, b"")
    shutil.copyfile(source, to)
