"""What `vocalsep separate` pays before it separates anything: imports and model load.

Each variant runs in fresh processes (interleaved, medians of ``--runs``), timing the whole
process: interpreter start, the imports, and for the last rows loading the model and separating
one second of silence (which includes TensorFlow's one-off graph optimisation).

    .venv/bin/python scripts/bench_startup.py [--model models/default] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# What `vocalsep separate` does before TensorFlow's first import (vocalsep.cli).
AS_SEPARATE = (
    "import sys; from vocalsep import cli\n"
    "for name in cli.UNUSED_BY_SEPARATE: sys.modules.setdefault(name, None)\n"
)
LOAD_AND_CALL = AS_SEPARATE + (
    "from vocalsep.separator import Separator; import numpy as np\n"
    "Separator({model!r}).separate_array(np.zeros((44100, 2), np.float32))"
)
VARIANTS = {
    "python alone": "pass",
    "import tensorflow (Keras 3 loaded, TensorFlow's default)": "import tensorflow",
    "import tensorflow with TF_USE_LEGACY_KERAS=1 (what vocalsep sets)": (
        "import os; os.environ['TF_USE_LEGACY_KERAS'] = '1'; import tensorflow"
    ),
    "import vocalsep.separator (sets TF_USE_LEGACY_KERAS)": "import vocalsep.separator",
    "import vocalsep.separator as `separate` does (Keras, Google API client blocked)": (
        AS_SEPARATE + "import vocalsep.separator"
    ),
    "the same + load the model + separate 1 s": LOAD_AND_CALL,
}


def timed(code: str) -> float:
    environment = {key: value for key, value in os.environ.items() if key != "TF_USE_LEGACY_KERAS"}
    environment["TF_CPP_MIN_LOG_LEVEL"] = "3"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        check=True,
        env=environment,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO_ROOT / "models" / "default"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    codes = {name: code.format(model=args.model) for name, code in VARIANTS.items()}
    seconds: dict[str, list[float]] = {name: [] for name in codes}
    for _ in range(args.runs):
        for name, code in codes.items():
            seconds[name].append(timed(code))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}\n")
    print("| process | median s | min–max s |\n|---|---|---|")
    for name, values in seconds.items():
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f}–{max(values):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
