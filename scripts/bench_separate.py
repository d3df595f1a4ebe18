"""Whole-process cost of ``vocalsep separate`` against Spleeter 2stems, side by side.

Each scenario runs both systems as fresh processes, alternating which goes first, and takes
wall time and peak memory (RSS of the process tree, sampled every 20 ms). Start-up (Python,
imports as ``vocalsep separate`` does them) and model load are timed apart in their own
processes. Inputs are synthetic songs (``vocalsep.audio.synth``), 16-bit stereo WAV at 44.1 kHz,
so neither side pays for a codec.

    bash scripts/setup_reference.sh   # once: Spleeter's weights in .venv-reference
    .venv/bin/python scripts/bench_separate.py --model models/default [--runs 3]
        [--long-minutes 30] [--long-runs 1] [--no-reference] [--baseline-model DIR]
        [--precision auto|float32|bfloat16]

``--baseline-model`` also runs ``vocalsep separate`` with another export in the same
alternation (e.g. the previous graph of the same weights), so both are set against one
reference run.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import psutil
import soundfile

from vocalsep.audio import synth

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The imports as `vocalsep separate` does them.
from bench_startup import AS_SEPARATE

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_PYTHON = REPO_ROOT / ".venv-reference" / "bin" / "python"
REFERENCE_SCRIPT = REPO_ROOT / "scripts" / "spleeter_reference.py"
VOCALSEP = Path(sys.executable).with_name("vocalsep")
SAMPLE_RATE = 44100
SONG_SECONDS = 180.0


def write_song(path: Path, seed: int, seconds: float) -> Path:
    """A synthetic mix, written in 3-minute pieces so a long song never sits in memory."""
    with soundfile.SoundFile(path, "w", SAMPLE_RATE, 2, "PCM_16") as song:
        remaining, piece = seconds, 0
        while remaining > 0:
            stems = synth.generate_track(seed * 1000 + piece, min(remaining, SONG_SECONDS))
            mix = sum(stems.values())
            song.write(np.clip(mix, -1.0, 1.0))
            remaining -= SONG_SECONDS
            piece += 1
    return path


def run_measured(command: Sequence[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, process tree) of a command that must succeed."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                members = [root, *root.children(recursive=True)]
                peak = max(peak, sum(member.memory_info().rss for member in members))
            except psutil.Error:
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode:
        raise RuntimeError(f"{command[0]} failed ({process.returncode}): {stderr.decode()[-2000:]}")
    return wall, peak / 2**20


def startup_seconds(python: str, imports: str, load: str) -> tuple[float, float]:
    """(process start + imports, model load) seconds, measured inside a fresh process."""
    code = (
        "import time; t0 = time.perf_counter()\n"
        f"{imports}\n"
        "t1 = time.perf_counter()\n"
        f"{load}\n"
        "t2 = time.perf_counter(); print(t2 - t1)"
    )
    started = time.perf_counter()
    output = subprocess.run(
        [python, "-c", code], check=True, capture_output=True, text=True, cwd=REPO_ROOT
    ).stdout.split()
    total = time.perf_counter() - started
    load_s = float(output[-1])
    return total - load_s, load_s


def _median(values: list[float]) -> float:
    return statistics.median(values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="exported vocalsep model directory")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--long-minutes", type=float, default=30.0)
    parser.add_argument("--long-runs", type=int, default=1)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--baseline-model", help="another export to run alongside --model")
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="`vocalsep separate --precision` (float32: what a CPU without bfloat16 computes)",
    )
    args = parser.parse_args(argv)
    with_reference = not args.no_reference
    if with_reference and not REFERENCE_PYTHON.exists():
        parser.error("no Spleeter reference: run scripts/setup_reference.sh (or --no-reference)")

    # Songs and outputs take gigabytes for long songs: removed however the run ends.
    with tempfile.TemporaryDirectory(prefix="bench-separate-") as work_name:
        work = Path(work_name)
        songs = [write_song(work / f"song{index}.wav", index, SONG_SECONDS) for index in range(5)]
        scenarios: dict[str, tuple[list[Path], int]] = {
            "one 3-min song": (songs[:1], args.runs),
            "five 3-min songs": (songs, args.runs),
        }
        if args.long_minutes:
            long_song = write_song(work / "long.wav", 99, args.long_minutes * 60)
            scenarios[f"one {args.long_minutes:g}-min song"] = ([long_song], args.long_runs)

        def vocalsep(model: str) -> Callable[[list[Path], Path], list[str]]:
            def command(inputs: list[Path], out: Path) -> list[str]:
                return [str(VOCALSEP), "separate", "--quiet", "--overwrite", "--model", model,
                        "--precision", args.precision, "-o", str(out),
                        *map(str, inputs)]  # fmt: skip

            return command

        def reference(inputs: list[Path], out: Path) -> list[str]:
            return [str(REFERENCE_PYTHON), str(REFERENCE_SCRIPT), "-o", str(out), *map(str, inputs)]

        systems = {"vocalsep": vocalsep(args.model)}
        if args.baseline_model:
            systems["vocalsep baseline"] = vocalsep(args.baseline_model)
        if with_reference:
            systems["Spleeter 2stems"] = reference
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for scenario, (inputs, runs) in scenarios.items():
            for run in range(runs):
                order = list(systems.items())
                if run % 2:
                    order.reverse()
                for name, command in order:
                    try:
                        measured = run_measured(command(inputs, work / "out" / name))
                    except RuntimeError as error:  # e.g. the reference running out of memory
                        print(f"{scenario} / {name} failed: {error}", file=sys.stderr)
                        measured = (math.nan, math.nan)
                    results.setdefault((scenario, name), []).append(measured)
                    print(f"{scenario} / {name} run {run + 1}: {measured[0]:.1f} s, "
                          f"{measured[1]:.0f} MiB", file=sys.stderr, flush=True)  # fmt: skip

    starts = {
        "vocalsep": startup_seconds(
            sys.executable,
            AS_SEPARATE + "from vocalsep.separator import Separator",
            f"Separator({args.model!r})",
        )
    }
    if args.baseline_model:
        starts["vocalsep baseline"] = startup_seconds(
            sys.executable,
            AS_SEPARATE + "from vocalsep.separator import Separator",
            f"Separator({args.baseline_model!r})",
        )
    if with_reference:
        starts["Spleeter 2stems"] = startup_seconds(
            str(REFERENCE_PYTHON),
            "import sys; sys.argv = ['x']; "
            f"sys.path.insert(0, {str(REFERENCE_SCRIPT.parent)!r})\n"
            "import spleeter_reference",
            "spleeter_reference.Estimator().eval()",
        )

    cpu = platform.processor() or platform.machine()
    print(f"\n{datetime.date.today()}, {os.cpu_count()} CPUs ({cpu}), {platform.platform()}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print("\n| scenario | system | runs | wall (median) | vs Spleeter | peak RSS (median) |")
    print("|---|---|---|---|---|---|")
    for scenario, (_, runs) in scenarios.items():
        for name in systems:
            walls = [wall for wall, _ in results[(scenario, name)]]
            peaks = [peak for _, peak in results[(scenario, name)]]
            ratio = ""
            if with_reference:
                reference_wall = _median([w for w, _ in results[(scenario, "Spleeter 2stems")]])
                ratio = f"{reference_wall / _median(walls):.2f}x faster"
            print(f"| {scenario} | {name} | {runs} | {_median(walls):.1f} s | {ratio} "
                  f"| {_median(peaks):.0f} MiB |")  # fmt: skip
    print("\n| system | start-up + imports | model load |\n|---|---|---|")
    for name, (start_s, load_s) in starts.items():
        print(f"| {name} | {start_s:.2f} s | {load_s:.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
