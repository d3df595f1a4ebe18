"""Serving contract of the waveform-to-stems SavedModel, on the tiny U-Net.

A random-init model separates nonsense, but everything the serving graph promises regardless of
the weights is checked: shapes for awkward lengths, silence, stems summing to the mixture, no
seams at chunk joins, identical results after reload and no Python dependency on vocalsep.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from vocalsep.audio import dsp
from vocalsep.model import export, saved, unet

TINY = unet.UNetConfig.tiny()
# Short chunks so several joins fit in a fraction of a second of audio.
INFERENCE = export.InferenceConfig(chunk_seconds=0.2, overlap_seconds=0.02)
CHUNK = export.chunk_length(TINY, INFERENCE)
OVERLAP = export.overlap_length(TINY, INFERENCE)
SEVERAL_CHUNKS = 3 * CHUNK + 1234
LENGTHS = (1, 100, CHUNK // 2, CHUNK, SEVERAL_CHUNKS)
MEAN = np.full(TINY.model_bins, 0.5, np.float32)
SCALE = np.full(TINY.model_bins, 2.0, np.float32)
# Constant masks per (channel, stem); the ratio masks across stems are then constant too.
CONSTANT_MASKS = np.array([[0.2, 0.6], [0.7, 0.3]], np.float32)


def _noise(length: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((length, 2)).astype(np.float32)


def _random_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return unet.build_unet(TINY)


def _constant_mask_model() -> keras.Model:
    """A U-Net whose output ignores its input: zero final kernel, sigmoid bias set per mask."""
    model = _random_model()
    final = model.get_layer("mask_deconv")
    kernel, _ = final.get_weights()
    logits = np.log(CONSTANT_MASKS / (1 - CONSTANT_MASKS)).reshape(-1)  # channel-major, as Reshape
    final.set_weights([np.zeros_like(kernel), logits])
    return model


@pytest.fixture(scope="module")
def module() -> export.SeparationModule:
    return export.SeparationModule(_random_model(), MEAN, SCALE, TINY, INFERENCE)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export.export_saved_model(
        _random_model(), MEAN, SCALE, TINY, INFERENCE, tmp_path_factory.mktemp("x") / "model"
    )


def test_chunk_lengths_give_frame_counts_the_unet_accepts() -> None:
    assert dsp.num_frames(CHUNK, TINY.stft) % TINY.frame_multiple == 0
    default = unet.UNetConfig()
    default_chunk = export.chunk_length(default, export.InferenceConfig())
    assert dsp.num_frames(default_chunk, default.stft) % default.frame_multiple == 0
    seconds = export.InferenceConfig().chunk_seconds
    # Within one frame multiple of the requested length.
    assert abs(default_chunk - seconds * 44100) <= default.frame_multiple * default.stft.hop_length
    # The longest such length: one more sample would need another frame.
    assert dsp.num_frames(default_chunk + 1, default.stft) > dsp.num_frames(
        default_chunk, default.stft
    )
    with pytest.raises(ValueError, match="overlap"):
        export.overlap_length(TINY, export.InferenceConfig(chunk_seconds=0.2, overlap_seconds=1))


def test_signature_contract(export_dir: Path) -> None:
    signature = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    _, inputs = signature.structured_input_signature
    assert inputs == {"waveform": tf.TensorSpec([None, 2], tf.float32, name="waveform")}
    assert set(signature.structured_outputs) == {"vocals", "accompaniment"}
    for output in signature.structured_outputs.values():
        assert output.shape.as_list() == [None, 2] and output.dtype == tf.float32


@pytest.mark.parametrize("length", LENGTHS)
def test_stems_have_the_input_shape_and_sum_to_the_mixture(
    module: export.SeparationModule, length: int
) -> None:
    mixture = _noise(length, seed=length)
    stems = module.serving_default(tf.constant(mixture))
    assert set(stems) == {"vocals", "accompaniment"}
    for stem in stems.values():
        assert stem.shape == (length, 2) and stem.dtype == tf.float32
    np.testing.assert_allclose(stems["vocals"] + stems["accompaniment"], mixture, atol=1e-4)


def test_silence_in_gives_silence_out(module: export.SeparationModule) -> None:
    stems = module.serving_default(tf.zeros([SEVERAL_CHUNKS, 2]))
    for stem in stems.values():
        assert np.max(np.abs(stem)) < 1e-7


def test_constant_masks_give_a_constant_gain_with_no_seams_at_chunk_joins() -> None:
    separation = export.SeparationModule(_constant_mask_model(), MEAN, SCALE, TINY, INFERENCE)
    mixture = _noise(SEVERAL_CHUNKS, seed=7)
    stems = separation.serving_default(tf.constant(mixture))
    powered = CONSTANT_MASKS**INFERENCE.mask_power
    gains = powered / powered.sum(axis=-1, keepdims=True)  # [channel, stem]
    stride = CHUNK - OVERLAP
    joins = [
        slice(max(k * stride - 2 * OVERLAP, 0), min(k * stride + OVERLAP, SEVERAL_CHUNKS))
        for k in range(1, dsp.num_chunks(SEVERAL_CHUNKS, CHUNK, OVERLAP))
        if k * stride - 2 * OVERLAP < SEVERAL_CHUNKS
    ]
    assert len(joins) >= 3
    for index, stem in enumerate(TINY.stems):
        error = np.abs(stems[stem].numpy() - mixture * gains[:, index])
        assert error.max() < 1e-4
        for join in joins:
            assert error[join].max() < 1e-4, (stem, join)


@pytest.mark.parametrize(
    "speed_knobs",
    [{"jit_compile": True}, {"compute_dtype": "bfloat16"}, {"chunks_per_batch": 3}],
    ids=lambda knobs: ",".join(f"{key}={value}" for key, value in knobs.items()),
)
def test_speed_knobs_keep_the_contract_and_the_result(
    module: export.SeparationModule, speed_knobs: dict[str, object]
) -> None:
    fast = export.SeparationModule(
        _random_model(), MEAN, SCALE, TINY, dataclasses.replace(INFERENCE, **speed_knobs)
    )
    mixture = _noise(SEVERAL_CHUNKS, seed=11)
    expected = module.serving_default(tf.constant(mixture))
    actual = fast.serving_default(tf.constant(mixture))
    np.testing.assert_allclose(actual["vocals"] + actual["accompaniment"], mixture, atol=1e-4)
    # bfloat16 keeps 8 mantissa bits: the masks, hence the stems, move by a fraction of a percent.
    tolerance = 0.02 if speed_knobs.get("compute_dtype") == "bfloat16" else 1e-4
    for stem in TINY.stems:
        np.testing.assert_allclose(actual[stem], expected[stem], atol=tolerance)


def test_reloaded_model_matches_in_process_outputs(export_dir: Path) -> None:
    model = _random_model()
    in_process = export.SeparationModule(model, MEAN, SCALE, TINY, INFERENCE)
    mixture = _noise(SEVERAL_CHUNKS, seed=3)
    expected = in_process.serving_default(tf.constant(mixture))
    separate = saved.load_separator(export_dir)
    assert separate.stems == TINY.stems
    actual = separate(mixture)
    for stem in TINY.stems:
        np.testing.assert_allclose(actual[stem], expected[stem], atol=1e-6)


def test_metadata_describes_the_export(export_dir: Path) -> None:
    metadata = json.loads((export_dir / "assets.extra" / "vocalsep.json").read_text())
    assert unet.UNetConfig.from_dict(metadata["unet"]) == TINY
    assert export.InferenceConfig(**metadata["inference"]) == INFERENCE
    assert (metadata["chunk_length"], metadata["overlap_length"]) == (CHUNK, OVERLAP)
    assert metadata["outputs"] == list(TINY.stems)


LOAD_WITHOUT_VOCALSEP = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("vocalsep", "tf_keras"):
            raise ImportError(f"{name} must not be needed to serve the model")

sys.meta_path.insert(0, Block())
import numpy as np
import tensorflow as tf

export_dir, mixture_path, output_path = sys.argv[1:]
signature = tf.saved_model.load(export_dir).signatures["serving_default"]
stems = signature(waveform=tf.constant(np.load(mixture_path)))
np.savez(output_path, **{name: value.numpy() for name, value in stems.items()})
"""


