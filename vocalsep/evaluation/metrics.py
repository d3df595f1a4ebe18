"""museval BSSEval v4 and the MDX global SDR for vocals and accompaniment.

Conventions, the ones published MUSDB scores use: the two sources are scored jointly by
``museval.evaluate`` (the ``eval_mus_track`` vocals/accompaniment scenario), with 1-second
windows and hops; a track's score is the median over its frames (NaN frames, i.e. silent
windows, skipped, as ``museval.TrackStore`` does), and a model's score is the median over
tracks. The MDX global SDR ``10 log10((Σs² + ε) / (Σ(s - ŝ)² + ε))`` is computed per track and
source over all samples and channels, and averaged over tracks.

This module imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import museval
import numpy as np

SOURCES = ("vocals", "accompaniment")
BSSEVAL_METRICS = ("SDR", "SIR", "SAR", "ISR")
WINDOW_SECONDS = 1.0
# The MDX challenges' (and Demucs') epsilon in the global SDR.
MDX_EPSILON = 1e-7


@dataclasses.dataclass(frozen=True)
class TrackScores:
    """One track's scores: ``bsseval[source][metric]`` (frame medians) and ``mdx_sdr[source]``."""

    track_id: str
    num_samples: int
    bsseval: dict[str, dict[str, float]]
    mdx_sdr: dict[str, float]
    museval_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN stays NaN; Python's json writes it as ``NaN``)."""
        return dataclasses.asdict(self)


def mdx_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """MDX global SDR in dB over all samples and channels (float64 sums)."""
    reference = np.asarray(reference, np.float64)
    error = reference - np.asarray(estimate, np.float64)
    signal_energy = float(np.sum(np.square(reference)))
    error_energy = float(np.sum(np.square(error)))
    return 10.0 * math.log10((signal_energy + MDX_EPSILON) / (error_energy + MDX_EPSILON))


def bsseval_frames(
    references: Mapping[str, np.ndarray], estimates: Mapping[str, np.ndarray], sample_rate: int
) -> dict[str, dict[str, np.ndarray]]:
    """Per-frame BSSEval v4 values ``[source][metric] -> [frames]``, sources scored jointly.

    ``museval.evaluate`` pads or truncates the estimates to the references' length.
    """
    window = int(WINDOW_SECONDS * sample_rate)
    sdr, isr, sir, sar = museval.evaluate(
        np.stack([np.asarray(references[source], np.float64) for source in SOURCES]),
        np.stack([np.asarray(estimates[source], np.float64) for source in SOURCES]),
        win=window,
        hop=window,
        mode="v4",
    )
    values = {"SDR": sdr, "ISR": isr, "SIR": sir, "SAR": sar}
    return {
        source: {metric: np.asarray(values[metric][index]) for metric in BSSEVAL_METRICS}
        for index, source in enumerate(SOURCES)
    }


def _nanmedian(values: Sequence[float] | np.ndarray) -> float:
    """Median ignoring NaN; NaN (not a warning) when nothing is left."""
    finite = np.asarray(values, np.float64)
    finite = finite[~np.isnan(finite)]
    return float(np.median(finite)) if finite.size else math.nan


def score_track(
    track_id: str,
    references: Mapping[str, np.ndarray],
    estimates: Mapping[str, np.ndarray],
    sample_rate: int,
) -> TrackScores:
    """All scores of one separated track; museval's run time is measured for the cost report."""
    started = time.perf_counter()
    frames = bsseval_frames(references, estimates, sample_rate)
    museval_seconds = time.perf_counter() - started
    return TrackScores(
        track_id=track_id,
        num_samples=len(references[SOURCES[0]]),
        bsseval={
            source: {metric: _nanmedian(frames[source][metric]) for metric in BSSEVAL_METRICS}
            for source in SOURCES
        },
        mdx_sdr={source: mdx_sdr(references[source], estimates[source]) for source in SOURCES},
        museval_seconds=museval_seconds,
    )


def aggregate(tracks: Sequence[TrackScores]) -> dict[str, dict[str, float]]:
    """Model scores: ``[source]`` -> BSSEval metrics (median over tracks) and ``MDX_SDR`` (mean).

    NaN track values (a track with only silent windows) are left out of the median and mean.
    """
    result: dict[str, dict[str, float]] = {}
    for source in SOURCES:
        scores = {
            metric: _nanmedian([track.bsseval[source][metric] for track in tracks])
            for metric in BSSEVAL_METRICS
        }
        mdx = np.asarray([track.mdx_sdr[source] for track in tracks], np.float64)
        mdx = mdx[~np.isnan(mdx)]
        scores["MDX_SDR"] = float(np.mean(mdx)) if mdx.size else math.nan
        result[source] = scores
    return result
