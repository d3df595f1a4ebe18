"""U-Net contract for both architectures: shapes, mask range, configs, inputs and the loss.

All but the parameter counts use tiny variants, so the file stays fast on two shared cores.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from vocalsep.audio import dsp
from vocalsep.model import unet

TINY = unet.UNetConfig.tiny()
TINY_SPLEETER = dataclasses.replace(
    unet.UNetConfig.spleeter(),
    stft=TINY.stft,
    encoder_channels=TINY.encoder_channels,
    model_bins=TINY.model_bins,
    patch_frames=TINY.patch_frames,
)
# Spleeter's per-stem U-Net has about 9.8 M parameters; ours predicts both stems at once.
DEFAULT_PARAMETERS = 9_829_124
# Spleeter 2stems: two such networks (the unused last encoder batch norm left out).
SPLEETER_PARAMETERS = 2 * 9_824_711


@pytest.fixture(scope="module")
def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return unet.build_unet(TINY)


@pytest.mark.parametrize("frames", [TINY.patch_frames, 3 * TINY.frame_multiple])
def test_masks_have_the_documented_shape_and_range(tiny_model: keras.Model, frames: int) -> None:
    features = tf.random.stateless_normal(
        [2, frames, TINY.model_bins, TINY.audio_channels], seed=[1, 2]
    )
    masks = tiny_model(features, training=False).numpy()
    assert masks.shape == (2, frames, TINY.model_bins, TINY.audio_channels, len(TINY.stems))
    assert np.all(masks > 0) and np.all(masks < 1)


def test_default_config_parameter_count() -> None:
    model = unet.build_unet(unet.UNetConfig())
    assert model.count_params() == DEFAULT_PARAMETERS
    assert model.output_shape == (None, None, 2048, 2, 2)


def test_spleeter_is_one_network_per_stem_with_spleeters_size() -> None:
    model = unet.build_unet(unet.UNetConfig.spleeter())
    assert model.count_params() == SPLEETER_PARAMETERS
    assert model.output_shape == (None, None, 1024, 2, 2)
    assert [layer.name for layer in model.layers if "unet" in layer.name] == [
        "vocals_unet",
        "accompaniment_unet",
    ]


@pytest.mark.parametrize("frames", [TINY.patch_frames, 3 * TINY.frame_multiple])
def test_spleeter_masks_have_the_documented_shape_and_range(frames: int) -> None:
    keras.utils.set_random_seed(0)
    model = unet.build_unet(TINY_SPLEETER)
    magnitude = tf.abs(
        tf.random.stateless_normal([2, frames, TINY.model_bins, TINY.audio_channels], seed=[1, 2])
    )
    masks = model(magnitude, training=False).numpy()
    assert masks.shape == (2, frames, TINY.model_bins, TINY.audio_channels, 2)
    assert np.all(masks > 0) and np.all(masks < 1)
    # Each stem has its own network: the two masks differ.
    assert np.abs(masks[..., 0] - masks[..., 1]).max() > 1e-3
    # Dropout acts in training only; batch norm keeps its moving statistics in both modes.
    np.testing.assert_array_equal(masks, model(magnitude, training=False).numpy())
    assert not np.allclose(masks, model(magnitude, training=True).numpy())
    statistics = [w for w in model.non_trainable_weights if "moving" in w.name]
    assert len(statistics) == 2 * 2 * (2 * len(TINY.encoder_channels) - 1)


def test_spleeter_takes_raw_magnitudes() -> None:
    magnitude = np.abs(np.random.default_rng(0).standard_normal((1, 5, 257, 2))).astype(np.float32)
    mean, scale = np.full(256, 3.0), np.full(256, 7.0)
    np.testing.assert_array_equal(
        unet.normalise(magnitude, mean, scale, TINY_SPLEETER), magnitude[..., :256, :]
    )
    with pytest.raises(ValueError, match="raw magnitudes"):
        dataclasses.replace(TINY_SPLEETER, input_compression="log1p")


def test_config_round_trips_through_json() -> None:
    for config in (unet.UNetConfig(), TINY, unet.UNetConfig.spleeter(), TINY_SPLEETER):
        assert unet.UNetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    # Exports written before architectures had names are Jansson networks.
    values = unet.UNetConfig().to_dict()
    del values["architecture"]
    assert unet.UNetConfig.from_dict(values).architecture == "jansson"


@pytest.mark.parametrize(
    "overrides",
    [
        {"model_bins": 2000},
        {"model_bins": 4096},
        {"patch_frames": 100},
        {"input_compression": "sqrt"},
        {"stems": ("vocals",)},
        {"dropout_rate": 1.0},
        {"architecture": "demucs"},
    ],
)
def test_config_rejects_inconsistent_values(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        unet.UNetConfig(**overrides)


def test_normalise_compresses_then_standardises_per_bin() -> None:
    magnitude = np.abs(np.random.default_rng(0).standard_normal((3, 5, 257, 2))).astype(np.float32)
    mean = np.linspace(0, 1, TINY.model_bins, dtype=np.float32)
    scale = np.linspace(1, 2, TINY.model_bins, dtype=np.float32)
    expected = (np.log1p(magnitude[..., :256, :]) - mean[:, None]) / scale[:, None]
    np.testing.assert_allclose(unet.normalise(magnitude, mean, scale, TINY), expected, atol=1e-6)
    per_channel = np.stack([mean, mean + 1], axis=-1)
    np.testing.assert_allclose(
        unet.normalise(magnitude, per_channel, np.ones_like(per_channel), TINY),
        np.log1p(magnitude[..., :256, :]) - per_channel,
        atol=1e-6,
    )
    uncompressed = dataclasses.replace(TINY, input_compression="none")
    np.testing.assert_allclose(
        unet.normalise(magnitude, 0 * mean, 1 + 0 * scale, uncompressed), magnitude[..., :256, :]
    )


def test_masked_l1_loss_is_zero_for_oracle_masks_and_positive_otherwise() -> None:
    rng = np.random.default_rng(0)
    sources = np.abs(rng.standard_normal((2, 8, 257, 2, 2))).astype(np.float32) + 0.1
    mixture = sources.sum(axis=-1)
    oracle = sources[..., :256, :, :] / mixture[..., :256, :, np.newaxis]
    assert float(unet.masked_l1_loss(oracle, mixture, sources)) < 1e-6
    assert float(unet.masked_l1_loss(0.5 + 0 * oracle, mixture, sources)) > 0.01


def test_tiny_model_overfits_one_batch() -> None:
    keras.utils.set_random_seed(1)
    model = unet.build_unet(TINY)
    rng = np.random.default_rng(1)
    shape = (2, TINY.patch_frames, TINY.model_bins, TINY.audio_channels)
    mixture = np.abs(rng.standard_normal(shape)).astype(np.float32)
    # Loud bins are "vocals": a split the network can learn from its input alone.
    loud = (mixture > 1).astype(np.float32)
    sources = np.stack([mixture * loud, mixture * (1 - loud)], axis=-1)
    features = unet.normalise(mixture, np.zeros(256), np.ones(256), TINY)
    optimizer = keras.optimizers.Adam(3e-2)

    @tf.function
    def train_step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = unet.masked_l1_loss(model(features, training=True), mixture, sources)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    losses = [float(train_step()) for _ in range(30)]
    assert np.mean(losses[-5:]) < 0.7 * losses[0], losses


def test_stft_config_travels_with_the_model_config() -> None:
    assert unet.UNetConfig().stft == dsp.StftConfig(n_fft=4096, hop_length=1024)
    assert unet.UNetConfig().stft.num_bins - unet.UNetConfig().model_bins == 1
    assert TINY.stft.num_bins - TINY.model_bins == 1