def test_saved_model_serves_without_vocalsep_or_keras(export_dir: Path, tmp_path: Path) -> None:
    mixture = _noise(CHUNK + 17, seed=5)
    # A serving process starts clean; tensorflow-transform, imported by other tests, sets
    # TF_USE_LEGACY_KERAS in this process, which would make TensorFlow import tf_keras itself.
    clean_env = {key: value for key, value in os.environ.items() if key != "TF_USE_LEGACY_KERAS"}
    np.save(tmp_path / "mixture.npy", mixture)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_WITHOUT_VOCALSEP,
            str(export_dir),
            str(tmp_path / "mixture.npy"),
            str(tmp_path / "stems.npz"),
        ],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = np.load(tmp_path / "stems.npz")
    expected = saved.load_separator(export_dir)(mixture)
    for stem in TINY.stems:
        np.testing.assert_allclose(served[stem], expected[stem], atol=1e-6)


def test_export_never_leaves_a_partial_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "model"
    (target / "1").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        export.export_saved_model(_random_model(), MEAN, SCALE, TINY, INFERENCE, target)
    (target / "1").rmdir()

    def failing_save(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", failing_save)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_saved_model(_random_model(), MEAN, SCALE, TINY, INFERENCE, target)
    assert [path.name for path in tmp_path.iterdir()] == ["model"]
    assert not any(target.iterdir())


@pytest.mark.parametrize(
    ("mean", "scale"),
    [
        (np.zeros(TINY.model_bins + 1), SCALE),
        (MEAN, np.zeros(TINY.model_bins)),
        (np.full(TINY.model_bins, math.nan), SCALE),
    ],
)
def test_bad_normalisation_statistics_fail_at_export(mean: np.ndarray, scale: np.ndarray) -> None:
    with pytest.raises(ValueError):
        export.SeparationModule(_random_model(), mean, scale, TINY, INFERENCE)
