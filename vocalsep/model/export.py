"""Waveform-to-stems SavedModel: the whole separation, chunking included, as one TF graph.

TF Serving, the CLI and the Evaluator load the same artifact and need no vocalsep code: the
``serving_default`` signature takes a stereo waveform of any length and returns one waveform
per stem. What the model was built with is stored beside it as ``assets.extra/vocalsep.json``
(TF Serving ignores ``assets.extra``, so it is the conventional place for such metadata).

Two more things are for TF Serving, which exposes only signatures: the ``chunking`` signature
tells a remote client the model's chunk grid (a client that cuts a song into requests must cut
on that grid to reproduce the whole-song result), and ``assets.extra/tf_serving_warmup_requests``
holds requests the server runs before it routes traffic to a new version, so the first user
request does not pay for graph initialisation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from vocalsep.audio import dsp
from vocalsep.model import spleeter
from vocalsep.model.inference import (
    InferenceConfig,
    NetworkFn,
    keras_network_fn,
    separate_spectrogram,
)
from vocalsep.model.saved import (
    CHUNKING_OUTPUTS,
    CHUNKING_SIGNATURE_KEY,
    METADATA_FORMAT_VERSION,
    METADATA_PATH,
    SIGNATURE_KEY,
    WARMUP_PATH,
    WAVEFORM_INPUT,
)
from vocalsep.model.unet import UNetConfig, build_unet

WARMUP_SHORT_SAMPLES = 4096
DTYPE_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def chunk_length(config: UNetConfig, inference_config: InferenceConfig) -> int:
    """Samples per chunk: the longest length whose frame count is a multiple of ``2**depth``.

    The chosen frame count is the multiple nearest to ``chunk_seconds``; taking the longest
    length with that frame count wastes none of the network's frames on padding.
    """
    stft = config.stft
    frames_per_window = stft.n_fft // stft.hop_length
    target_frames = dsp.num_frames(
        round(inference_config.chunk_seconds * inference_config.sample_rate), stft
    )
    multiples = max(
        round(target_frames / config.frame_multiple),
        math.ceil(frames_per_window / config.frame_multiple),
    )
    frames = multiples * config.frame_multiple
    length = (frames - frames_per_window + 1) * stft.hop_length
    assert dsp.num_frames(length, stft) == frames
    return length


def overlap_length(config: UNetConfig, inference_config: InferenceConfig) -> int:
    """Crossfade samples between chunks, validated against the chunk length."""
    overlap = round(inference_config.overlap_seconds * inference_config.sample_rate)
    length = chunk_length(config, inference_config)
    if 2 * overlap >= length:
        raise ValueError(
            f"overlap of {overlap} samples must be less than half the chunk length {length}; "
            "raise chunk_seconds or lower overlap_seconds"
        )
    return overlap


def metadata(
    config: UNetConfig, inference_config: InferenceConfig, weight_names: list[str]
) -> dict[str, Any]:
    """What consumers need to know about an export, stored as its ``vocalsep.json``.

    ``weights`` names the network's weights in the order of the export's ``network_weights``,
    which is how a Trainer warm-starting from the export finds them (``model.warm_start``).
    """
    return {
        "format_version": METADATA_FORMAT_VERSION,
        "signature": SIGNATURE_KEY,
        "input": WAVEFORM_INPUT,
        "outputs": list(config.stems),
        "unet": config.to_dict(),
        "inference": dataclasses.asdict(inference_config),
        "chunk_length": chunk_length(config, inference_config),
        "overlap_length": overlap_length(config, inference_config),
        "weights": weight_names,
    }


def _statistic(values: Any, name: str, config: UNetConfig) -> tf.Tensor:
    """Checks a normalisation statistic now: a bad one would only show as garbage audio."""
    array = np.asarray(values, np.float32)
    allowed = {(config.model_bins,), (config.model_bins, config.audio_channels)}
    if array.shape not in allowed:
        raise ValueError(f"{name} must be shaped one of {sorted(allowed)}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite")
    if name == "scale" and not np.all(array > 0):
        raise ValueError("scale must be positive")
    return tf.constant(array, name=name)


class _Untracked:
    """Hides a value from tf.Module, which only tracks attributes that are trackable."""

    def __init__(self, value: Any) -> None:
        self.value = value


class SeparationModule(tf.Module):
    """The exported object: the network's weights, normalisation statistics and signatures."""

    def __init__(
        self,
        model: keras.Model,
        mean: Any,
        scale: Any,
        config: UNetConfig,
        inference_config: InferenceConfig,
    ) -> None:
        super().__init__(name="vocalsep_separator")
        # Only the network's weights join the SavedModel's object graph. Tracking the Keras
        # model itself would also save a restored function per layer, which nothing calls and
        # which loading has to rebuild: most of a `vocalsep separate` model load.
        if config.architecture == "spleeter":
            weight_names, self.network_weights, network_fn = _stored_spleeter(
                model, config, inference_config
            )
        else:
            if inference_config.storage_dtype != "float32":
                raise ValueError("float16 weight storage is for the spleeter architecture")
            network = _inference_model(model, config, inference_config.compute_dtype)
            weight_names = [weight.name for weight in network.weights]
            self.network_weights = list(network.weights)
            network_fn = keras_network_fn(network, config)
        self._weight_names = _Untracked(weight_names)
        self._network_fn = _Untracked(network_fn)
        self.mean = _statistic(mean, "mean", config)
        self.scale = _statistic(scale, "scale", config)
        self.config = config
        self.inference_config = inference_config
        self.chunk_length = chunk_length(config, inference_config)
        self.overlap_length = overlap_length(config, inference_config)
        self._chunk_fn = (
            tf.function(self._separate_chunks, jit_compile=True)
            if inference_config.jit_compile
            else self._separate_chunks
        )
        waveform_spec = tf.TensorSpec([None, config.audio_channels], tf.float32, WAVEFORM_INPUT)
        self.serving_default = tf.function(self._separate, input_signature=[waveform_spec])
        self.chunking = tf.function(self._chunking, input_signature=[waveform_spec])

    @property
    def network_fn(self) -> NetworkFn:
        """The networks exactly as the serving graph calls them (benchmarks time them alone)."""
        return self._network_fn.value

    def _separate_chunks(self, chunks: tf.Tensor) -> dict[str, tf.Tensor]:
        """Mixture chunks ``[batch, samples, channels]`` to chunks of the masked stems."""
        stems = separate_spectrogram(
            self.network_fn,
            dsp.stft(chunks, self.config.stft),
            self.mean,
            self.scale,
            self.config,
            self.inference_config,
        )
        return {
            stem: dsp.istft(spectrogram, self.config.stft, tf.shape(chunks)[1])
            for stem, spectrogram in stems.items()
        }

    def _chunking(self, waveform: tf.Tensor) -> dict[str, tf.Tensor]:
        """The chunk grid as int64 scalars; ``waveform`` is ignored (a signature needs an input)."""
        del waveform
        values = (self.chunk_length, self.overlap_length, self.inference_config.sample_rate)
        return {
            name: tf.constant(value, tf.int64)
            for name, value in zip(CHUNKING_OUTPUTS, values, strict=True)
        }

    def _separate(self, waveform: tf.Tensor) -> dict[str, tf.Tensor]:
        """Stems shaped like ``waveform`` ``[samples, channels]``, for any number of samples.

        With a residual last stem, it is the mixture minus the others, once per song (the STFT
        and the crossfade invert exactly): one inverse STFT and one crossfade fewer per chunk,
        and stems that sum to the input.
        """
        waveforms = dsp.chunked_map(
            waveform,
            self._chunk_fn,
            self.chunk_length,
            self.overlap_length,
            self.inference_config.chunks_per_batch,
        )
        if self.inference_config.residual_last_stem:
            waveforms[self.config.stems[-1]] = waveform - tf.add_n(list(waveforms.values()))
        return waveforms


