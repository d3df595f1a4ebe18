"""The job queue behind ``vocalsep web``: songs separated one at a time, kept under the work dir.

Separating is CPU bound (or bound by one model server), so one worker thread runs the jobs in
the order they arrived, and a waiting job knows how many are ahead of it. Each job owns
``<work dir>/jobs/<id>/``, named by a random id, never by anything the uploader sent. When a
job ends, its folder holds ``song/`` with a wav and a spectrogram per track (the mix and each
stem); flac and mp3 copies are encoded on first request. A failed job's folder is deleted at
once, so it leaves no stems. Ended jobs are removed ``max_age_s`` after they ended, as are job
folders an earlier process left behind (by their age).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from vocalsep.audio import io
from vocalsep.errors import VocalsepError
from vocalsep.separator import AUDIO_FORMATS, Separator
from vocalsep.web import media

log = logging.getLogger(__name__)

SeparatorSource = Callable[[], contextlib.AbstractContextManager[Separator]]
"""Gives the Separator for one job: the same loaded model each time, or a fresh connection to a
model server (so a version pushed meanwhile is used from the next song on)."""

JOBS_FOLDER = "jobs"
SONG = "song"
"""The upload is stored as ``song<ext>``; its tracks land in ``song/``."""
MIX = "mix"
JOB_ID = re.compile(r"[0-9a-f]{32}")
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


class JobNotFoundError(VocalsepError):
    """No such job (never created, or removed after its age), or no such file in it."""


@dataclasses.dataclass
class Job:
    """One song's way through the queue; ``name`` is only ever shown, never used as a path."""

    id: str
    name: str
    folder: Path
    song: Path
    created: float
    seconds_total: float | None
    state: str = QUEUED
    seconds_done: float = 0.0
    error: str | None = None
    started: float | None = None
    ended: float | None = None
    tracks: tuple[str, ...] = ()


