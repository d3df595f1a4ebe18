"""Where the Spleeter networks' time goes, layer by layer, against this CPU's float32 peak.

One network of the shipped shape (``DEFAULT_MODEL_TRAINER``: 16-512 channels, 1024 bins, 2
audio channels) on one chunk of the shipped chunk length, float32, random weights (speed does
not depend on them). Each stage (a convolution with its bias, a batch norm with its
activation, a concatenation, ...) is its own ``tf.function`` on inputs of its real shape; the
stages and the whole network (as ``spleeter.forward`` runs it, with the transposed
convolutions native and in their sub-pixel form) are timed in interleaved rounds, so
contention from other processes hits all of them alike; medians are reported.

The peak is ``cores x FLOP per cycle per core x clock``; FLOP per cycle defaults to 32 (two
256-bit FMA pipes, 8 float32 lanes, 2 FLOP per FMA: AVX2 Zen 2/3/4 and Intel client cores;
AVX-512 server cores with two 512-bit FMA pipes have 64) and the clock is read from
``/proc/cpuinfo`` unless given. A float32 matmul (``tf.linalg.matmul``, oneDNN/Eigen) measures
what a dense kernel actually reaches here.

    .venv/bin/python scripts/bench_layers.py [--runs 5] [--flops-per-cycle 32] [--ghz G]
        [--precision float32|bfloat16]

``ONEDNN_MAX_CPU_ISA=AVX2`` in the environment makes oneDNN dispatch the kernels it would use
on a CPU without AVX-512 (an AVX2-only CPU's convolutions, on this machine).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf

from vocalsep.audio import dsp
from vocalsep.model import export, saved, spleeter
from vocalsep.pipeline.config import DEFAULT_MODEL_TRAINER

CONFIG = DEFAULT_MODEL_TRAINER.unet_config()
INFERENCE = DEFAULT_MODEL_TRAINER.inference
SONG_SECONDS = 180.0


def cpu_description() -> dict[str, str]:
    """``lscpu``'s model name and the vector flags that matter here."""
    text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    model = re.search(r"Model name:\s*(.+)", text)
    flags = re.search(r"Flags:\s*(.+)", text)
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    present = set(flags.group(1).split()) if flags else set()
    return {
        "model": model.group(1).strip() if model else "unknown",
        "flags": " ".join(flag for flag in wanted if flag in present),
    }


def cpuinfo_ghz() -> float:
    """The first ``cpu MHz`` of ``/proc/cpuinfo`` (a VM reports its nominal clock)."""
    match = re.search(r"cpu MHz\s*:\s*([0-9.]+)", Path("/proc/cpuinfo").read_text())
    return float(match.group(1)) / 1000 if match else float("nan")


def interleaved_medians(
    stages: dict[str, Callable[[], object]], runs: int
) -> dict[str, tuple[float, float]]:
    """Median wall and process-CPU seconds of each stage: one warm-up each, then ``runs``
    rounds over all stages. CPU time is the contention-robust one: other processes on the
    cores lengthen wall time, not this process's CPU time (apart from spinning thread pools).
    """
    for run in stages.values():
        run()
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in stages}
    for _ in range(runs):
        for name, run in stages.items():
            started, cpu = time.perf_counter(), time.process_time()
            run()
            timings[name].append((time.perf_counter() - started, time.process_time() - cpu))
    return {
        name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
        for name, values in timings.items()
    }


def matmul_gflops(size: int, runs: int) -> tuple[float, float]:
    """Achieved GFLOP per wall second and per CPU second of a float32 ``size x size`` matmul,
    medians of ``runs``."""
    left = tf.random.stateless_normal([size, size], seed=[1, 2])
    right = tf.random.stateless_normal([size, size], seed=[3, 4])
    product = tf.function(lambda: tf.linalg.matmul(left, right))
    wall, cpu = interleaved_medians({"matmul": lambda: product().numpy()}, runs)["matmul"]
    return 2 * size**3 / wall / 1e9, 2 * size**3 / cpu / 1e9


