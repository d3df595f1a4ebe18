"""An exported model as its users see it: signature names, metadata, loading for in-process use.

Kept apart from ``export`` (which builds the graph with Keras) so that loading and calling a
model imports TensorFlow alone: `vocalsep separate`, the Evaluator and the TF Serving client
pay neither for Keras nor for the U-Net code, which the SavedModel already holds.
"""

from __future__ import annotations

import json
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


def read_metadata(export_dir: str | Path) -> dict[str, Any]:
    """The ``vocalsep.json`` an export was written with."""
    return json.loads((Path(export_dir) / METADATA_PATH).read_text())


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