class JobQueue:
    """Jobs, their folders, and the single worker that separates them."""

    def __init__(
        self,
        separator: SeparatorSource,
        work_dir: Path,
        max_age_s: float,
        *,
        clock: Callable[[], float] = time.time,
        on_end: Callable[[Job], None] | None = None,
    ) -> None:
        self._separator = separator
        self.jobs_dir = work_dir / JOBS_FOLDER
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s
        self._clock = clock
        self._on_end = on_end
        self._lock = threading.Condition()
        self._jobs: dict[str, Job] = {}
        self._reserved: set[str] = set()
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._encoding = threading.Lock()

    def start(self) -> None:
        """Starts the worker and the sweeper that removes old jobs."""
        self._stopping.clear()
        self._threads = [
            threading.Thread(target=self._work, name="vocalsep-web-worker", daemon=True),
            threading.Thread(target=self._sweep, name="vocalsep-web-sweeper", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, wait_s: float = 5.0) -> None:
        """Stops taking jobs; a separation still running is abandoned after ``wait_s``."""
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(wait_s)

    def reserve(self) -> tuple[str, Path]:
        """A new job id and its empty folder, for an upload to arrive in."""
        job_id = secrets.token_hex(16)
        folder = self.jobs_dir / job_id
        with self._lock:
            self._reserved.add(job_id)
        folder.mkdir()
        return job_id, folder

    def release(self, job_id: str) -> None:
        """Gives up a reserved folder whose upload failed, with whatever arrived in it."""
        with self._lock:
            self._reserved.discard(job_id)
        shutil.rmtree(self.jobs_dir / job_id, ignore_errors=True)

    def submit(self, job_id: str, name: str, song: Path) -> Job:
        """Queues the song stored in a reserved folder.

        Audio that cannot be read raises the typed error ``vocalsep separate`` would (see
        ``describe_error`` for its message), and the folder is released.
        """
        try:
            info = io.probe(song)
        except VocalsepError:
            self.release(job_id)
            raise
        job = Job(job_id, name, song.parent, song, self._clock(), info.duration_seconds)
        with self._lock:
            self._reserved.discard(job_id)
            self._jobs[job_id] = job
            self._waiting.append(job)
            self._lock.notify_all()
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(f"job {job_id}: no such job (finished jobs are removed)")
        return job

    def ahead(self, job: Job) -> int:
        """How many songs will be separated before this queued one (0 once it runs)."""
        with self._lock:
            if job.state != QUEUED:
                return 0
            return self._waiting.index(job) + (self._running is not None)

    def track_file(self, job_id: str, track: str, audio_format: str) -> Path:
        """A finished job's track as wav, flac or mp3 (flac and mp3 encoded once, on demand)."""
        job = self.get(job_id)
        if job.state != DONE or track not in job.tracks or audio_format not in AUDIO_FORMATS:
            raise JobNotFoundError(f"job {job_id}: no {track}.{audio_format}")
        wav = job.folder / SONG / f"{track}.wav"
        if audio_format == "wav":
            return wav
        target = wav.with_suffix(f".{audio_format}")
        with self._encoding:
            if not target.exists():
                media.transcode(wav, target)
        return target

    def spectrogram_file(self, job_id: str, track: str) -> Path:
        job = self.get(job_id)
        if job.state != DONE or track not in job.tracks:
            raise JobNotFoundError(f"job {job_id}: no spectrogram of {track}")
        return job.folder / SONG / f"{track}.png"

    def remove_expired(self, now: float | None = None) -> list[str]:
        """Removes jobs that ended ``max_age_s`` before ``now``, and stray folders as old."""
        cutoff = (self._clock() if now is None else now) - self.max_age_s
        with self._lock:
            expired = [job for job in self._jobs.values() if job.ended and job.ended <= cutoff]
            for job in expired:
                del self._jobs[job.id]
            owned = set(self._jobs) | self._reserved
        for job in expired:
            shutil.rmtree(job.folder, ignore_errors=True)
        for folder in self.jobs_dir.iterdir():
            if JOB_ID.fullmatch(folder.name) and folder.name not in owned:
                with contextlib.suppress(FileNotFoundError):
                    if folder.stat().st_mtime <= cutoff:
                        shutil.rmtree(folder, ignore_errors=True)
        return [job.id for job in expired]

    def _sweep(self) -> None:
        interval = min(max(self.max_age_s / 10, 1.0), 60.0)
        while not self._stopping.wait(interval):
            self.remove_expired()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._stopping.is_set():
                    self._lock.wait()
                if self._stopping.is_set():
                    return
                job = self._waiting.popleft()
                job.state, job.started = RUNNING, self._clock()
                self._running = job
            self._run(job)
            with self._lock:
                self._running = None
            if self._on_end is not None:
                self._on_end(job)

    def _run(self, job: Job) -> None:
        def progress(done: float, total: float | None) -> None:
            job.seconds_done, job.seconds_total = done, total

        try:
            with self._separator() as separator:
                stems = separator.separate_file(job.song, job.folder, progress=progress)
            tracks = {MIX: job.folder / SONG / f"{MIX}.wav", **stems}
            channels = 1 if io.probe(job.song).channels == 1 else 2  # as the stems have
            media.transcode(job.song, tracks[MIX], channels)
            media.draw_spectrograms(tracks, reference=MIX)
            job.song.unlink()
        except VocalsepError as error:
            self._fail(job, describe_error(error, job.song, job.name))
            return
        except Exception as error:
            # The worker must outlive any one song; the traceback goes to the server's log.
            log.exception("job %s (%s) failed", job.id, job.name)
            self._fail(job, f"{job.name}: internal error ({type(error).__name__}: {error})")
            return
        with self._lock:
            job.tracks = tuple(tracks)
            job.state, job.ended = DONE, self._clock()

    def _fail(self, job: Job, message: str) -> None:
        shutil.rmtree(job.folder, ignore_errors=True)
        with self._lock:
            job.error = message
            job.state, job.ended = FAILED, self._clock()


def describe_error(error: VocalsepError, song: Path, name: str) -> str:
    """The CLI's one-line message, naming the upload as its sender did, not where it is stored."""
    return str(error).replace(str(song), name).replace(f"{song.parent}{os.sep}", "")