def _random(shape: list[int], seed: int) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, seed=[seed, 0], minval=-0.1, maxval=0.1)


def network_weights(seed: int = 0) -> dict[str, tf.Tensor]:
    """One network's weights, random but with batch norm statistics in a sane range."""
    weights = {}
    shapes = spleeter.weight_shapes(CONFIG.encoder_channels, CONFIG.audio_channels)
    for index, (name, shape) in enumerate(shapes.items()):
        value = _random(list(shape), seed + index)
        if name.endswith(("/gamma", "/moving_variance")):
            value = 1.0 + value
        weights[name] = value
    return weights


def stages_of(weights: dict[str, tf.Tensor], frames: int) -> list[dict[str, object]]:
    """Every stage of one network's forward pass: name, kind, FLOPs, and a timed callable."""
    depth, bins = CONFIG.depth, CONFIG.model_bins
    stages: list[dict[str, object]] = []

    def add(name: str, kind: str, flops: float, fn: Callable, *inputs: tf.Tensor) -> None:
        compiled = tf.function(fn)
        stages.append(
            {"name": name, "kind": kind, "flops": flops, "run": lambda: compiled(*inputs).numpy()}
        )

    channels = (CONFIG.audio_channels, *CONFIG.encoder_channels)
    for level in range(1, depth + 1):
        height, width = frames >> level, bins >> level
        inputs = _random([1, 2 * height, 2 * width, channels[level - 1]], level)
        kernel = weights[f"down{level}_conv/kernel"]
        bias = weights[f"down{level}_conv/bias"]
        macs = height * width * spleeter.KERNEL**2 * channels[level - 1] * channels[level]
        add(
            f"enc{level} conv 5x5/2 {channels[level - 1]}->{channels[level]}",
            "first layer (2-channel conv)" if level == 1 else "encoder conv",
            2 * macs,
            lambda x, k=kernel, b=bias: tf.nn.bias_add(tf.nn.conv2d(x, k, 2, "SAME"), b),
            inputs,
        )
        if level < depth:
            convolved = _random([1, height, width, channels[level]], 10 + level)
            for fused in (False, True):
                add(
                    f"enc{level} batch norm + leaky ReLU" + (", fused" if fused else ""),
                    "candidate: fused batch norm" if fused else "batch norm (+ activation)",
                    0.0,
                    lambda x, lv=level, fused=fused: tf.nn.leaky_relu(
                        spleeter._batch_norm(x, weights, f"down{lv}_bn", 1, fused),
                        spleeter.LEAKY_RELU_SLOPE,
                    ),
                    convolved,
                )
    in_channels = CONFIG.encoder_channels[-1]
    decoder_channels = (*CONFIG.encoder_channels[-2::-1], 1)
    for level, out_channels in enumerate(decoder_channels, start=1):
        height, width = frames >> (depth - level + 1), bins >> (depth - level + 1)
        inputs = _random([1, height, width, in_channels], 20 + level)
        kernel = weights[f"up{level}_deconv/kernel"]
        macs = height * width * spleeter.KERNEL**2 * in_channels * out_channels
        shape = tf.constant([1, 2 * height, 2 * width, out_channels])
        add(
            f"dec{level} transposed conv 5x5/2 {in_channels}->{out_channels}",
            "decoder transposed conv",
            2 * macs,
            lambda x, k=kernel, s=shape, lv=level: tf.nn.bias_add(
                tf.nn.conv2d_transpose(x, k, s, 2, "SAME"), weights[f"up{lv}_deconv/bias"]
            ),
            inputs,
        )
        add(
            f"dec{level} same, sub-pixel: 3x3 conv + ReLU + BN + depth-to-space",
            "candidate: sub-pixel form (conv, ReLU, BN, depth-to-space)",
            2 * macs,
            lambda x, lv=level: spleeter._upsampled(x, weights, lv, subpixel=True),
            inputs,
        )
        upsampled = _random([1, 2 * height, 2 * width, out_channels], 30 + level)
        for fused in (False, True):
            add(
                f"dec{level} ReLU + batch norm" + (", fused" if fused else ""),
                "candidate: fused batch norm" if fused else "batch norm (+ activation)",
                0.0,
                lambda x, lv=level, fused=fused: spleeter._batch_norm(
                    tf.nn.relu(x), weights, f"up{lv}_bn", 1, fused
                ),
                upsampled,
            )
        if level < depth:
            skip_channels = CONFIG.encoder_channels[-level - 1]
            skip = _random([1, 2 * height, 2 * width, skip_channels], 40 + level)
            add(
                f"dec{level} concat skip ({skip_channels}) + features ({out_channels})",
                "concatenation",
                0.0,
                lambda a, b: tf.concat([a, b], axis=-1),
                skip,
                upsampled,
            )
            in_channels = skip_channels + out_channels
    last = f"up{depth + 1}_conv"
    inputs = _random([1, frames, bins, 1], 50)
    macs = frames * bins * spleeter.LAST_KERNEL**2 * CONFIG.audio_channels
    add(
        f"last: 4x4 dilated conv 1->{CONFIG.audio_channels} + sigmoid",
        "last layer (1-channel dilated conv)",
        2 * macs,
        lambda x: tf.sigmoid(
            tf.nn.bias_add(
                tf.nn.atrous_conv2d(x, weights[f"{last}/kernel"], spleeter.LAST_DILATION, "SAME"),
                weights[f"{last}/bias"],
            )
        ),
        inputs,
    )
    add(
        "last, as conv2d with dilations (+ sigmoid)",
        "candidate: dilated conv2d",
        2 * macs,
        lambda x: tf.sigmoid(
            tf.nn.bias_add(
                tf.nn.conv2d(
                    x, weights[f"{last}/kernel"], 1, "SAME", dilations=spleeter.LAST_DILATION
                ),
                weights[f"{last}/bias"],
            )
        ),
        inputs,
    )
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="interleaved timed rounds")
    parser.add_argument("--flops-per-cycle", type=float, default=32.0, help="float32, per core")
    parser.add_argument("--ghz", type=float, default=0.0, help="clock (default: /proc/cpuinfo)")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="bfloat16: oneDNN's mixed precision rewrite, as `separate --precision bfloat16`",
    )
    args = parser.parse_args()
    with saved.compute_precision(args.precision):
        measure(args)


