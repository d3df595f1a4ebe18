"""The job queue behind ``vocalsep web``: songs separated in order, kept under the work dir.

Separating is CPU bound (or bound by the model server), so ``Limits.workers`` threads (one
unless a model server batches for several) run the jobs in the order they arrived, and a
waiting job knows how many are ahead of it. Each job owns ``<work dir>/jobs/<id>/``, named by a
random id, never by anything the uploader sent. When a job ends, its folder holds ``song/``
with a wav and a spectrogram per track (the mix and each stem); flac and mp3 copies are encoded
on first request. A failed job's folder is deleted at once, so it leaves no stems. Ended jobs
are removed ``max_age_s`` after they ended, as are job folders no job owns (by their age).

Every job is recorded in ``store.JobStore`` before the upload is answered, and each change of
state is written there before it shows, so a restart resumes the queue in its order, separates
again the songs that were running, and still serves the finished ones. ``drain`` is the
graceful half of a stop: no new songs, the running ones get a grace period, then go back to the
queue. ``reserve`` and ``submit`` refuse songs the ``Limits`` do not allow, with a
``RefusedError`` that says which limit and, where waiting helps, after how long to retry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import secrets
import shutil
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from vocalsep.audio import io
from vocalsep.errors import VocalsepError
from vocalsep.separator import AUDIO_FORMATS, Separator
from vocalsep.web import media
from vocalsep.web.store import (
    DONE,
    FAILED,
    JOB_ID,
    QUEUED,
    RUNNING,
    SONG,
    Job,
    JobStore,
)

__all__ = ["DONE", "FAILED", "QUEUED", "RUNNING", "SONG", "Job"]

log = logging.getLogger(__name__)

SeparatorSource = Callable[[], contextlib.AbstractContextManager[Separator]]
"""Gives the Separator for one job: the same loaded model each time, or a fresh connection to a
model server (so a version pushed meanwhile is used from the next song on)."""

JOBS_FOLDER = "jobs"
MIX = "mix"
OUTPUT_BYTES_PER_SECOND = round(3 * 44100 * 2 * 2 * 1.8)
"""Disk a song's results take per second of audio, as budgeted before they exist: three 16-bit
stereo wavs at 44.1 kHz (mix, vocals, instrumental) and their flac and mp3 copies (about 0.8 of
a wav more, measured on MUSDB18 clips)."""
DEFAULT_RETRY_S = 30
RUNS_REMEMBERED = 20


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one server accepts; the README's "Limits" lists each with its flag."""

    max_minutes: float | None = 20.0
    """Longest song (``--max-minutes``); None: any length."""
    max_queue: int = 20
    """Songs queued, running or being uploaded at once (``--max-queue``)."""
    max_per_client: int = 4
    """Of those, how many one client may have (``--max-per-client``)."""
    disk_budget_bytes: int = 10 * 2**30
    """Uploads, results and the job database together (``--max-disk-gb``)."""
    workers: int = 1
    """Songs separated at once (``--workers``)."""


class JobNotFoundError(VocalsepError):
    """No such job (never created, or removed after its age), or no such file in it."""


class RefusedError(VocalsepError):
    """A song the server will not take now; ``status`` is the HTTP answer."""

    status = 503

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ShuttingDownError(RefusedError):
    """The server is stopping (a rollout, say); its next start takes songs again."""


class SongTooLongError(RefusedError):
    """Longer than ``--max-minutes``."""

    status = 422


class QueueFullError(RefusedError):
    """``--max-queue`` songs are already waiting."""

    status = 429


class ClientShareError(QueueFullError):
    """This client already has ``--max-per-client`` songs waiting."""


class DiskBudgetError(RefusedError):
    """No room under ``--max-disk-gb``, even after removing every finished song."""

    status = 507


class _ReturnedError(Exception):
    """Raised into a separation whose song went back to the queue at a stop."""


@dataclasses.dataclass
class _Reservation:
    client: str
    bytes: int


