"""SDR code against museval's reference implementation, on planted signals of known SDR.

References are band-limited noise (below 3 kHz); each estimate is its reference plus noise in a
disjoint band (above 9 kHz), scaled to a planted SDR. The distortion filters cannot map either
reference onto that noise, so BSSEval's SDR in each 1-second window is exactly
``10 log10(Σ s² / Σ e²)`` over the window, and the MDX SDR is the planted value.
"""

from __future__ import annotations

import math
import types

import museval
import numpy as np
import pytest

from vocalsep.evaluation import gate, metrics

RATE = 44100
SECONDS = 4
PLANTED_SDR = {"vocals": 10.0, "accompaniment": 3.0}


def _band_noise(seed: int, low_hz: float, high_hz: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    length = SECONDS * RATE
    spectrum = np.fft.rfft(rng.standard_normal((length, 2)), axis=0)
    frequencies = np.fft.rfftfreq(length, 1 / RATE)
    spectrum[(frequencies < low_hz) | (frequencies > high_hz)] = 0
    return np.fft.irfft(spectrum, n=length, axis=0)


@pytest.fixture(scope="module")
def planted() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    references, errors, estimates = {}, {}, {}
    for index, source in enumerate(metrics.SOURCES):
        references[source] = _band_noise(index, 100, 3000)
        noise = _band_noise(10 + index, 9000, 20000)
        gain = math.sqrt(
            np.sum(references[source] ** 2) / np.sum(noise**2) / 10 ** (PLANTED_SDR[source] / 10)
        )
        errors[source] = gain * noise
        estimates[source] = references[source] + errors[source]
    return references, errors, estimates


def _museval_track_scores(
    references: dict[str, np.ndarray], estimates: dict[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """museval's own path: ``eval_mus_track`` on a MUSDB-like track, aggregated by museval."""
    track = types.SimpleNamespace(
        name="planted",
        rate=RATE,
        subset="test",
        targets={
            source: types.SimpleNamespace(audio=audio) for source, audio in references.items()
        },
    )
    store = museval.eval_mus_track(track, estimates)
    frame = store.df
    return {
        source: {
            metric: float(frame[(frame.target == source) & (frame.metric == metric)].score.median())
            for metric in metrics.BSSEVAL_METRICS
        }
        for source in metrics.SOURCES
    }


def test_bsseval_sdr_is_the_planted_sdr_in_every_window(planted) -> None:
    references, errors, estimates = planted
    frames = metrics.bsseval_frames(references, estimates, RATE)
    for source in metrics.SOURCES:
        known = [
            10
            * math.log10(
                np.sum(references[source][start : start + RATE] ** 2)
                / np.sum(errors[source][start : start + RATE] ** 2)
            )
            for start in range(0, SECONDS * RATE, RATE)
        ]
        np.testing.assert_allclose(frames[source]["SDR"], known, atol=0.01)
    scores = metrics.score_track("planted", references, estimates, RATE)
    for source, planted_sdr in PLANTED_SDR.items():
        assert scores.mdx_sdr[source] == pytest.approx(planted_sdr, abs=0.01)
        assert scores.bsseval[source]["SDR"] == pytest.approx(planted_sdr, abs=0.1)


def test_track_scores_match_museval_eval_mus_track(planted) -> None:
    references, _, estimates = planted
    # A second, harder case: the estimates leak the other source (interference, not noise).
    leaky = {
        "vocals": references["vocals"] + 0.3 * references["accompaniment"],
        "accompaniment": references["accompaniment"] + 0.2 * references["vocals"],
    }
    for case in (estimates, leaky):
        ours = metrics.score_track("planted", references, case, RATE)
        reference = _museval_track_scores(references, case)
        for source in metrics.SOURCES:
            for metric in metrics.BSSEVAL_METRICS:
                assert ours.bsseval[source][metric] == pytest.approx(
                    reference[source][metric], abs=0.01
                ), (source, metric)


def test_silent_windows_are_skipped_and_aggregation_follows_the_conventions() -> None:
    rng = np.random.default_rng(0)
    references = {source: rng.standard_normal((3 * RATE, 2)) for source in metrics.SOURCES}
    references["vocals"][RATE : 2 * RATE] = 0  # a silent window scores NaN in museval
    estimates = {
        source: audio + 0.1 * rng.standard_normal(audio.shape)
        for source, audio in references.items()
    }
    scores = metrics.score_track("gap", references, estimates, RATE)
    frames = metrics.bsseval_frames(references, estimates, RATE)
    assert np.isnan(frames["vocals"]["SDR"][1])
    assert scores.bsseval["vocals"]["SDR"] == pytest.approx(
        np.nanmedian(frames["vocals"]["SDR"]), abs=1e-9
    )

    def track(sdr: float, mdx: float) -> metrics.TrackScores:
        values = {metric: sdr for metric in metrics.BSSEVAL_METRICS}
        return metrics.TrackScores(
            "t", RATE, {s: values for s in metrics.SOURCES}, {s: mdx for s in metrics.SOURCES}, 0.0
        )

    aggregate = metrics.aggregate(
        [track(1.0, 1.0), track(2.0, 2.0), track(10.0, 6.0), track(math.nan, math.nan)]
    )
    assert aggregate["vocals"]["SDR"] == 2.0  # median over tracks, NaN left out
    assert aggregate["vocals"]["MDX_SDR"] == 3.0  # mean over tracks


@pytest.mark.parametrize(
    ("candidate", "baseline", "blessed"),
    [
        (5.0, None, True),  # first model: the floor alone
        (-1.0, None, False),  # first model below the floor
        (5.0, 4.0, True),
        (5.0, 4.8, False),  # better, but by less than min_improvement_db
        (3.0, 6.0, False),  # worse than the served model
        (-0.5, -2.0, False),  # better than the served model, but below the floor
        (math.nan, None, False),
        (5.0, math.nan, True),  # the served model scores nothing: floor alone
    ],
)
def test_blessing_rule(candidate: float, baseline: float | None, blessed: bool) -> None:
    decision = gate.decide(candidate, baseline, floor_db=0.0, min_improvement_db=0.5)
    assert decision.blessed is blessed
    assert decision.reasons


def test_config_round_trips_and_rejects_nonsense() -> None:
    config = gate.EvaluatorConfig(serving_base_dir="/srv", floor_db=2.0, workers=3)
    as_json_numbers = {
        key: float(v) if isinstance(v, int) else v for key, v in config.to_dict().items()
    }
    assert gate.EvaluatorConfig.from_dict(as_json_numbers) == config
    with pytest.raises(ValueError, match="unknown"):
        gate.EvaluatorConfig.from_dict({"flor_db": 1.0})
    with pytest.raises(ValueError, match="workers"):
        gate.EvaluatorConfig(workers=0)
