"""An exported model as its users see it: signature names, metadata, loading for in-process use.

Kept apart from ``export`` (which builds the graph with Keras) so that loading and calling a
model imports TensorFlow alone: `vocalsep separate`, the Evaluator and the TF Serving client
pay neither for Keras nor for the U-Net code, which the SavedModel already holds.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

SIGNATURE_KEY = "serving_default"
WAVEFORM_INPUT = "waveform"
CHUNKING_SIGNATURE_KEY = "chunking"
CHUNKING_OUTPUTS = ("chunk_samples", "overlap_samples", "sample_rate")
METADATA_PATH = Path("assets.extra") / "vocalsep.json"
WARMUP_PATH = Path("assets.extra") / "tf_serving_warmup_requests"
# 2: chunk 0 starts at the first sample and the last chunk ends with the input (format 1 padded
# both with silence), which lets blocks of whole chunks reproduce a whole-song call.
METADATA_FORMAT_VERSION = 2
PRECISIONS = ("auto", "float32", "bfloat16")
ONEDNN_BFLOAT16_OPTION = "auto_mixed_precision_onednn_bfloat16"
NATIVE_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
MODEL_ARTIFACT_SUBDIR = "Format-Serving"
"""Where a TFX Model artifact (a Trainer's output, an imported model) keeps its export."""


def resolve_export_dir(path: str | Path) -> str:
    """``path`` if it holds a SavedModel, else its ``Format-Serving`` export if that does.

    So every command taking a model accepts an export, a Trainer's model artifact folder or
    the folder ``vocalsep pretrained import`` writes. Works on any ``tf.io.gfile`` path.
    """
    path = str(path).rstrip("/")
    nested = f"{path}/{MODEL_ARTIFACT_SUBDIR}"
    if not tf.io.gfile.exists(f"{path}/saved_model.pb") and tf.io.gfile.exists(
        f"{nested}/saved_model.pb"
    ):
        return nested
    return path


def read_metadata(export_dir: str | Path) -> dict[str, Any]:
    """The ``vocalsep.json`` an export was written with."""
    with tf.io.gfile.GFile(f"{str(export_dir).rstrip('/')}/{METADATA_PATH}") as stream:
        return json.loads(stream.read())


class Separator:
    """A loaded export as a numpy ``[samples, channels]`` to ``{stem: [samples, channels]}`` call.

    It calls the serving signature, exactly as TF Serving would, so what is tested through it
    is what is served. The loaded object is kept because a signature alone does not keep the
    SavedModel's variables alive.
    """

    def __init__(self, export_dir: str | Path) -> None:
        self.metadata = read_metadata(export_dir)
        self.stems = tuple(self.metadata["outputs"])
        self.audio_channels = self.metadata["unet"]["audio_channels"]
        self.sample_rate = self.metadata["inference"]["sample_rate"]
        self.chunk_length: int = self.metadata["chunk_length"]
        self.overlap_length: int = self.metadata["overlap_length"]
        self._loaded = tf.saved_model.load(str(export_dir))
        self._signature = self._loaded.signatures[SIGNATURE_KEY]

    def __call__(self, waveform: np.ndarray) -> dict[str, np.ndarray]:
        waveform = np.asarray(waveform, np.float32)
        if waveform.ndim != 2 or waveform.shape[1] != self.audio_channels:
            raise ValueError(
                f"waveform must be shaped [samples, {self.audio_channels}], got {waveform.shape}"
            )
        outputs = self._signature(**{WAVEFORM_INPUT: tf.constant(waveform)})
        return {stem: outputs[stem].numpy() for stem in self.stems}


def load_separator(export_dir: str | Path) -> Separator:
    """Loads an export for in-process use (CLI, Evaluator, tests)."""
    return Separator(export_dir)


def native_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bfloat16 natively (``/proc/cpuinfo`` flags); elsewhere oneDNN
    emulates it, slower than float32, so ``"auto"`` precision stays in float32 there."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = {
        flag
        for line in cpuinfo.splitlines()
        if line.startswith("flags")
        for flag in line.partition(":")[2].split()
    }
    return bool(flags & NATIVE_BFLOAT16_FLAGS)


@contextlib.contextmanager
def compute_precision(precision: str) -> Iterator[str]:
    """Runs the graphs TensorFlow optimises inside the block in ``precision``; yields the one
    chosen (``"auto"``: bfloat16 where the CPU has it natively, else float32).

    bfloat16 is oneDNN's automatic mixed precision: convolutions and matrix products run in
    bfloat16, the rest (STFT, masks) in float32, from the same float32 SavedModel; it moves
    the stems by well under 1% of full scale (BENCHMARKS.md has the SDR). It is a process-wide
    TensorFlow option, set back to what it was when the block ends.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        precision = "bfloat16" if native_bfloat16() else "float32"
    previous = tf.config.optimizer.get_experimental_options().get(ONEDNN_BFLOAT16_OPTION, False)
    tf.config.optimizer.set_experimental_options({ONEDNN_BFLOAT16_OPTION: precision == "bfloat16"})
    try:
        yield precision
    finally:
        tf.config.optimizer.set_experimental_options({ONEDNN_BFLOAT16_OPTION: previous})
