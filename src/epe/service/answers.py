"""Where a finished job's answer and log are kept: where every server that may be
asked for them can read them.

- A single server (SQLite metadata) keeps them as files in its data folder,
  ``DATA_DIR/jobs/{id}/``, written atomically before the job is marked ended.
- Servers sharing a PostgreSQL database keep them in it (``job_answers``),
  written in the very transaction that marks the job ended: any replica serves
  them, no shared disk is needed, and an ended job always has its answer. They
  are bounded by ``EPE_OUTPUT_LIMIT`` (the answer) and a million characters
  (the log), which PostgreSQL keeps compressed out of line.

A job that ended because its server stopped has no kept answer: its error is in
its row, and the job manager answers from that.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from epe.core.jobs import Status
from epe.store.jobs import JobRecord, JobStore


@dataclass(frozen=True)
class Answer:
    """A finished job's answer: the HTTP status and body a sync call would have had."""

    status: int
    body: bytes


class Answers(Protocol):
    def open(self, job_id: str) -> None:
        """Make room for a new job's answer."""

    def keep(self, job_id: str, server: str, status: Status, answer: Answer,
             log: str) -> bool:
        """Keep the answer and mark the job ended; False if the job is gone or no
        longer ``server``'s to end (nothing is kept then)."""

    def read(self, job: JobRecord) -> Answer | None: ...

    def log(self, job: JobRecord) -> str: ...

    def drop(self, job_id: str) -> None: ...


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class FolderAnswers:
    """``root/{id}/answer.json``, ``status`` and ``log.txt``: one server's answers."""

    def __init__(self, root: Path, jobs: JobStore) -> None:
        self.root = root
        self.jobs = jobs

    def open(self, job_id: str) -> None:
        (self.root / job_id).mkdir(parents=True, exist_ok=True)

    def keep(self, job_id: str, server: str, status: Status, answer: Answer,
             log: str) -> bool:
        folder = self.root / job_id
        if not folder.is_dir():
            return False  # deleted while it ran
        with contextlib.suppress(FileNotFoundError):
            write_atomically(folder / "log.txt", log.encode())
            write_atomically(folder / "answer.json", answer.body)
            write_atomically(folder / "status", str(answer.status).encode())
            return self.jobs.move(job_id, status, http_status=answer.status,
                                  result_path=str(folder / "answer.json"),
                                  result_bytes=len(answer.body) + len(log.encode()))
        return False

    def read(self, job: JobRecord) -> Answer | None:
        folder = self.root / job.id
        try:
            return Answer(int((folder / "status").read_bytes()),
                          (folder / "answer.json").read_bytes())
        except FileNotFoundError:
            return None

    def log(self, job: JobRecord) -> str:
        try:
            return (self.root / job.id / "log.txt").read_text()
        except FileNotFoundError:
            return ""

    def drop(self, job_id: str) -> None:
        shutil.rmtree(self.root / job_id, ignore_errors=True)


class StoreAnswers:
    """Answers in the metadata database, for servers that share it."""

    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs

    def open(self, job_id: str) -> None:
        pass

    def keep(self, job_id: str, server: str, status: Status, answer: Answer,
             log: str) -> bool:
        return self.jobs.finish(job_id, server, status=status, http_status=answer.status,
                                body=answer.body, log=log)

    def read(self, job: JobRecord) -> Answer | None:
        found = self.jobs.answer(job.id)
        return None if found is None else Answer(*found)

    def log(self, job: JobRecord) -> str:
        return self.jobs.log(job.id) or ""

    def drop(self, job_id: str) -> None:
        """Nothing to do here: the answer is kept in the job's own row, which deleting the
        job removes (``JobStore.delete``)."""
