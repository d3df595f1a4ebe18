"""What separating one song costs on this machine, for the default U-Net and cheaper variants.

The project target is a 3-minute song end to end (TF import and model load included) in about
6.7 s, and about 1.9 s of compute per song when several are separated in one call. This script
times, for each variant, the U-Net alone over all chunks of a song and the whole serving graph
(chunking, STFT, U-Net, masks, iSTFT), as medians after a warm-up run, and estimates the U-Net's
GFLOPs per second of audio. ``--cold`` also times a fresh process that imports TensorFlow, loads
an exported variant and separates one song, as the CLI will.

    .venv/bin/python scripts/bench_forward.py [--seconds 180] [--runs 3] [--variants a,b]
        [--cold a,b]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from vocalsep.audio import dsp
from vocalsep.model import export, spleeter, unet
from vocalsep.pipeline.config import DEFAULT_MODEL_TRAINER

SAMPLE_RATE = 44100
DEFAULT = unet.UNetConfig()
HALF_CHANNELS = dataclasses.replace(DEFAULT, encoder_channels=(8, 16, 32, 64, 128, 256))


@dataclasses.dataclass(frozen=True)
class Variant:
    """One point in the design space."""

    description: str
    config: unet.UNetConfig = DEFAULT
    inference: export.InferenceConfig = dataclasses.field(default_factory=export.InferenceConfig)


VARIANTS = {
    "default": Variant("Jansson defaults: 16-512 ch, 2048 bins, f32, 30 s chunks"),
    "batch4": Variant("4 chunks per batch", inference=export.InferenceConfig(chunks_per_batch=4)),
    "chunk10": Variant("10 s chunks", inference=export.InferenceConfig(chunk_seconds=10.0)),
    "xla": Variant("XLA jit_compile per chunk", inference=export.InferenceConfig(jit_compile=True)),
    "bf16": Variant("bfloat16 U-Net", inference=export.InferenceConfig(compute_dtype="bfloat16")),
    "bf16_lean": Variant(
        "bfloat16 U-Net, 0.5 s overlap",
        inference=export.InferenceConfig(compute_dtype="bfloat16", overlap_seconds=0.5),
    ),
    "hop2048": Variant(
        "hop 2048 (half the frames, full band)",
        config=dataclasses.replace(DEFAULT, stft=dsp.StftConfig(n_fft=4096, hop_length=2048)),
    ),
    "bins1024": Variant(
        "1024 model bins (11 kHz cutoff, Spleeter-like)",
        config=dataclasses.replace(DEFAULT, model_bins=1024),
    ),
    "half": Variant("half channels: 8-256", config=HALF_CHANNELS),
    "spleeter": Variant(
        "the shipped shape: two Spleeter networks, exponent 0.5, one Wiener round",
        config=DEFAULT_MODEL_TRAINER.unet_config(),
        inference=DEFAULT_MODEL_TRAINER.inference,
    ),
    "half_bf16": Variant(
        "half channels + bfloat16 U-Net",
        config=HALF_CHANNELS,
        inference=export.InferenceConfig(compute_dtype="bfloat16"),
    ),
}

COLD_RUN = """
import sys, time
started = time.perf_counter()
import numpy as np
import tensorflow as tf
imported = time.perf_counter()
signature = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
loaded = time.perf_counter()
noise = np.random.default_rng(0).uniform(-0.5, 0.5, (int(sys.argv[2]), 2))
waveform = tf.constant(noise, tf.float32)
signature(waveform=waveform)["vocals"].numpy()
first = time.perf_counter()
signature(waveform=waveform)["vocals"].numpy()
second = time.perf_counter()
print(imported - started, loaded - imported, first - loaded, second - first)
"""


def unet_gflops_per_audio_second(config: unet.UNetConfig) -> float:
    """Multiply-adds of every convolution per input frame, times frames per second, times 2.

    A strided convolution does one kernel's work per output position, a transposed one per
    input position; both positions scale in time exactly as in frequency.
    """
    macs_per_frame = sum(
        bins * bins / config.model_bins * np.prod(kernel) for bins, kernel in _convolutions(config)
    )
    return 2 * macs_per_frame * SAMPLE_RATE / config.stft.hop_length / 1e9


def _convolutions(config: unet.UNetConfig) -> list[tuple[int, tuple[int, ...]]]:
    """``(bins of the positions that do a kernel's work, kernel shape)`` of every convolution."""
    if config.architecture == "spleeter":
        depth = len(config.encoder_channels)
        per_network = []
        for name, shape in spleeter.weight_shapes(
            config.encoder_channels, config.audio_channels
        ).items():
            level = int(name.split("_")[0].removeprefix("down").removeprefix("up"))
            if name.startswith("down") and name.endswith("_conv/kernel"):
                per_network.append((config.model_bins >> level, shape))
            elif name.endswith("_deconv/kernel"):
                per_network.append((config.model_bins >> (depth - level + 1), shape))
            elif name.endswith("_conv/kernel"):
                per_network.append((config.model_bins, shape))
        return per_network * len(config.stems)
    convolutions = []
    for layer in unet.build_unet(config).layers:
        if isinstance(layer, keras.layers.Conv2DTranspose):
            convolutions.append((layer.input_shape[2], tuple(layer.kernel.shape)))
        elif isinstance(layer, keras.layers.Conv2D):
            convolutions.append((layer.output_shape[2], tuple(layer.kernel.shape)))
    return convolutions


def _busy_cpu_seconds() -> float:
    """CPU time all processes on the machine have used so far (Linux ``/proc/stat``)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def median_seconds(run: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median wall time after one untimed warm-up (tracing, oneDNN primitive creation).

    Also returns how many CPUs other processes kept busy during the timed runs, at most: the
    machine is shared, and a number well above zero means the timing is inflated.
    """
    run()
    timings, others = [], []
    for _ in range(runs):
        busy, own, started = _busy_cpu_seconds(), time.process_time(), time.perf_counter()
        run()
        wall = time.perf_counter() - started
        other_cpu = _busy_cpu_seconds() - busy - (time.process_time() - own)
        timings.append(wall)
        others.append(max(other_cpu, 0.0) / wall)
    return statistics.median(timings), max(others)


def bench_variant(variant: Variant, waveform: tf.Tensor, runs: int) -> dict[str, float]:
    config, inference = variant.config, variant.inference
    statistic_shape = [config.model_bins]
    module = export.SeparationModule(
        unet.build_unet(config),
        np.zeros(statistic_shape),
        np.ones(statistic_shape),
        config,
        inference,
    )
    groups = -(
        -dsp.num_chunks(waveform.shape[0], module.chunk_length, module.overlap_length)
        // inference.chunks_per_batch
    )
    features = tf.random.stateless_normal(
        [
            inference.chunks_per_batch,
            dsp.num_frames(module.chunk_length, config.stft),
            config.model_bins,
            config.audio_channels,
        ],
        seed=[0, 0],
    )
    forward = tf.function(
        lambda batch: module.network_fn(batch, config.stems), jit_compile=inference.jit_compile
    )

    def all_chunks() -> None:
        for _ in range(groups):
            for mask in forward(features).values():
                mask.numpy()

    unet_seconds, unet_others = median_seconds(all_chunks, runs)
    graph_seconds, graph_others = median_seconds(
        lambda: module.serving_default(waveform)["vocals"].numpy(), runs
    )
    return {
        "params_m": sum(int(np.prod(weight.shape)) for weight in module.network_weights) / 1e6,
        "gflops": unet_gflops_per_audio_second(config),
        "chunk_s": module.chunk_length / SAMPLE_RATE,
        "unet_s": unet_seconds,
        "graph_s": graph_seconds,
        "others": max(unet_others, graph_others),
    }


def bench_cold(variant: Variant, seconds: float) -> list[float]:
    """Import, load, first and second call in a fresh process, as the CLI would run."""
    config = variant.config
    with tempfile.TemporaryDirectory() as scratch:
        export_dir = export.export_saved_model(
            unet.build_unet(config),
            np.zeros(config.model_bins),
            np.ones(config.model_bins),
            config,
            variant.inference,
            Path(scratch) / "model",
        )
        result = subprocess.run(
            [sys.executable, "-c", COLD_RUN, str(export_dir), str(round(seconds * SAMPLE_RATE))],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
    return [float(value) for value in result.stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="song length")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measurement")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    parser.add_argument(
        "--cold", default="", help="comma-separated variants to also time in a fresh process"
    )
    args = parser.parse_args()

    waveform = tf.constant(
        np.random.default_rng(0).uniform(-0.5, 0.5, (round(args.seconds * SAMPLE_RATE), 2)),
        tf.float32,
    )
    print(f"{args.seconds:.0f} s stereo at {SAMPLE_RATE} Hz, {os.cpu_count()} CPUs, ", end="")
    print(f"median of {args.runs} after a warm-up")
    header = (
        f"{'variant':<10} {'params':>7} {'GFLOP/s':>8} {'chunk':>6} {'U-Net':>7} {'graph':>7} "
        f"{'x real':>7} {'others':>6}  description"
    )
    print(header)
    print("-" * len(header))
    for name in args.variants.split(","):
        variant = VARIANTS[name]
        result = bench_variant(variant, waveform, args.runs)
        print(
            f"{name:<10} {result['params_m']:>6.2f}M {result['gflops']:>8.2f} "
            f"{result['chunk_s']:>5.1f}s {result['unet_s']:>6.2f}s {result['graph_s']:>6.2f}s "
            f"{args.seconds / result['graph_s']:>6.0f}x {result['others']:>6.2f}  "
            f"{variant.description}",
            flush=True,
        )
    print("params: U-Net weights; GFLOP/s: U-Net GFLOPs per second of audio (convolutions);")
    print("U-Net: forward over all chunks of the song; graph: the whole serving signature;")
    print(
        "others: CPUs other processes kept busy meanwhile (max); above ~0.2 timings are inflated."
    )
    for name in filter(None, args.cold.split(",")):
        imported, loaded, first, second = bench_cold(VARIANTS[name], args.seconds)
        print(
            f"fresh process, {name} export: import TF {imported:.2f} s, load {loaded:.2f} s, "
            f"first song {first:.2f} s, second song {second:.2f} s; "
            f"one song end to end {imported + loaded + first:.2f} s"
        )


if __name__ == "__main__":
    main()