def measure(args: argparse.Namespace) -> None:
    """Everything ``main`` prints, under the chosen compute precision."""

    tf.get_logger().setLevel("ERROR")  # each stage is its own function: retracing is intended
    cpu = cpu_description()
    cores = os.cpu_count() or 1
    ghz = args.ghz or cpuinfo_ghz()
    peak = cores * args.flops_per_cycle * ghz
    frames = dsp.num_frames(export.chunk_length(CONFIG, INFERENCE), CONFIG.stft)
    chunks = dsp.num_chunks(
        round(SONG_SECONDS * INFERENCE.sample_rate),
        export.chunk_length(CONFIG, INFERENCE),
        export.overlap_length(CONFIG, INFERENCE),
    )
    networks_per_song = chunks * len(CONFIG.stems)
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "")
    print(
        f"CPU: {cpu['model']} ({cpu['flags']}), {cores} cores, {ghz:.2f} GHz; "
        f"{args.precision}" + (f", ONEDNN_MAX_CPU_ISA={isa}" if isa else "")
    )
    matmul_wall, matmul_cpu = matmul_gflops(args.matmul_size, args.runs)
    print(
        f"float32 peak: {cores} x {args.flops_per_cycle:.0f} FLOP/cycle x {ghz:.2f} GHz = "
        f"{peak:.0f} GFLOP/s ({peak / cores:.0f} per core); matmul {args.matmul_size}^2: "
        f"{matmul_wall:.0f} GFLOP/s of wall time, {matmul_cpu:.0f} GFLOP per CPU second"
    )
    weights = network_weights()
    stages = stages_of(weights, frames)
    features = _random([1, frames, CONFIG.model_bins, CONFIG.audio_channels], 99)
    forms = {
        "native (Spleeter's graph)": {},
        "serving forms (sub-pixel last level, dilated conv2d, fused BN)": (
            spleeter.serving_forms(CONFIG.depth)
        ),
        "the same, every transposed conv sub-pixel": {
            **spleeter.serving_forms(CONFIG.depth),
            "subpixel_levels": range(1, CONFIG.depth + 1),
        },
    }
    timed = {str(stage["name"]): stage["run"] for stage in stages}
    for name, arguments in forms.items():
        whole = tf.function(
            lambda x, arguments=arguments: spleeter.forward(
                weights, x, CONFIG.depth, 0.0, False, **arguments
            )
        )
        timed[f"whole network, {name}"] = lambda whole=whole: whole(features).numpy()
    seconds = interleaved_medians(timed, args.runs)

    total_flops = sum(float(s["flops"]) for s in stages if "candidate" not in str(s["kind"]))
    print(
        f"\none network on one {frames}-frame chunk "
        f"({export.chunk_length(CONFIG, INFERENCE) / INFERENCE.sample_rate:.1f} s): "
        f"{total_flops / 1e9:.1f} GFLOP; a {SONG_SECONDS:.0f} s song runs {networks_per_song} "
        f"(= {chunks} chunks x {len(CONFIG.stems)} networks); medians of {args.runs} "
        "interleaved rounds. GFLOP/s: per wall second, against the peak of all cores; "
        "GFLOP/CPU-s: per CPU second of this process, against one core's peak (what contention "
        "does not change; spinning thread pools make it a lower bound)\n"
    )

    def row(name: str, wall: float, cpu: float, flops: float, share: str = "") -> str:
        rate, per_cpu = flops / wall / 1e9, flops / cpu / 1e9
        cells = (
            f"{flops / 1e9:.2f} | {rate:.0f} | {100 * rate / peak:.0f}% | {per_cpu:.0f} | "
            f"{100 * per_cpu / (peak / cores):.0f}%"
            if flops
            else "- | - | - | - | -"
        )
        return f"| {name} | {wall * 1e3:.1f} | {cpu * 1e3:.1f} | {share}{cells} |"

    columns = "GFLOP | GFLOP/s | % of peak | GFLOP/CPU-s | % of core peak |"
    print(f"| stage | wall ms | CPU ms | {columns}")
    print("|---|---|---|---|---|---|---|---|")
    for stage in stages:
        name = str(stage["name"])
        print(row(name, *seconds[name], float(stage["flops"])))
    kinds: dict[str, list[float]] = {}
    for stage in stages:
        entry = kinds.setdefault(str(stage["kind"]), [0.0, 0.0, 0.0])
        wall, cpu = seconds[str(stage["name"])]
        entry[0] += wall
        entry[1] += cpu
        entry[2] += float(stage["flops"])
    native_sum = [sum(v[i] for k, v in kinds.items() if "candidate" not in k) for i in range(2)]
    print(f"\n| kind | wall ms | CPU ms | share of wall | {columns}")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, (wall, cpu, flops) in kinds.items():
        share = "- | " if "candidate" in kind else f"{100 * wall / native_sum[0]:.0f}% | "
        print(row(kind, wall, cpu, flops, share))
    print(row("sum of the stages (native)", *native_sum, total_flops, "100% | "))
    for name in forms:
        print(
            row(f"whole network, {name}", *seconds[f"whole network, {name}"], total_flops, "- | ")
        )
    native = seconds[f"whole network, {next(iter(forms))}"]
    for name in list(forms)[1:]:
        other = seconds[f"whole network, {name}"]
        print(
            f"\n{name} / native: wall {other[0] / native[0]:.2f}x, "
            f"CPU {other[1] / native[1]:.2f}x; "
            f"networks per {SONG_SECONDS:.0f} s song {networks_per_song * native[0]:.2f} s -> "
            f"{networks_per_song * other[0]:.2f} s wall"
        )


if __name__ == "__main__":
    main()
