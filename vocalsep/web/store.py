"""The job records of ``vocalsep web``, kept in SQLite in the work dir so a restart forgets none.

``WORK_DIR/jobs.sqlite3`` (standard library ``sqlite3``, WAL, ``synchronous=FULL``) holds one
row per accepted song: its place in the order of arrival, the name it was sent under, who sent
it, its state, its times, its length, its error or its tracks. The queue keeps the same jobs in
memory for the API and writes every change of state here before anyone can see it, through one
connection used by one writer at a time. Progress within a song is not stored: a song that was
running when the server stopped is separated again from its start.

A lock file beside the database keeps a second server off the same work dir. Rows read back
are checked before they are trusted: an id that is not a job id, a state that does not exist or
a stored song name that could be a path is skipped with a warning.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import re
import sqlite3
import threading
from pathlib import Path
from typing import IO

from vocalsep.errors import VocalsepError

log = logging.getLogger(__name__)

DATABASE = "jobs.sqlite3"
LOCK = "jobs.lock"
SCHEMA_VERSION = 1
JOB_ID = re.compile(r"[0-9a-f]{32}")
SONG = "song"
"""The upload is stored as ``song.<ext>``; its tracks land in ``song/``."""
STORED_SONG = re.compile(r"song\.[a-z0-9]{1,8}")
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
STATES = (QUEUED, RUNNING, DONE, FAILED)
_COLUMNS = (
    "id",
    "name",
    "client",
    "song",
    "state",
    "created",
    "started",
    "ended",
    "seconds_total",
    "error",
    "tracks",
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    client TEXT NOT NULL,
    song TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    seconds_total REAL,
    error TEXT,
    tracks TEXT NOT NULL
)
"""


class WorkDirBusyError(VocalsepError):
    """Another ``vocalsep web`` uses this work dir: two would separate the same songs."""


class JobStoreError(VocalsepError):
    """The job database cannot be used (another schema version, say)."""


@dataclasses.dataclass
class Job:
    """One song's way through the queue; ``name`` is only ever shown, never used as a path."""

    id: str
    name: str
    folder: Path
    song: Path
    created: float
    seconds_total: float | None
    client: str = ""
    state: str = QUEUED
    seconds_done: float = 0.0
    error: str | None = None
    started: float | None = None
    ended: float | None = None
    tracks: tuple[str, ...] = ()


class JobStore:
    """``WORK_DIR/jobs.sqlite3``: one connection, written under a lock, for one process."""

    def __init__(self, work_dir: Path) -> None:
        self.path = work_dir / DATABASE
        self._lock_file: IO[bytes] | None = (work_dir / LOCK).open("ab")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise WorkDirBusyError(
                f"{work_dir}: another vocalsep web is using this work dir"
            ) from None
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            self.close()
            raise JobStoreError(
                f"{self.path}: job database version {version}; this vocalsep reads version "
                f"{SCHEMA_VERSION}"
            )
        self._db.execute(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def load(self, jobs_dir: Path) -> list[Job]:
        """Every stored job in order of arrival, each checked before it is trusted."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs ORDER BY seq"
            ).fetchall()
        jobs = []
        for row in rows:
            record = dict(zip(_COLUMNS, row, strict=True))
            problem = _problem(record)
            if problem:
                log.warning("job database %s: row skipped: %s", self.path, problem)
                continue
            folder = jobs_dir / record["id"]
            jobs.append(
                Job(
                    id=record["id"],
                    name=record["name"],
                    folder=folder,
                    song=folder / record["song"],
                    created=record["created"],
                    seconds_total=record["seconds_total"],
                    client=record["client"],
                    state=record["state"],
                    error=record["error"],
                    started=record["started"],
                    ended=record["ended"],
                    tracks=tuple(json.loads(record["tracks"])),
                )
            )
        return jobs

    def add(self, job: Job) -> None:
        """Records an accepted song; committed (and synced) when this returns."""
        values = _values(job)
        with self._lock:
            self._db.execute(
                f"INSERT INTO jobs ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in _COLUMNS)})",
                [values[column] for column in _COLUMNS],
            )

    def save(self, job: Job) -> None:
        """Writes a job's state, times, error and tracks."""
        values = _values(job)
        changed = [column for column in _COLUMNS if column not in ("id", "name", "client", "song")]
        with self._lock:
            self._db.execute(
                f"UPDATE jobs SET {', '.join(f'{column} = ?' for column in changed)} WHERE id = ?",
                [*(values[column] for column in changed), job.id],
            )

    def remove(self, job_ids: list[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in job_ids])

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._lock_file is not None:
                self._lock_file.close()  # releases the flock
                self._lock_file = None


def _values(job: Job) -> dict[str, object]:
    return {
        "id": job.id,
        "name": job.name,
        "client": job.client,
        "song": job.song.name,
        "state": job.state,
        "created": job.created,
        "started": job.started,
        "ended": job.ended,
        "seconds_total": job.seconds_total,
        "error": job.error,
        "tracks": json.dumps(list(job.tracks)),
    }


def _problem(record: dict[str, object]) -> str | None:
    """What makes a stored row untrustworthy, if anything."""
    if not isinstance(record["id"], str) or not JOB_ID.fullmatch(record["id"]):
        return f"{record['id']!r} is not a job id"
    if record["state"] not in STATES:
        return f"job {record['id']}: unknown state {record['state']!r}"
    if not isinstance(record["song"], str) or not STORED_SONG.fullmatch(record["song"]):
        return f"job {record['id']}: {record['song']!r} is not a stored song's name"
    try:
        tracks = json.loads(str(record["tracks"]))
    except ValueError:
        return f"job {record['id']}: its tracks are not JSON"
    if not isinstance(tracks, list) or not all(
        isinstance(track, str) and re.fullmatch(r"[a-z_]{1,32}", track) for track in tracks
    ):
        return f"job {record['id']}: {record['tracks']!r} is not a list of track names"
    return None