class JobQueue:
    """Jobs, their folders and records, and the workers that separate them."""

    def __init__(
        self,
        separator: SeparatorSource,
        work_dir: Path,
        max_age_s: float,
        *,
        limits: Limits = Limits(),
        clock: Callable[[], float] = time.time,
        on_end: Callable[[Job], None] | None = None,
    ) -> None:
        self._separator = separator
        self.work_dir = work_dir
        self.jobs_dir = work_dir / JOBS_FOLDER
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s
        self.limits = limits
        self._clock = clock
        self._on_end = on_end
        self._lock = threading.Condition()
        self._space = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._reserved: dict[str, _Reservation] = {}
        self._waiting: deque[Job] = deque()
        self._running: dict[str, Job] = {}
        self._returned: set[str] = set()
        self._run_seconds: deque[float] = deque(maxlen=RUNS_REMEMBERED)
        self._draining = threading.Event()
        self._hurry = threading.Event()
        self._stopping = threading.Event()
        self._closed = False
        self._retry_after_stop_s = DEFAULT_RETRY_S
        self._threads: list[threading.Thread] = []
        self._encoding = threading.Lock()
        self._store = JobStore(work_dir)
        self.resumed = self._resume()
        """Songs an earlier run accepted and left to this one, to be separated."""

    def _resume(self) -> int:
        """Takes back the stored jobs: queued in their order, running ones first and anew."""
        for job in self._store.load(self.jobs_dir):
            if job.state in (QUEUED, RUNNING):
                if not job.song.is_file():
                    job.state, job.ended = FAILED, self._clock()
                    job.error = f"{job.name}: the upload is missing from the work dir"
                else:
                    job.state, job.started = QUEUED, None
                    self._waiting.append(job)
                self._store.save(job)
            elif job.state == DONE and job.song.is_file():
                job.song.unlink()  # a stop came between the record and the removal
            self._jobs[job.id] = job
        return len(self._waiting)

    def start(self) -> None:
        """Starts the workers and the sweeper that removes old jobs."""
        self._stopping.clear()
        self._threads = [
            threading.Thread(target=self._work, name=f"vocalsep-web-worker-{number}", daemon=True)
            for number in range(self.limits.workers)
        ]
        self._threads.append(
            threading.Thread(target=self._sweep, name="vocalsep-web-sweeper", daemon=True)
        )
        for thread in self._threads:
            thread.start()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def drain(self, grace_s: float) -> tuple[int, int]:
        """Takes no more songs and starts none; waits up to ``grace_s`` for the running ones.

        Those still running then go back to the head of the queue (their separations stop at
        their next block). Returns how many went back and how many songs are queued in all,
        all of them recorded for the next start.
        """
        self._retry_after_stop_s = math.ceil(grace_s) + DEFAULT_RETRY_S
        self._draining.set()
        deadline = time.monotonic() + grace_s
        with self._lock:
            self._lock.notify_all()
            while (
                self._running
                and not self._hurry.is_set()
                and (left := deadline - time.monotonic()) > 0
            ):
                self._lock.wait(left)
            returned = sorted(self._running.values(), key=lambda job: job.started or 0.0)
            for job in reversed(returned):
                del self._running[job.id]
                self._returned.add(job.id)
                job.state, job.started, job.seconds_done = QUEUED, None, 0.0
                self._save(job)
                self._waiting.appendleft(job)
            return len(returned), len(self._waiting)

    def hurry(self) -> None:
        """Ends a drain's grace period now: its running songs go back to the queue."""
        self._hurry.set()
        with self._lock:
            self._lock.notify_all()

    def unfinished(self) -> int:
        """Songs queued or running: after a stop, what the next start separates."""
        with self._lock:
            return len(self._waiting) + len(self._running)

    def stop(self, wait_s: float = 5.0) -> None:
        """Stops the workers and closes the records; a separation still running is abandoned
        after ``wait_s`` (recorded as running, it is separated again at the next start)."""
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(wait_s)
        with self._lock:
            self._closed = True
            self._store.close()

    def reserve(self, client: str, upload_bytes: int) -> tuple[str, Path]:
        """A new job id and its empty folder, for an upload of up to ``upload_bytes`` to arrive
        in; or a ``RefusedError`` if the limits do not allow another song now."""
        with self._lock:
            if self._draining.is_set():
                raise ShuttingDownError(
                    "the server is restarting: send the song again in a minute",
                    self._retry_after_stop_s,
                )
            pending = [*self._waiting, *self._running.values()]
            if len(pending) + len(self._reserved) >= self.limits.max_queue:
                raise QueueFullError(
                    f"the queue is full ({self.limits.max_queue} songs): try again later",
                    self._retry_after_s(),
                )
            mine = sum(job.client == client for job in pending) + sum(
                reservation.client == client for reservation in self._reserved.values()
            )
            if mine >= self.limits.max_per_client:
                raise ClientShareError(
                    f"you already have {mine} songs in the queue, the most one sender may have:"
                    " send this one when one of them is done",
                    self._retry_after_s(),
                )
            job_id = secrets.token_hex(16)
            self._reserved[job_id] = _Reservation(client, upload_bytes)
        try:
            self._make_room()
        except DiskBudgetError:
            with self._lock:
                del self._reserved[job_id]
            raise
        folder = self.jobs_dir / job_id
        folder.mkdir()
        return job_id, folder

    def release(self, job_id: str) -> None:
        """Gives up a reserved folder whose upload failed, with whatever arrived in it."""
        with self._lock:
            self._reserved.pop(job_id, None)
        shutil.rmtree(self.jobs_dir / job_id, ignore_errors=True)

    def submit(self, job_id: str, name: str, song: Path) -> Job:
        """Queues the song stored in a reserved folder, recorded before this returns.

        Audio that cannot be read raises the typed error ``vocalsep separate`` would (see
        ``describe_error`` for its message), a song over the limits a ``RefusedError``; either
        way the folder is released.
        """
        try:
            info = io.probe(song)
            self._check_length(song, info.duration_seconds)
            with self._lock:
                reservation = self._reserved[job_id]
                reservation.bytes = song.stat().st_size + _output_bytes(
                    info.duration_seconds, self.limits
                )
            self._make_room()
            _sync(song)
        except VocalsepError:
            self.release(job_id)
            raise
        job = Job(
            job_id,
            name,
            song.parent,
            song,
            self._clock(),
            info.duration_seconds,
            client=reservation.client,
        )
        with self._lock:
            self._store.add(job)  # under the queue's lock: stored in the queue's order
            del self._reserved[job_id]
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
            return self._waiting.index(job) + len(self._running)

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
            self._forget(expired)
            owned = set(self._jobs) | set(self._reserved)
        for job in expired:
            shutil.rmtree(job.folder, ignore_errors=True)
        for folder in self.jobs_dir.iterdir():
            if JOB_ID.fullmatch(folder.name) and folder.name not in owned:
                with contextlib.suppress(FileNotFoundError):
                    if folder.stat().st_mtime <= cutoff:
                        shutil.rmtree(folder, ignore_errors=True)
        return [job.id for job in expired]

    def disk_bytes(self) -> int:
        """What the work dir holds now: uploads, results and the job database."""
        total = 0
        for root, _, files in os.walk(self.work_dir):
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    total += (Path(root) / name).lstat().st_size
        return total

    def _make_room(self) -> None:
        """Removes finished songs, oldest first, until what is on disk and what the songs in
        the queue and in upload are expected to add fits the budget; else ``DiskBudgetError``."""
        with self._space:
            while True:
                with self._lock:
                    expected = sum(reservation.bytes for reservation in self._reserved.values())
                    expected += sum(
                        _output_bytes(job.seconds_total, self.limits)
                        for job in (*self._waiting, *self._running.values())
                    )
                    ended = [job for job in self._jobs.values() if job.ended is not None]
                needed = self.disk_bytes() + expected
                if needed <= self.limits.disk_budget_bytes:
                    return
                if not ended:
                    raise DiskBudgetError(
                        f"no room for another song: the server's disk budget of "
                        f"{self.limits.disk_budget_bytes / 2**30:g} GB is taken by songs "
                        "waiting or being separated; try again later",
                        self._retry_after_s(),
                    )
                oldest = min(ended, key=lambda job: job.ended or 0.0)
                with self._lock:
                    self._forget([oldest])
                shutil.rmtree(oldest.folder, ignore_errors=True)
                log.info("job %s removed to make room (disk budget)", oldest.id)

    def _check_length(self, song: Path, seconds: float | None) -> None:
        limit = self.limits.max_minutes
        if limit is not None and seconds is not None and seconds > limit * 60:
            raise SongTooLongError(
                f"{song}: too long: {seconds / 60:.1f} minutes, the limit is {limit:g} minutes"
            )

    def _retry_after_s(self) -> int:
        """About when a place in the queue frees: a recent song's separation time."""
        if not self._run_seconds:
            return DEFAULT_RETRY_S
        per_song = statistics.median(self._run_seconds) / self.limits.workers
        return min(max(math.ceil(per_song), 1), 600)

    def _forget(self, jobs: list[Job]) -> None:
        """Drops ended jobs from memory and from the records (the caller holds the lock)."""
        for job in jobs:
            del self._jobs[job.id]
        if jobs and not self._closed:
            self._store.remove([job.id for job in jobs])

    def _save(self, job: Job) -> None:
        """Records a job's new state (the caller holds the lock); none once closed, so a song
        abandoned at a hard stop stays recorded as running, to be separated again."""
        if not self._closed:
            self._store.save(job)

    def _sweep(self) -> None:
        interval = min(max(self.max_age_s / 10, 1.0), 60.0)
        while not self._stopping.wait(interval):
            self.remove_expired()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._stopping.is_set() and (
                    not self._waiting or self._draining.is_set()
                ):
                    self._lock.wait()
                if self._stopping.is_set():
                    return
                job = self._waiting.popleft()
                job.state, job.started, job.seconds_done = RUNNING, self._clock(), 0.0
                self._running[job.id] = job
                self._save(job)
            started = time.monotonic()
            self._run(job)
            with self._lock:
                returned = job.id in self._returned
                self._returned.discard(job.id)
                if not returned:
                    self._running.pop(job.id, None)
                    self._run_seconds.append(time.monotonic() - started)
                self._lock.notify_all()
            if not returned and self._on_end is not None:
                self._on_end(job)

    def _run(self, job: Job) -> None:
        def progress(done: float, total: float | None) -> None:
            if job.id in self._returned:
                raise _ReturnedError
            limit = self.limits.max_minutes
            if total is None and limit is not None and done > limit * 60:
                # The header did not say how long the song is: the limit holds as it decodes.
                raise SongTooLongError(f"{job.song}: too long: over the limit of {limit:g} minutes")
            job.seconds_done, job.seconds_total = done, total

        _clear_results(job)
        try:
            with self._separator() as separator:
                stems = separator.separate_file(job.song, job.folder, progress=progress)
            tracks = {MIX: job.folder / SONG / f"{MIX}.wav", **stems}
            channels = 1 if io.probe(job.song).channels == 1 else 2  # as the stems have
            media.transcode(job.song, tracks[MIX], channels)
            media.draw_spectrograms(tracks, reference=MIX)
        except _ReturnedError:
            return
        except VocalsepError as error:
            self._fail(job, describe_error(error, job.song, job.name))
            return
        except Exception as error:
            # The worker must outlive any one song; the traceback goes to the server's log.
            log.exception("job %s (%s) failed", job.id, job.name)
            self._fail(job, f"{job.name}: internal error ({type(error).__name__}: {error})")
            return
        with self._lock:
            if job.id in self._returned:
                return
            job.tracks = tuple(tracks)
            job.state, job.ended = DONE, self._clock()
            self._save(job)
        job.song.unlink()

    def _fail(self, job: Job, message: str) -> None:
        with self._lock:
            if job.id in self._returned:
                return
            job.error = message
            job.state, job.ended = FAILED, self._clock()
            self._save(job)
        shutil.rmtree(job.folder, ignore_errors=True)


def _clear_results(job: Job) -> None:
    """Removes what an interrupted run of this job left, all but the upload."""
    for entry in job.folder.iterdir():
        if entry != job.song:
            _remove(entry)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _output_bytes(seconds: float | None, limits: Limits) -> int:
    """The disk a song's results are budgeted, by its length (the longest allowed if unknown)."""
    if seconds is None:
        seconds = (limits.max_minutes or 60.0) * 60
    return round(seconds * OUTPUT_BYTES_PER_SECOND)


def _sync(path: Path) -> None:
    """The upload on disk before its job is recorded, so no record names a missing song."""
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def describe_error(error: VocalsepError, song: Path, name: str) -> str:
    """The CLI's one-line message, naming the upload as its sender did, not where it is stored."""
    return str(error).replace(str(song), name).replace(f"{song.parent}{os.sep}", "")
