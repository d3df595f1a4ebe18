"""Two or more exports' serving signatures side by side in one process, calls interleaved.

For A/B checks of a graph change on a shared machine: each export is loaded as
`vocalsep separate` loads it (in the chosen compute precision), gets one first call (graph
optimisation and oneDNN primitive creation happen there), then ``--runs`` rounds in which every
export separates the same synthetic song in turn; medians of wall and process CPU time.

    .venv/bin/python scripts/bench_exports.py DIR [DIR ...] [--seconds 180] [--runs 5]
        [--precision float32|bfloat16]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from vocalsep.audio import synth
from vocalsep.model import saved


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """Wall and process CPU seconds of one call."""
    started, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("exports", nargs="+")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    args = parser.parse_args()
    song = sum(synth.generate_track(0, args.seconds).values()).astype(np.float32)
    with saved.compute_precision(args.precision):
        separators = {path: saved.load_separator(path) for path in args.exports}
        first = {path: timed(lambda s=separate: s(song)) for path, separate in separators.items()}
        rounds: dict[str, list[tuple[float, float]]] = {path: [] for path in separators}
        for _ in range(args.runs):
            for path, separate in separators.items():
                rounds[path].append(timed(lambda s=separate: s(song)))
    print(f"{args.seconds:.0f} s song, {args.precision}, medians of {args.runs} interleaved rounds")
    print("| export | first call s | wall s | CPU s | wall vs the first export |")
    print("|---|---|---|---|---|")
    baseline = statistics.median(wall for wall, _ in rounds[args.exports[0]])
    for path, values in rounds.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(
            f"| {path} | {first[path][0]:.2f} | {wall:.2f} | {cpu:.2f} | {wall / baseline:.2f}x |"
        )


if __name__ == "__main__":
    main()