def _stored_spleeter(
    model: keras.Model, config: UNetConfig, inference_config: InferenceConfig
) -> tuple[list[str], list[tf.Variable], NetworkFn]:
    """Each stem network's weights as variables in the storage dtype, and the function that
    runs the networks on them (cast to the compute dtype), for the stems asked for."""
    names, variables, by_stem = [], [], {}
    for stem in config.stems:
        layer = model.get_layer(f"{stem}_unet")
        by_stem[stem] = {}
        for name, weight in layer.named_weights.items():
            stored = tf.Variable(
                tf.cast(weight, inference_config.storage_dtype), trainable=False, name=name
            )
            names.append(f"{stem}_unet/{name}")
            variables.append(stored)
            by_stem[stem][name] = stored
    compute_dtype = inference_config.compute_dtype
    forms = spleeter.serving_forms(config.depth) if inference_config.network_form == "fast" else {}

    def network_fn(features: tf.Tensor, stems: Any) -> dict[str, tf.Tensor]:
        features = tf.cast(features, compute_dtype)
        return {
            stem: spleeter.forward(
                {name: tf.cast(value, compute_dtype) for name, value in by_stem[stem].items()},
                features,
                config.depth,
                **forms,
            )
            for stem in stems
        }

    return names, variables, network_fn


