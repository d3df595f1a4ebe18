"""Separate whole eval tracks with one or more models and score them, museval in parallel.

Separation runs in this process through each model's serving signature (what users get);
scoring runs in ``workers`` threads, so museval on track k overlaps the separation of track
k + 1 and several tracks are scored at once. Threads, not processes: museval's heavy parts (FFTs,
the 2048x2048 solve, convolutions) release the GIL, and measured on 2 cores (BENCHMARKS.md,
"Evaluator cost") 8 tracks took 9.1 s serially, 8.9 s in 2 threads and 13.3 s in 2 spawned
processes (start-up, pickling). Processes would also re-run any caller's unguarded
``__main__`` (spawn), or copy TensorFlow's threads in an undefined state (fork).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from vocalsep.evaluation import metrics
from vocalsep.evaluation.metrics import SOURCES, TrackScores

SeparateFn = Callable[[np.ndarray], Mapping[str, np.ndarray]]
MIXTURE_CONVENTION = (
    "the dataset's own mixture where a track has one (MUSDB stream 0, a mixture file), "
    "else the sum of the sources"
)
CANDIDATE = "candidate"
BASELINE = "baseline"


@dataclasses.dataclass(frozen=True)
class EvalTrack:
    """A whole eval track: float32 ``[samples, channels]`` sources and the mixture to separate.

    ``dataset_mixture`` is the dataset's own mixture where it has one (MUSDB's stream 0, a
    ``mixture.wav``), which is what users separate and what museval's ``eval_mus_track`` and
    the MDX challenge score; without one, the mixture is the sum of the sources.
    """

    track_id: str
    vocals: np.ndarray
    accompaniment: np.ndarray
    sample_rate: int
    dataset_mixture: np.ndarray | None = None

    @property
    def mixture(self) -> np.ndarray:
        """What is separated: the dataset's own mixture, else the sum of the sources."""
        if self.dataset_mixture is not None:
            return self.dataset_mixture
        return self.vocals + self.accompaniment

    def source(self, name: str) -> np.ndarray:
        return {"vocals": self.vocals, "accompaniment": self.accompaniment}[name]


@dataclasses.dataclass(frozen=True)
class SkippedTrack:
    """A track that could not be read; counted and listed, never fatal."""

    track_id: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Excerpt:
    """A few seconds of one track for the report: mixture, true and estimated stems."""

    track_id: str
    sample_rate: int
    start_seconds: float
    mixture: np.ndarray
    references: dict[str, np.ndarray]
    estimates: dict[str, dict[str, np.ndarray]]
    """``estimates[model][source]``."""


@dataclasses.dataclass
class ModelResult:
    """One model's per-track scores and aggregate, and where its time went."""

    name: str
    path: str
    tracks: list[TrackScores]
    separation_seconds: float

    @property
    def aggregate(self) -> dict[str, dict[str, float]]:
        return metrics.aggregate(self.tracks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "aggregate": self.aggregate,
            "tracks": [track.to_dict() for track in self.tracks],
            "separation_seconds": self.separation_seconds,
        }


@dataclasses.dataclass
class EvaluationResult:
    """Everything one evaluation found: per model scores, skipped tracks, excerpts, cost."""

    models: dict[str, ModelResult]
    skipped: list[SkippedTrack]
    excerpts: list[Excerpt]
    workers: int
    wall_seconds: float
    sample_rate: int

    @property
    def museval_seconds(self) -> list[float]:
        """museval's time for each (model, track) scoring, in worker threads."""
        return [track.museval_seconds for model in self.models.values() for track in model.tracks]

    def cost(self) -> dict[str, Any]:
        """museval's measured cost, reported beside the scores."""
        seconds = self.museval_seconds
        audio_seconds = [
            track.num_samples / self.sample_rate
            for model in self.models.values()
            for track in model.tracks
        ]
        return {
            "workers": self.workers,
            "wall_seconds": self.wall_seconds,
            "museval_scorings": len(seconds),
            "museval_seconds_total": float(sum(seconds)),
            "museval_seconds_per_track_median": statistics.median(seconds) if seconds else None,
            "museval_seconds_per_audio_second": (
                float(sum(seconds) / sum(audio_seconds)) if audio_seconds else None
            ),
            "separation_seconds": {
                name: model.separation_seconds for name, model in self.models.items()
            },
        }

    def to_dict(self) -> dict[str, Any]:
        """The metrics JSON (excerpt audio is not part of it)."""
        return {
            "conventions": {
                "bsseval": "museval v4, win = hop = 1 s, vocals and accompaniment evaluated "
                "jointly; median over frames, then median over tracks",
                "mdx_sdr": "10 log10((sum s^2 + 1e-7) / (sum (s - s_hat)^2 + 1e-7)) per track "
                "and source, mean over tracks",
                "mixture": MIXTURE_CONVENTION,
            },
            "num_tracks": len(next(iter(self.models.values())).tracks) if self.models else 0,
            "skipped": [dataclasses.asdict(skip) for skip in self.skipped],
            "models": {name: model.to_dict() for name, model in self.models.items()},
            "cost": self.cost(),
        }


