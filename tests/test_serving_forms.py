"""The serving graph's faster layer forms compute Spleeter's graph: same function, same stems.

``network_form="fast"`` (the shipped model's) runs the last transposed convolution in its
sub-pixel form and the dilated convolution as ``conv2d`` with dilations; ``"native"`` is the
graph as it was. Synthetic checks always run; the shipped model is checked against its own
weights in the native graph on a real MUSDB18-7 validation clip when ``../shared/data`` is there.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from tiny_pretrained import TINY_SPLEETER, random_weights

from vocalsep.evaluation.evaluate import EvalTrack
from vocalsep.evaluation.sources import dataset_root, tracks_from_root
from vocalsep.model import default, export, pretrained, saved, spleeter, unet, warm_start
from vocalsep.pipeline.config import DEFAULT_MODEL_TRAINER

TOLERANCE = 1e-4
TINY_INFERENCE = dataclasses.replace(
    DEFAULT_MODEL_TRAINER.inference, chunk_seconds=1.0, overlap_seconds=0.1
)


@pytest.mark.parametrize(
    ("height", "width", "in_channels", "out_channels"),
    [(1, 1, 2, 3), (4, 6, 3, 5), (5, 7, 8, 1), (3, 2, 16, 4)],
)
def test_subpixel_form_is_the_strided_transposed_convolution(
    height: int, width: int, in_channels: int, out_channels: int
) -> None:
    rng = np.random.default_rng(height * width)
    features = tf.constant(rng.normal(size=(2, height, width, in_channels)), tf.float32)
    kernel = tf.constant(rng.normal(size=(5, 5, out_channels, in_channels)), tf.float32)
    expected = tf.nn.conv2d_transpose(
        features, kernel, [2, 2 * height, 2 * width, out_channels], 2, "SAME"
    ).numpy()
    subpixel = tf.nn.conv2d(features, spleeter.subpixel_kernel(kernel), 1, "SAME")
    actual = tf.nn.depth_to_space(subpixel, 2).numpy()
    assert np.abs(expected).max() > 1.0  # not vacuous
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def _tiny_model(seed: int) -> keras.Model:
    model = unet.build_unet(TINY_SPLEETER)
    weights = {
        stem: random_weights(TINY_SPLEETER, seed + index)
        for index, stem in enumerate(TINY_SPLEETER.stems)
    }
    pretrained.set_network_weights(model, TINY_SPLEETER, weights)
    return model


def _module(
    model: keras.Model, config: unet.UNetConfig, inference: export.InferenceConfig, form: str
) -> export.SeparationModule:
    bins = config.model_bins
    return export.SeparationModule(
        model,
        np.zeros(bins, np.float32),
        np.ones(bins, np.float32),
        config,
        dataclasses.replace(inference, network_form=form),
    )


def test_fast_forms_give_the_native_masks_and_stems_on_synthetic_input() -> None:
    model = _tiny_model(seed=5)
    native = _module(model, TINY_SPLEETER, TINY_INFERENCE, "native")
    fast = _module(model, TINY_SPLEETER, TINY_INFERENCE, "fast")
    rng = np.random.default_rng(0)
    features = tf.constant(
        np.abs(rng.normal(size=(2, 64, TINY_SPLEETER.model_bins, 2))), tf.float32
    )
    for stem in TINY_SPLEETER.stems:
        expected = native.network_fn(features, [stem])[stem].numpy()
        actual = fast.network_fn(features, [stem])[stem].numpy()
        assert expected.std() > 0.01  # masks that vary: the comparison means something
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)
    # Several chunks of noise through the whole serving signature (Wiener round included).
    waveform = tf.constant(rng.uniform(-0.5, 0.5, (5 * 44100, 2)), tf.float32)
    expected_stems = native.serving_default(waveform)
    actual_stems = fast.serving_default(waveform)
    for stem in TINY_SPLEETER.stems:
        np.testing.assert_allclose(
            actual_stems[stem].numpy(), expected_stems[stem].numpy(), rtol=0, atol=TOLERANCE
        )


def test_the_shipped_model_uses_the_fast_forms() -> None:
    metadata = saved.read_metadata(default.default_model_dir())
    assert metadata["inference"]["network_form"] == "fast"


@pytest.mark.shared_data
def test_the_shipped_graph_equals_spleeters_graph_on_real_music(shared_data: Path) -> None:
    """models/default against its own weights in the native graph (the graph shipped before the
    fast forms), on a whole validation clip's own mixture: stems within 1e-4."""
    model_dir = default.default_model_dir()
    config = DEFAULT_MODEL_TRAINER.unet_config()
    model = unet.build_unet(config)
    warm_start.warm_start(model, config, model_dir)
    native = _module(model, config, DEFAULT_MODEL_TRAINER.inference, "native")
    track = next(
        track
        for track in tracks_from_root(dataset_root(str(shared_data / "musdb18-7")))
        if isinstance(track, EvalTrack)
    )
    expected = native.serving_default(tf.constant(track.mixture))
    actual = saved.load_separator(model_dir)(track.mixture)
    for stem in config.stems:
        assert np.abs(expected[stem].numpy()).max() > 0.05  # real music, not silence
        np.testing.assert_allclose(actual[stem], expected[stem].numpy(), rtol=0, atol=TOLERANCE)
