"""Does the serving graph's chunk length change the separation? Scored on one long input.

The validation clips are 7 s, shorter than any chunk, so ``bench_quality.py`` cannot see the
chunk length. Here the clips are joined into one input (about 100 s), so every export cuts it
into its own chunks, and each clip's stretch of the result is scored as in ``bench_quality.py``
(museval BSSEval v4 medians, MDX SDR). Exports that differ only in ``chunk_seconds`` score
the same if the chunking does not matter.

    .venv/bin/python scripts/chunk_length_experiment.py --models A B ... [--precision float32]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from vocalsep.evaluation import metrics
from vocalsep.evaluation.evaluate import EvalTrack
from vocalsep.evaluation.sources import dataset_root, tracks_from_root
from vocalsep.model import saved

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("vocals", "accompaniment")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True, help="exported model directories")
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared/data/musdb18-7"))
    parser.add_argument("--precision", choices=saved.PRECISIONS, default="float32")
    args = parser.parse_args(argv)
    tracks = [t for t in tracks_from_root(dataset_root(args.data)) if isinstance(t, EvalTrack)]
    joined = np.concatenate([track.mixture for track in tracks])
    bounds = np.cumsum([0] + [len(track.mixture) for track in tracks])
    print(f"{len(tracks)} validation clips joined into {len(joined) / 44100:.1f} s\n")
    print("| export | chunk | vocals SDR | vocals MDX SDR | accompaniment SDR |")
    print("|---|---|---|---|---|")
    for model in args.models:
        with saved.compute_precision(args.precision):
            separator = saved.load_separator(model)
            stems = separator(joined)
        chunk = saved.read_metadata(model)["chunk_length"] / 44100
        scores = [
            metrics.score_track(
                track.track_id,
                {name: track.source(name) for name in SOURCES},
                {name: stems[name][start:end] for name in SOURCES},
                track.sample_rate,
            )
            for track, start, end in zip(tracks, bounds[:-1], bounds[1:], strict=True)
        ]
        totals = metrics.aggregate(scores)
        print(
            f"| {model} | {chunk:.1f} s | {totals['vocals']['SDR']:.2f} "
            f"| {totals['vocals']['MDX_SDR']:.2f} | {totals['accompaniment']['SDR']:.2f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