def _json_safe(value: Any) -> Any:
    """NaN (a metric with nothing to score) as null, so the JSON is strict."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def json_text(values: Mapping[str, Any]) -> str:
    """Strict JSON (NaN written as null) of an evaluation's dict, indented for people."""
    return json.dumps(_json_safe(dict(values)), indent=2, allow_nan=False)


def loudest_window(vocals: np.ndarray, window: int) -> int:
    """Start of the ``window``-sample stretch with the most vocal energy (steps of window / 20).

    Report excerpts start there, so the demo plays singing rather than an intro.
    """
    if len(vocals) <= window:
        return 0
    energy = np.concatenate([[0.0], np.cumsum(np.sum(np.square(vocals, dtype=np.float64), axis=1))])
    step = max(window // 20, 1)
    starts = np.arange(0, len(vocals) - window + 1, step)
    return int(starts[np.argmax(energy[starts + window] - energy[starts])])


def evaluate(
    models: Mapping[str, tuple[str, SeparateFn]],
    tracks: Iterable[EvalTrack | SkippedTrack],
    workers: int = 2,
    report_tracks: int = 3,
    excerpt_seconds: float = 10.0,
) -> EvaluationResult:
    """Scores each model (``name -> (path, separate)``) on the same tracks.

    At most ``2 * workers`` tracks wait for scoring at once, which bounds memory on full songs.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    started = time.perf_counter()
    results = {name: ModelResult(name, path, [], 0.0) for name, (path, _) in models.items()}
    skipped: list[SkippedTrack] = []
    excerpts: list[Excerpt] = []
    pending: list[tuple[str, concurrent.futures.Future[TrackScores]]] = []
    sample_rate = 44100
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="museval") as pool:
        for track in tracks:
            if isinstance(track, SkippedTrack):
                skipped.append(track)
                continue
            sample_rate = track.sample_rate
            mixture = track.mixture
            references = {source: track.source(source) for source in SOURCES}
            estimates: dict[str, dict[str, np.ndarray]] = {}
            for name, (_, separate) in models.items():
                separation_started = time.perf_counter()
                outputs = separate(mixture)
                results[name].separation_seconds += time.perf_counter() - separation_started
                estimates[name] = {source: np.asarray(outputs[source]) for source in SOURCES}
                pending.append(
                    (
                        name,
                        pool.submit(
                            metrics.score_track,
                            track.track_id,
                            references,
                            estimates[name],
                            track.sample_rate,
                        ),
                    )
                )
            if len(excerpts) < report_tracks:
                excerpts.append(_excerpt(track, estimates, excerpt_seconds))
            while len(pending) > 2 * workers * max(len(models), 1):
                name, future = pending.pop(0)
                results[name].tracks.append(future.result())
        for name, future in pending:
            results[name].tracks.append(future.result())
    return EvaluationResult(
        models=results,
        skipped=skipped,
        excerpts=excerpts,
        workers=workers,
        wall_seconds=time.perf_counter() - started,
        sample_rate=sample_rate,
    )


def _excerpt(
    track: EvalTrack, estimates: Mapping[str, Mapping[str, np.ndarray]], seconds: float
) -> Excerpt:
    window = max(1, math.floor(seconds * track.sample_rate))
    start = loudest_window(track.vocals, window)
    cut = slice(start, start + window)
    return Excerpt(
        track_id=track.track_id,
        sample_rate=track.sample_rate,
        start_seconds=start / track.sample_rate,
        mixture=track.mixture[cut],
        references={source: track.source(source)[cut] for source in SOURCES},
        estimates={
            name: {source: stems[source][cut] for source in SOURCES}
            for name, stems in estimates.items()
        },
    )
