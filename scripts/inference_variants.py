"""Which inference settings pay on a model's masks? Scores each variant with museval.

Runs an export's networks once per clip (any vocalsep export with stored weights: the
``vocalsep pretrained import`` output, a Trainer export, ``models/default``), then turns the
same masks into stems under each ``InferenceConfig`` variant (mask exponent, direct vs ratio
masks, Wiener EM iterations, band extension, channel-swap averaging) and scores them as the
Evaluator does (museval BSS Eval v4, 1 s windows, median of frames then of clips; and the MDX
global SDR). Choose settings on ``--split train`` (clips the published weights never saw);
``--split eval`` is the 14 official validation clips the results are reported on.

    .venv/bin/python scripts/inference_variants.py --model runs/imported [--split eval]
        [--variant NAME='{"mask_power": 0.5, "wiener_iterations": 1}' ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Mapping
from concurrent import futures
from pathlib import Path

import numpy as np
import tensorflow as tf

from vocalsep.audio import dsp
from vocalsep.evaluation import metrics
from vocalsep.evaluation.evaluate import EvalTrack
from vocalsep.evaluation.sources import dataset_root, tracks_from_root
from vocalsep.model import unet, warm_start
from vocalsep.model.inference import InferenceConfig, keras_network_fn, stems_from_masks

REPO_ROOT = Path(__file__).resolve().parents[1]
SPLEETER = dataclasses.asdict(InferenceConfig.spleeter())
VARIANTS: dict[str, dict[str, object]] = {
    "Spleeter's (exponent 2, nothing above 11 kHz)": SPLEETER,
    "exponent 2, full band, residual": {"mask_power": 2.0},
    "exponent 1": {"mask_power": 1.0},
    "exponent 1, silent above the network's bins": {"mask_power": 1.0, "band_extension": "zeros"},
    "direct vocal mask (one network)": {"mask_type": "direct"},
    "exponent 1, channel-swap average": {"mask_power": 1.0, "channel_swap_average": True},
    "exponent 1, Wiener 1": {"mask_power": 1.0, "wiener_iterations": 1},
    "exponent 2, Wiener 1": {"mask_power": 2.0, "wiener_iterations": 1},
    "exponent 1, Wiener 2": {"mask_power": 1.0, "wiener_iterations": 2},
    "exponent 0.75, Wiener 1": {"mask_power": 0.75, "wiener_iterations": 1},
    "exponent 0.6, Wiener 1": {"mask_power": 0.6, "wiener_iterations": 1},
    "exponent 0.5, Wiener 1": {"mask_power": 0.5, "wiener_iterations": 1},
    "exponent 0.4, Wiener 1": {"mask_power": 0.4, "wiener_iterations": 1},
    "exponent 0.5, Wiener 2": {"mask_power": 0.5, "wiener_iterations": 2},
}


def clip_masks(
    model_dir: Path, tracks: list[EvalTrack], swapped_too: bool
) -> tuple[unet.UNetConfig, list[dict]]:
    """Each clip's masks from the export's networks; with ``swapped_too`` also those of the
    channel-swapped input (for channel-swap averaging)."""
    config, _ = warm_start.export_config(model_dir)
    if config.standardises_input:
        raise SystemExit(f"{model_dir}: only networks on raw magnitudes (spleeter) are supported")
    network = unet.build_unet(config)
    warm_start.warm_start(network, config, model_dir)
    network_fn = keras_network_fn(network, config)
    clips = []
    for track in tracks:
        mixture = dsp.stft(tf.constant(track.mixture[np.newaxis]), config.stft)
        magnitude = dsp.magnitude(mixture[:, :, : config.model_bins])
        masks = {}
        for swapped in (False, True) if swapped_too else (False,):
            channels = magnitude[..., ::-1] if swapped else magnitude
            stems = network_fn(unet.network_input(channels, 0.0, 1.0, config), config.stems)
            frames = mixture.shape[1]
            masks[swapped] = {
                stem: value[:, :frames, :, ::-1] if swapped else value[:, :frames]
                for stem, value in stems.items()
            }
        clips.append({"track": track, "mixture": mixture, "masks": masks})
    return config, clips


def separate(clip: Mapping, config: unet.UNetConfig, inference: InferenceConfig) -> dict:
    masks = clip["masks"][False]
    if inference.channel_swap_average:
        masks = {stem: (masks[stem] + clip["masks"][True][stem]) / 2 for stem in masks}
    stems = stems_from_masks(masks, clip["mixture"], config, inference)
    mixture = clip["track"].mixture
    estimates = {
        stem: dsp.istft(value, config.stft, len(mixture)).numpy()[0]
        for stem, value in stems.items()
    }
    if inference.residual_last_stem:
        estimates[config.stems[-1]] = mixture - sum(estimates.values())
    return estimates


def score(clips: list[dict], config: unet.UNetConfig, inference: InferenceConfig) -> dict:
    def one(clip: Mapping) -> dict:
        track = clip["track"]
        references = {stem: track.source(stem) for stem in config.stems}
        estimates = separate(clip, config, inference)
        return metrics.score_track(track.track_id, references, estimates, track.sample_rate)

    with futures.ThreadPoolExecutor(2) as pool:
        return metrics.aggregate(list(pool.map(one, clips)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="an export (or its artifact)")
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared/data/musdb18-7"))
    parser.add_argument("--split", choices=("eval", "train"), default="eval")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="InferenceConfig overrides; repeat; default: the built-in list",
    )
    args = parser.parse_args(argv)
    variants = dict(VARIANTS)
    if args.variant:
        variants = {}
        for spec in args.variant:
            name, _, values = spec.partition("=")
            variants[name] = json.loads(values)
    tracks = [
        track
        for track in tracks_from_root(dataset_root(args.data), args.split)
        if isinstance(track, EvalTrack)
    ]
    configs = {name: InferenceConfig.from_dict(values) for name, values in variants.items()}
    swapped_too = any(inference.channel_swap_average for inference in configs.values())
    config, clips = clip_masks(args.model, tracks, swapped_too)
    print(f"{args.model}: {len(clips)} {args.split} clips; museval median SDR (MDX SDR), dB\n")
    print("| inference | vocals | accompaniment |\n|---|---|---|")
    for name, inference in configs.items():
        started = time.monotonic()
        totals = score(clips, config, inference)
        print(
            f"| {name} | {totals['vocals']['SDR']:.2f} ({totals['vocals']['MDX_SDR']:.2f}) "
            f"| {totals['accompaniment']['SDR']:.2f} ({totals['accompaniment']['MDX_SDR']:.2f}) |"
            f"  <!-- {time.monotonic() - started:.0f} s -->",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
