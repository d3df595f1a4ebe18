"""A trained tiny model for tests that need a real Trainer export, in seconds.

Transformed examples are written directly with the Transform's feature names and the shared
DSP core (what the Transform computes, see tests/test_transform.py), so a Trainer run takes
seconds instead of a Beam pipeline; tests/test_trainer.py uses the same helpers.
"""

from __future__ import annotations

import dataclasses
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
SEGMENT = samples_for_frames(FRAMES, STFT)
TRACK_SECONDS = 2.0


def synthetic_track(seed: int) -> dict[str, np.ndarray]:
    """A synthetic song's vocals and accompaniment (the other stems summed)."""
    stems = synth.generate_track(seed, TRACK_SECONDS)
    return {
        "vocals": stems["vocals"],
        "accompaniment": stems["drums"] + stems["bass"] + stems["other"],
    }


def segments(tracks: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Each train segment's per-source complex STFTs, as the Transform computes them."""
    return [
        {
            source: dsp.stft(track[source][start : start + SEGMENT], STFT).numpy()
            for source in SOURCES
        }
        for track in tracks
        for start in range(0, len(track["vocals"]) - SEGMENT + 1, SEGMENT)
    ]


def statistics(segments: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The Transform's per-bin mean and scale of ``log1p(|mixture|)``."""
    log_magnitudes = np.concatenate(
        [
            np.log1p(np.abs(sum(segment.values()))).transpose(0, 2, 1).reshape(-1, STFT.num_bins)
            for segment in segments
        ]
    )
    mean = log_magnitudes.mean(axis=0).astype(np.float32)
    scale = np.maximum(log_magnitudes.std(axis=0), preprocessing.MIN_SCALE).astype(np.float32)
    return mean, scale


def _float_feature(values: np.ndarray) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values.reshape(-1)))


def write_transformed(
    path: Path, segments: list[dict[str, np.ndarray]], mean: np.ndarray, scale: np.ndarray
) -> None:
    """Writes transformed examples with the Transform's feature names (gzip TFRecords)."""
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


def feature_spec() -> dict[str, tf.io.FixedLenFeature]:
    """The transformed feature spec for ``FRAMES``-frame segments at the tiny STFT."""
    stft_spec = tf.io.FixedLenFeature([FRAMES, STFT.num_bins, 2], tf.float32)
    return {
        preprocessing.stft_feature(source, part): stft_spec
        for source in SOURCES
        for part in ("real", "imag")
    }


def train_tiny_model(
    model_uri: Path, inference_config: export.InferenceConfig, *, seed: int, steps: int = 4
) -> Path:
    """Trains the tiny U-Net ``steps`` steps and exports it as a Trainer does.

    The export lands in ``<model_uri>/Format-Serving``, where the TFX Trainer puts it and the
    Pusher looks for it; ``model_uri`` is returned, to be imported as a Model artifact.
    """
    model_uri.mkdir(parents=True)
    data_file = model_uri.parent / f"{model_uri.name}-transformed.gz"
    train_segments = segments([synthetic_track(index) for index in range(10 + seed, 13 + seed)])
    mean, scale = statistics(train_segments)
    write_transformed(data_file, train_segments, mean, scale)
    config = trainer.TrainerConfig.from_dict(
        {
            "model_size": "tiny",
            "steps": steps,
            "steps_per_epoch": steps,
            "batch_size": 4,
            "learning_rate": 3e-3,
            "seed": seed,
            "shuffle_buffer": 16,
            "inference": dataclasses.asdict(inference_config),
        }
    )
    trainer.train(
        config,
        [str(data_file)],
        feature_spec(),
        mean,
        scale,
        model_uri.parent / f"{model_uri.name}-run",
        model_uri / "Format-Serving",
    )
    return model_uri