def _inference_model(model: keras.Model, config: UNetConfig, compute_dtype: str) -> keras.Model:
    """The trained model, or a copy of it computing in another dtype (same float32 weights)."""
    policy = DTYPE_POLICIES[compute_dtype]
    if policy == model.get_layer("mask_deconv").dtype_policy.name:
        return model
    copy = build_unet(config, policy)
    copy.set_weights(model.get_weights())
    return copy


def export_saved_model(
    model: keras.Model,
    mean: Any,
    scale: Any,
    config: UNetConfig,
    inference_config: InferenceConfig,
    export_dir: str | Path,
) -> Path:
    """Writes the SavedModel next to ``export_dir`` and renames it into place.

    Readers (TF Serving polls its model directory) therefore see either no model or a complete
    one. ``export_dir`` may exist only as an empty directory; a non-empty one is never
    overwritten.
    """
    export_dir = Path(export_dir)
    if export_dir.exists() and (not export_dir.is_dir() or any(export_dir.iterdir())):
        raise FileExistsError(f"{export_dir} exists and is not an empty directory")
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    module = SeparationModule(model, mean, scale, config, inference_config)
    staging_dir = Path(tempfile.mkdtemp(prefix=f".{export_dir.name}.", dir=export_dir.parent))
    try:
        tf.saved_model.save(
            module,
            str(staging_dir),
            signatures={
                SIGNATURE_KEY: module.serving_default,
                CHUNKING_SIGNATURE_KEY: module.chunking,
            },
        )
        metadata_file = staging_dir / METADATA_PATH
        metadata_file.parent.mkdir()
        metadata_file.write_text(
            json.dumps(metadata(config, inference_config, module._weight_names.value), indent=2)
        )
        write_warmup_requests(
            staging_dir / WARMUP_PATH,
            (WARMUP_SHORT_SAMPLES, module.chunk_length),
            config.audio_channels,
        )
        if export_dir.exists():
            export_dir.rmdir()
        staging_dir.chmod(0o755)  # mkdtemp makes it private; servers may run as another user
        staging_dir.rename(export_dir)
    except BaseException:
        shutil.rmtree(staging_dir, ignore_errors=True)
        raise
    return export_dir


def write_warmup_requests(path: Path, lengths: tuple[int, ...], channels: int) -> None:
    """TF Serving's warm-up file: one silent ``serving_default`` request per length.

    A short request and a whole chunk exercise both the padded and the full-chunk paths, so
    every op the graph uses is initialised before the version takes traffic.
    """
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(str(path)) as writer:
        for length in lengths:
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = SIGNATURE_KEY
            request.inputs[WAVEFORM_INPUT].CopyFrom(
                tf.make_tensor_proto(np.zeros((length, channels), np.float32))
            )
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
