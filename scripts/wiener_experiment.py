"""Does a multichannel Wiener post-filter help our masks? An offline experiment, not shipped.

Takes a Trainer run's best-epoch weights, separates the MUSDB18-7 validation clips whole (one
network call per clip), and scores the ratio-mask stems with and without norbert-style
expectation-maximisation Wiener filtering (per-bin 2x2 spatial covariances estimated from the
current estimates, 1 or 2 iterations; Open-Unmix's post-filter), with museval as the
Evaluator scores. Result on 2026-11-24 in models/README.md.

    .venv/bin/python scripts/wiener_experiment.py --run-dir PIPELINE_ROOT/Trainer/model_run/N \
        --transformed 'PIPELINE_ROOT/Transform/transformed_examples/M/Split-train/*.gz'
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from vocalsep.audio import dsp
from vocalsep.evaluation import metrics
from vocalsep.evaluation.evaluate import EvalTrack
from vocalsep.evaluation.sources import dataset_root, tracks_from_root
from vocalsep.model import trainer
from vocalsep.model.unet import build_unet, separate_spectrogram
from vocalsep.pipeline.config import DEFAULT_MODEL_TRAINER
from vocalsep.transforms import preprocessing

REPO_ROOT = Path(__file__).resolve().parents[1]
EPS = 1e-10


def wiener(stems: tf.Tensor, mixture: tf.Tensor, iterations: int) -> tf.Tensor:
    """EM Wiener filter: ``stems`` ``[batch, frames, bins, 2, sources]``, mixture ``[..., 2]``."""
    scale = tf.cast(tf.maximum(1.0, tf.reduce_max(tf.abs(mixture)) / 10.0), tf.complex64)
    mixture, stems = mixture / scale, stems / scale
    for _ in range(iterations):
        power = tf.reduce_mean(tf.abs(stems) ** 2, axis=3)  # [b, f, k, j]
        covariance = tf.einsum("bfkcj,bfkdj->bkcdj", stems, tf.math.conj(stems))
        weight = tf.cast(EPS + tf.reduce_sum(power, axis=1), tf.complex64)
        spatial = covariance / weight[:, :, tf.newaxis, tf.newaxis, :]
        power = tf.cast(power, tf.complex64)
        mixture_covariance = tf.einsum("bfkj,bkcdj->bfkcd", power, spatial) + tf.cast(
            np.sqrt(EPS), tf.complex64
        ) * tf.eye(2, dtype=tf.complex64)
        a, b = mixture_covariance[..., 0, 0], mixture_covariance[..., 0, 1]
        c, d = mixture_covariance[..., 1, 0], mixture_covariance[..., 1, 1]
        determinant = a * d - b * c
        determinant = tf.where(tf.abs(determinant) < EPS, tf.cast(EPS, tf.complex64), determinant)
        inverse = tf.stack([tf.stack([d, -b], -1), tf.stack([-c, a], -1)], -2)
        inverse = inverse / determinant[..., tf.newaxis, tf.newaxis]
        gains = tf.einsum("bfkj,bkcej,bfked->bfkcdj", power, spatial, inverse)
        stems = tf.einsum("bfkcdj,bfkd->bfkcj", gains, mixture)
    return stems * scale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True, help="the Trainer's model_run folder")
    parser.add_argument("--transformed", required=True, help="glob of transformed train files")
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared/data/musdb18-7"))
    parser.add_argument("--mask-power", type=float, default=1.0)
    args = parser.parse_args(argv)
    config = DEFAULT_MODEL_TRAINER.unet_config()
    model = build_unet(config)
    model.load_weights(str(Path(args.run_dir) / trainer.BEST_DIR / "weights")).expect_partial()
    mean, scale = preprocessing.read_statistics(args.transformed)
    mean, scale = mean[: config.model_bins], scale[: config.model_bins]
    tracks = [t for t in tracks_from_root(dataset_root(args.data)) if isinstance(t, EvalTrack)]
    names = config.stems
    print(
        "| Wiener iterations | vocals SDR | vocals MDX SDR | accompaniment SDR |\n|---|---|---|---|"
    )
    for iterations in (0, 1, 2):
        scores = []
        for track in tracks:
            mixture = dsp.stft(tf.constant(track.mixture[np.newaxis]), config.stft)
            stems = separate_spectrogram(model, mixture, mean, scale, config, args.mask_power)
            stacked = tf.stack([stems[name] for name in names], axis=-1)
            if iterations:
                stacked = wiener(stacked, mixture, iterations)
            estimates = {
                name: dsp.istft(stacked[..., index], config.stft, len(track.mixture)).numpy()[0]
                for index, name in enumerate(names)
            }
            references = {name: track.source(name) for name in names}
            scores.append(metrics.score_track(track.track_id, references, estimates, 44100))
        totals = metrics.aggregate(scores)
        print(
            f"| {iterations} | {totals['vocals']['SDR']:.2f} | {totals['vocals']['MDX_SDR']:.2f} "
            f"| {totals['accompaniment']['SDR']:.2f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
