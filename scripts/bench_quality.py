"""Separation quality on the MUSDB18-7 validation clips, every system scored in one run.

Systems: vocalsep exports (through their serving signatures, as users get them; ``--model``
may be repeated, e.g. the unmodified Spleeter import with Spleeter's inference and with ours
beside the shipped model), Spleeter 2stems
(``scripts/spleeter_reference.py`` in ``.venv-reference``), the mixture used as both estimates
(the floor) and the oracle power ratio mask at n_fft 4096 / hop 1024 (the ceiling of masking).
All are scored by ``vocalsep.evaluation.metrics`` (museval BSSEval v4, 1 s windows, median over
frames then over tracks; MDX SDR mean over tracks) on the same decoded references.

    .venv/bin/python scripts/bench_quality.py [--model [LABEL=]DIR ...]
        [--data ../shared/data/musdb18-7] [--no-reference] [--precision float32 bfloat16]

Each model separates each track's own mixture where the dataset has one (MUSDB's stream 0),
as ``vocalsep evaluate`` does. With several models, the largest difference of each one's stems
from the first model's (same precision) is printed too: two graphs of the same weights should
agree to float32 rounding.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile
import tensorflow as tf

from vocalsep.audio import dsp, io
from vocalsep.evaluation import metrics
from vocalsep.evaluation.evaluate import EvalTrack
from vocalsep.evaluation.sources import dataset_root, tracks_from_root
from vocalsep.model import saved

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_PYTHON = REPO_ROOT / ".venv-reference" / "bin" / "python"
REFERENCE_SCRIPT = REPO_ROOT / "scripts" / "spleeter_reference.py"
SOURCES = ("vocals", "accompaniment")
METRICS = ("SDR", "SIR", "SAR", "MDX_SDR")

Estimator = Callable[[EvalTrack], dict[str, np.ndarray]]


def oracle(track: EvalTrack) -> dict[str, np.ndarray]:
    """Power ratio masks computed from the true sources: what masking could reach at best."""
    config = dsp.StftConfig()
    spectra = {name: dsp.stft(tf.constant(track.source(name)), config) for name in SOURCES}
    mixture = dsp.stft(tf.constant(track.mixture), config)
    magnitudes = tf.stack([dsp.magnitude(spectra[name]) for name in SOURCES], axis=-1)
    masks = dsp.ratio_masks(magnitudes, 2.0)
    return {
        name: dsp.istft(
            dsp.apply_mask(mixture, masks[..., index]), config, len(track.mixture)
        ).numpy()
        for index, name in enumerate(SOURCES)
    }


def spleeter(tracks: list[EvalTrack], work: Path) -> dict[str, dict[str, np.ndarray]]:
    """Runs the reference once over every mixture (16-bit WAV in, 16-bit WAV out)."""
    inputs = []
    for index, track in enumerate(tracks):
        path = work / f"track{index:02d}.wav"
        soundfile.write(path, track.mixture, track.sample_rate, "PCM_16")
        inputs.append(str(path))
    subprocess.run(
        [str(REFERENCE_PYTHON), str(REFERENCE_SCRIPT), "-o", str(work / "spleeter"), *inputs],
        check=True,
        capture_output=True,
    )
    return {
        track.track_id: {
            name: _fit(
                io.read_audio(work / "spleeter" / f"track{index:02d}" / f"{name}.wav"),
                len(track.mixture),
            )
            for name in SOURCES
        }
        for index, track in enumerate(tracks)
    }


def _fit(stem: np.ndarray, length: int) -> np.ndarray:
    """Spleeter's iSTFT drops the last partial hop: pad its stems back with silence."""
    return np.pad(stem[:length], [(0, length - min(len(stem), length)), (0, 0)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        action="append",
        metavar="[LABEL=]DIR",
        help="an export to score (repeat for several); default: models/default",
    )
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared/data/musdb18-7"))
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument(
        "--precision",
        nargs="+",
        choices=saved.PRECISIONS,
        default=["float32", "bfloat16"],
        help="score the model in each of these compute precisions (as `separate --precision`)",
    )
    args = parser.parse_args(argv)
    tracks = [t for t in tracks_from_root(dataset_root(args.data)) if isinstance(t, EvalTrack)]
    systems: dict[str, Estimator] = {
        "mixture as both estimates (floor)": lambda track: {n: track.mixture for n in SOURCES},
    }
    first: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for model in args.model or [str(REPO_ROOT / "models" / "default")]:
        label, _, directory = model.rpartition("=")
        for precision in args.precision:
            # The precision applies when TensorFlow first optimises a graph: one load each.
            with saved.compute_precision(precision) as chosen:
                separator = saved.load_separator(saved.resolve_export_dir(directory))
                estimates = {track.track_id: separator(track.mixture) for track in tracks}
            name = f"{label or 'vocalsep'} ({directory}, {chosen})"
            systems[name] = lambda track, estimates=estimates: estimates[track.track_id]
            if chosen in first:
                largest = max(
                    float(np.max(np.abs(stems[n] - first[chosen][track_id][n])))
                    for track_id, stems in estimates.items()
                    for n in SOURCES
                )
                print(f"{name}: stems differ from the first model's by at most {largest:.2e}")
            else:
                first[chosen] = estimates
    systems["oracle power ratio mask (ceiling)"] = oracle
    if not args.no_reference:
        with tempfile.TemporaryDirectory() as work:
            reference = spleeter(tracks, Path(work))
        systems["Spleeter 2stems"] = lambda track: reference[track.track_id]
    print(f"{len(tracks)} validation tracks from {args.data}\n")
    header = ["system"] + [f"{source} {metric}" for source in SOURCES for metric in METRICS]
    print("| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    for name, estimate in systems.items():
        scores = [
            metrics.score_track(
                track.track_id,
                {n: track.source(n) for n in SOURCES},
                estimate(track),
                track.sample_rate,
            )
            for track in tracks
        ]
        totals = metrics.aggregate(scores)
        cells = [f"{totals[source][metric]:.2f}" for source in SOURCES for metric in METRICS]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
