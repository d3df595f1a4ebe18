"""A trained tiny model for tests that need a real Trainer export, in seconds.

As in tests/test_trainer.py, transformed examples are written directly with the Transform's
feature names and the shared DSP core (no Beam pipeline), then ``trainer.train`` runs a few
steps of the tiny U-Net and exports the serving SavedModel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from vocalsep.audio import dsp, synth
from vocalsep.data.config import samples_for_frames
from vocalsep.data.examples import SOURCES
from vocalsep.model import export, trainer
from vocalsep.model.unet import UNetConfig
from vocalsep.transforms import preprocessing

STFT = UNetConfig.tiny().stft
FRAMES = 64
TRACK_SECONDS = 2.0


def _segments(seeds: range) -> list[dict[str, np.ndarray]]:
    """Each train segment's per-source complex STFTs, as the Transform computes them."""
    segment = samples_for_frames(FRAMES, STFT)
    segments = []
    for seed in seeds:
        stems = synth.generate_track(seed, TRACK_SECONDS)
        track = {"vocals": stems["vocals"], "accompaniment": stems["drums"] + stems["bass"]}
        track["accompaniment"] = track["accompaniment"] + stems["other"]
        for start in range(0, len(track["vocals"]) - segment + 1, segment):
            segments.append(
                {
                    source: dsp.stft(track[source][start : start + segment], STFT).numpy()
                    for source in SOURCES
                }
            )
    return segments


def _float_feature(values: np.ndarray) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values.reshape(-1)))


def _write_transformed(path: Path, seeds: range) -> tuple[np.ndarray, np.ndarray]:
    """Writes the examples; returns the Transform's per-bin mean and scale of log1p(|mix|)."""
    segments = _segments(seeds)
    log_magnitudes = np.concatenate(
        [
            np.log1p(np.abs(sum(segment.values()))).transpose(0, 2, 1).reshape(-1, STFT.num_bins)
            for segment in segments
        ]
    )
    mean = log_magnitudes.mean(axis=0).astype(np.float32)
    scale = np.maximum(log_magnitudes.std(axis=0), preprocessing.MIN_SCALE).astype(np.float32)
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for segment in segments:
            feature = {
                preprocessing.MEAN_FEATURE: _float_feature(mean),
                preprocessing.SCALE_FEATURE: _float_feature(scale),
            }
            for source, spectrogram in segment.items():
                for part, values in (("real", spectrogram.real), ("imag", spectrogram.imag)):
                    feature[preprocessing.stft_feature(source, part)] = _float_feature(values)
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
    return mean, scale


def train_tiny_model(
    model_uri: Path, inference_config: export.InferenceConfig, *, seed: int, steps: int = 4
) -> Path:
    """Trains the tiny U-Net ``steps`` steps and exports it as a Trainer does.

    The export lands in ``<model_uri>/Format-Serving``, where the TFX Trainer puts it and the
    Pusher looks for it; ``model_uri`` is returned, to be imported as a Model artifact.
    """
    model_uri.mkdir(parents=True)
    data_file = model_uri.parent / f"{model_uri.name}-transformed.gz"
    mean, scale = _write_transformed(data_file, range(10 + seed, 13 + seed))
    stft_spec = tf.io.FixedLenFeature([FRAMES, STFT.num_bins, 2], tf.float32)
    feature_spec = {
        preprocessing.stft_feature(source, part): stft_spec
        for source in SOURCES
        for part in ("real", "imag")
    }
    config = trainer.TrainerConfig.from_dict(
        {
            "model_size": "tiny",
            "steps": steps,
            "steps_per_epoch": steps,
            "batch_size": 4,
            "learning_rate": 3e-3,
            "seed": seed,
            "shuffle_buffer": 16,
        }
    )
    trainer.train(
        config,
        [str(data_file)],
        feature_spec,
        mean,
        scale,
        model_uri.parent / f"{model_uri.name}-run",
        model_uri / "Format-Serving",
        inference_config=inference_config,
    )
    return model_uri
