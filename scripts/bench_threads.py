"""Thread settings for the two Spleeter networks: both cores on each convolution (TensorFlow's
default) against the two networks side by side, one core each, and the like.

Each setting runs in its own process (TensorFlow fixes its thread pools at start-up), on the
serving graph's network function (``SeparationModule.network_fn``: both stems' networks on one
chunk of the shipped shape, float32, the shipped serving forms). Processes of the different
settings alternate, ``--rounds`` times, so contention from other work on the machine falls on
all of them alike; each process times ``--runs`` calls after a warm-up and reports its median.

    .venv/bin/python scripts/bench_threads.py [--rounds 3] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

SETTINGS = {
    "default (intra-op = inter-op = cores)": {},
    "intra-op 1, inter-op 2 (one network per core)": {
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "2",
    },
    "intra-op 2, inter-op 1 (networks in turn, both cores each)": {
        "TF_NUM_INTRAOP_THREADS": "2",
        "TF_NUM_INTEROP_THREADS": "1",
    },
}

CHILD = """
import statistics, sys, time
import numpy as np
import tensorflow as tf
from vocalsep.audio import dsp
from vocalsep.model import export, unet
from vocalsep.pipeline.config import DEFAULT_MODEL_TRAINER

config = DEFAULT_MODEL_TRAINER.unet_config()
inference = DEFAULT_MODEL_TRAINER.inference
module = export.SeparationModule(
    unet.build_unet(config), np.zeros(config.model_bins), np.ones(config.model_bins), config,
    inference,
)
frames = dsp.num_frames(module.chunk_length, config.stft)
features = tf.random.stateless_uniform([1, frames, config.model_bins, 2], seed=[0, 0])
forward = tf.function(lambda batch: module.network_fn(batch, config.stems))
run = lambda: [mask.numpy() for mask in forward(features).values()]
run()
timings = []
for _ in range(int(sys.argv[1])):
    started = time.perf_counter()
    run()
    timings.append(time.perf_counter() - started)
print(statistics.median(timings))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="processes per setting")
    parser.add_argument("--runs", type=int, default=3, help="timed calls per process")
    args = parser.parse_args()
    results: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, env in SETTINGS.items():
            output = subprocess.run(
                [sys.executable, "-c", CHILD, str(args.runs)],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
            ).stdout
            results[name].append(float(output.split()[-1]))
    baseline = statistics.median(next(iter(results.values())))
    print(f"both networks on one chunk; median over {args.rounds} processes of each's median")
    print("| setting | seconds | vs default | per-process medians |")
    print("|---|---|---|---|")
    for name, values in results.items():
        median = statistics.median(values)
        each = ", ".join(f"{value:.2f}" for value in values)
        print(f"| {name} | {median:.2f} | {median / baseline:.2f}x | {each} |")


if __name__ == "__main__":
    main()
