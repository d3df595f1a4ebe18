"""The one STFT/iSTFT, mask and chunked overlap-add implementation in vocalsep.

tf.Transform, the Keras trainer, the evaluator and the exported serving graph all call these
functions, so training and serving cannot drift apart. Everything is plain TensorFlow: it runs
eagerly, inside ``tf.function`` with unknown lengths (``tf.TensorSpec([None, 2], tf.float32)``)
and in a SavedModel, without numpy at run time or Python loops over data-dependent sizes.

Layout convention (leading batch dimensions are optional everywhere):

- waveforms are float32 ``[..., samples, channels]``, like decoded audio files;
- spectrograms are complex64 ``[..., frames, bins, channels]``, channels last so that
  magnitudes are NHWC images for ``Conv2D``;
- per-source values (ratio masks) add a trailing ``sources`` axis.

Padding: the STFT pads ``n_fft - hop_length`` zeros on the left and enough on the right that
every sample lies under all ``n_fft / hop_length`` overlapping frames, so ``istft`` inverts
``stft`` exactly for any length, including lengths shorter than one frame. Zero padding (not
reflection) keeps the transform linear: the STFT of a sum of sources is the sum of their STFTs.
The FFT is unnormalised (``tf.signal``'s convention); scaling belongs to the model's input
pipeline.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
import tensorflow as tf

WINDOWS = ("hann", "sqrt_hann", "hamming")

Length = TypeVar("Length", int, tf.Tensor)
NestedTensors = tf.Tensor | Mapping[str, Any]
ChunkFn = Callable[[tf.Tensor], NestedTensors]


@dataclasses.dataclass(frozen=True)
class StftConfig:
    """STFT parameters, validated up front so a bad config fails at construction, not in a graph.

    Windows are periodic (the DFT-even form that overlap-adds cleanly). ``sqrt_hann`` makes the
    analysis and synthesis windows identical up to scale.
    """

    n_fft: int = 4096
    hop_length: int = 1024
    window: str = "hann"

    def __post_init__(self) -> None:
        for name in ("n_fft", "hop_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, got {self.window!r}")
        if self.n_fft % self.hop_length:
            raise ValueError(
                f"hop_length {self.hop_length} must divide n_fft {self.n_fft} so every sample "
                "lies under the same number of frames"
            )
        # With a single frame per sample the Hann windows vanish at the frame edges and those
        # samples are lost; at least two overlapping frames keep the summed squared window of
        # every supported window away from zero, which is what exact inversion needs.
        if self.n_fft // self.hop_length < 2:
            raise ValueError(
                f"hop_length {self.hop_length} must be at most n_fft / 2 = {self.n_fft // 2} "
                "for perfect reconstruction"
            )

    @property
    def num_bins(self) -> int:
        """Non-negative frequency bins of the real FFT."""
        return self.n_fft // 2 + 1


def _analysis_window(config: StftConfig) -> Callable[[int, tf.DType], tf.Tensor]:
    """The forward window as the ``window_fn`` that ``tf.signal`` expects."""

    def window_fn(frame_length: int, dtype: tf.DType = tf.float32) -> tf.Tensor:
        if config.window == "hamming":
            return tf.signal.hamming_window(frame_length, periodic=True, dtype=dtype)
        hann = tf.signal.hann_window(frame_length, periodic=True, dtype=dtype)
        return tf.sqrt(hann) if config.window == "sqrt_hann" else hann

    return window_fn


def _covering_frame_count(length: Length, frame_length: int, frame_step: int) -> Length:
    """Frames needed so that, after ``_framing_padding``, no sample sits in a frame's tail.

    The first sample is shifted to ``frame_length - frame_step``, the start of the last step
    of frame 0; enough frames follow that the last sample also lies within the first
    ``frame_step`` samples of the last frame. For the STFT this puts every sample under all
    ``n_fft / hop`` frames; for chunking it keeps every sample out of both crossfade ramps of
    the chunks at the ends. Works on Python ints and integer tensors alike.
    """
    return (length + frame_length - 1) // frame_step


def _framing_padding(
    length: Length, frame_count: Length, frame_length: int, frame_step: int
) -> tuple[int, Length]:
    """Zeros to add before and after ``length`` samples to cut exactly ``frame_count`` frames."""
    return frame_length - frame_step, frame_count * frame_step - length


def num_frames(length: Length, config: StftConfig) -> Length:
    """Frames ``stft`` makes from ``length`` samples; an int gives an int, a tensor a tensor."""
    return _covering_frame_count(length, config.n_fft, config.hop_length)


def padded_length(length: Length, config: StftConfig) -> Length:
    """Samples ``stft`` transforms after zero padding; ``istft`` crops back from this."""
    left, right = _framing_padding(
        length, num_frames(length, config), config.n_fft, config.hop_length
    )
    return left + length + right


def num_chunks(length: Length, chunk_length: int, overlap: int) -> Length:
    """Chunks ``chunked_map`` cuts from ``length`` samples, before filling up the last batch.

    With ``stride = chunk_length - overlap``, chunk ``k`` starts at input sample ``k * stride``,
    so chunks ``k - 1`` and ``k`` crossfade over the input samples ``[k * stride,
    k * stride + overlap)``; ``n * stride + overlap`` samples make exactly ``n`` chunks.
    """
    _validate_chunking(chunk_length, overlap, chunks_per_batch=1)
    stride = chunk_length - overlap
    if isinstance(length, int):
        return max(-(-(length - overlap) // stride), 1)
    return tf.maximum(-(-(length - overlap) // stride), 1)


def _move_axis(tensor: tf.Tensor, source: int, destination: int) -> tf.Tensor:
    """Reorders axes between the channels-last layout and ``tf.signal``'s time-last layout."""
    rank = tensor.shape.rank
    axes = list(range(rank))
    axes.insert(destination % rank, axes.pop(source % rank))
    return tf.transpose(tensor, axes)


def _require_rank(tensor: tf.Tensor, minimum: int, name: str, layout: str) -> None:
    """The layout decides which axis is time, so it must be known while building the graph."""
    if tensor.shape.rank is None or tensor.shape.rank < minimum:
        raise ValueError(f"{name} must be shaped {layout}, got shape {tensor.shape}")


def stft(waveform: tf.Tensor, config: StftConfig) -> tf.Tensor:
    """Complex spectrogram ``[..., frames, bins, channels]`` of ``[..., samples, channels]``."""
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    _require_rank(waveform, 2, "waveform", "[..., samples, channels]")
    length = tf.shape(waveform)[-2]
    left, right = _framing_padding(
        length, num_frames(length, config), config.n_fft, config.hop_length
    )
    signals = tf.linalg.matrix_transpose(waveform)
    paddings = [[0, 0]] * (signals.shape.rank - 1) + [[left, right]]
    spectrogram = tf.signal.stft(
        tf.pad(signals, paddings),
        frame_length=config.n_fft,
        frame_step=config.hop_length,
        fft_length=config.n_fft,
        window_fn=_analysis_window(config),
    )
    return _move_axis(spectrogram, -3, -1)


def istft(spectrogram: tf.Tensor, config: StftConfig, length: int | tf.Tensor) -> tf.Tensor:
    """Waveform ``[..., length, channels]`` whose ``stft`` is ``spectrogram``.

    ``length`` must be the original sample count: the frame count alone cannot tell how much
    of the last hop was padding. A mismatch fails loudly rather than returning a short signal.
    """
    spectrogram = tf.convert_to_tensor(spectrogram, tf.complex64)
    _require_rank(spectrogram, 3, "spectrogram", "[..., frames, bins, channels]")
    bins = spectrogram.shape[-2]
    if bins is not None and bins != config.num_bins:
        raise ValueError(f"spectrogram has {bins} bins, config expects {config.num_bins}")
    if not isinstance(length, int):
        length = tf.cast(length, tf.int32)
    frame_count = num_frames(length, config)
    frames_match = tf.debugging.assert_equal(
        tf.shape(spectrogram)[-3],
        frame_count,
        message="spectrogram frame count does not match num_frames(length, config)",
    )
    window_fn = _analysis_window(config)
    signals = tf.signal.inverse_stft(
        _move_axis(spectrogram, -1, -3),
        frame_length=config.n_fft,
        frame_step=config.hop_length,
        fft_length=config.n_fft,
        window_fn=tf.signal.inverse_stft_window_fn(config.hop_length, window_fn),
    )
    start, _ = _framing_padding(length, frame_count, config.n_fft, config.hop_length)
    with tf.control_dependencies([frames_match]):
        return tf.linalg.matrix_transpose(signals[..., start : start + length])


def magnitude(spectrogram: tf.Tensor) -> tf.Tensor:
    """Float32 magnitudes: the model's input and the quantity masks are computed from."""
    return tf.abs(tf.convert_to_tensor(spectrogram, tf.complex64))


def ratio_masks(source_magnitudes: tf.Tensor, power: float = 1.0, eps: float = 1e-10) -> tf.Tensor:
    """Soft masks ``|S_i|^p / sum_j |S_j|^p`` over the trailing ``sources`` axis.

    ``power=2`` gives Wiener-like masks. ``eps`` is added to every source's magnitude (before
    the power), so the masks always sum to 1, keep finite gradients, and, where all sources
    are silent, split the mixture evenly (silence in gives silence out) instead of dividing by
    zero.
    """
    weights = _ratio_weights(source_magnitudes, power, eps)
    return weights / tf.reduce_sum(weights, axis=-1, keepdims=True)


def ratio_mask(
    source_magnitudes: tf.Tensor, index: int, power: float = 1.0, eps: float = 1e-10
) -> tf.Tensor:
    """Source ``index``'s mask of ``ratio_masks``, without dividing the other sources' weights."""
    weights = _ratio_weights(source_magnitudes, power, eps)
    return weights[..., index] / tf.reduce_sum(weights, axis=-1)


def _ratio_weights(source_magnitudes: tf.Tensor, power: float, eps: float) -> tf.Tensor:
    if power <= 0:
        raise ValueError(f"power must be positive, got {power}")
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    magnitudes = tf.convert_to_tensor(source_magnitudes, tf.float32)
    if power == 1:
        return magnitudes + eps
    # Raised after adding eps: the gradient of m**p at m = 0 is infinite for p < 1.
    return tf.pow(magnitudes + eps, power)


def apply_mask(spectrogram: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Scales each complex bin by a real mask (broadcasting), keeping the mixture's phase."""
    spectrogram = tf.convert_to_tensor(spectrogram, tf.complex64)
    return spectrogram * as_complex(mask)


def as_complex(values: tf.Tensor) -> tf.Tensor:
    """Real values as complex64; unlike ``tf.cast``, its gradient takes the real part quietly
    (TensorFlow warns about every complex-to-real cast in a backward pass)."""
    values = tf.cast(values, tf.float32)
    return tf.complex(values, tf.zeros_like(values))


def _validate_chunking(chunk_length: int, overlap: int, chunks_per_batch: int) -> None:
    """Fails at graph-building time, where the caller can still see which argument is wrong."""
    for name, value, minimum in (
        ("chunk_length", chunk_length, 1),
        ("overlap", overlap, 0),
        ("chunks_per_batch", chunks_per_batch, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if 2 * overlap >= chunk_length:
        raise ValueError(
            f"overlap {overlap} must be less than half of chunk_length {chunk_length}, so the "
            "fade-in and fade-out of a chunk do not meet"
        )


def _fade_in(overlap: int) -> tf.Tensor:
    """Raised-cosine fade-in of ``overlap`` samples; the fade-out it meets is ``1 - fade_in``.

    Ramp samples sit at half-sample offsets, so no weight is exactly zero or one. Weights that
    sum to one need no division afterwards, and blocks joined outside a graph (``Separator``)
    use these very weights.
    """
    ramp_positions = (tf.range(overlap, dtype=tf.float32) + 0.5) / max(overlap, 1)
    return tf.square(tf.sin(0.5 * math.pi * ramp_positions))


def fade_in(overlap: int) -> np.ndarray:
    """``chunked_map``'s crossfade weights as numpy, for code that joins blocks outside a graph."""
    _validate_chunking(2 * overlap + 1, overlap, chunks_per_batch=1)
    return _fade_in(overlap).numpy()


def chunked_map(
    waveform: tf.Tensor,
    fn: ChunkFn,
    chunk_length: int,
    overlap: int,
    chunks_per_batch: int = 1,
) -> NestedTensors:
    """Applies ``fn`` to a waveform of any length in crossfaded chunks.

    ``waveform`` is ``[samples, channels]``; ``fn`` maps ``[batch, samples, channels]`` to a
    tensor or a (nested) dict of tensors of that shape, and the result has the same structure
    with each tensor shaped like ``waveform``. Whole chunks go to ``fn`` in groups of
    ``chunks_per_batch``, one group after another, so peak memory inside ``fn`` is bounded by a
    group, not the song. The last chunk goes alone and ends where the input ends, so ``fn``
    must take any length up to ``chunk_length``: padding it with silence instead changes what
    a network hears of the music before the end (worse separation of short inputs,
    BENCHMARKS.md). Neighbouring chunks' outputs are crossfaded over ``overlap`` samples with
    weights that sum to one, so an identity ``fn`` returns the input and a linear one has no
    bumps at chunk joins.

    The first chunk starts at the first sample, with no padding or fade-in before it, so any
    run of whole chunks of a song is itself a valid input whose chunks are exactly the song's:
    a caller can cut a long song into blocks that overlap by just ``overlap`` samples and
    crossfade them with ``fade_in`` to the whole-song result (``Separator``).
    """
    _validate_chunking(chunk_length, overlap, chunks_per_batch)
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    if waveform.shape.rank != 2:
        raise ValueError(f"waveform must be shaped [samples, channels], got {waveform.shape}")
    length = tf.shape(waveform)[0]
    stride = chunk_length - overlap
    whole_count = num_chunks(length, chunk_length, overlap) - 1
    last_start = whole_count * stride
    # Whole chunks, grouped; the last group is filled up with chunks whose outputs are dropped.
    group_count = -(-whole_count // chunks_per_batch)
    framed_length = group_count * chunks_per_batch * stride + overlap
    framed = tf.pad(waveform, [[0, tf.maximum(framed_length - length, 0)], [0, 0]])
    chunks = tf.signal.frame(framed[:framed_length], chunk_length, stride, axis=0)
    groups = tf.reshape(chunks, tf.concat([[-1, chunks_per_batch], tf.shape(chunks)[1:]], 0))
    # map_fn needs fn's output structure before the loop: tracing fn once yields it, and that
    # one trace then runs for every group. A single iteration in flight bounds peak memory.
    traced_fn = tf.function(fn).get_concrete_function(
        tf.TensorSpec([chunks_per_batch, chunk_length, waveform.shape[1]], tf.float32)
    )
    whole_outputs = tf.map_fn(
        traced_fn,
        groups,
        fn_output_signature=tf.nest.map_structure(
            lambda output: tf.TensorSpec(output.shape, output.dtype), traced_fn.structured_outputs
        ),
        parallel_iterations=1,
    )
    last_outputs = fn(waveform[last_start:][tf.newaxis])

    fade = _fade_in(overlap)[:, tf.newaxis]
    last_length = length - last_start

    def overlap_add(whole: tf.Tensor, last: tf.Tensor) -> tf.Tensor:
        """Whole chunks' outputs ``[groups, chunks_per_batch, chunk_length, channels]`` and the
        last chunk's ``[1, last_length, channels]``, crossfaded into ``[length, channels]``.

        Each whole chunk gives its samples up to the next chunk's start, followed by its last
        ``overlap`` samples blended into the next chunk's first ones. The first chunk's fade-in
        and the last chunk's fade-out are never applied, so nothing is divided out afterwards.
        """
        whole = tf.reshape(whole, tf.concat([[-1], tf.shape(whole)[2:]], 0))[:whole_count]
        last = last[0]
        # The last chunk's head, padded for an input shorter than one overlap (no whole chunks).
        last_head = tf.pad(
            last[:overlap], [[0, overlap - tf.minimum(last_length, overlap)], [0, 0]]
        )
        heads = tf.concat([whole[:, :overlap], last_head[tf.newaxis]], 0)
        joins = (1 - fade) * whole[:, stride:] + fade * heads[1:]
        strides = tf.concat([whole[:, overlap:stride], joins], axis=1)
        return tf.concat(
            [
                heads[0, : tf.minimum(overlap, length)],
                tf.reshape(strides, [-1, tf.shape(strides)[2]]),
                last[overlap:],
            ],
            axis=0,
        )

    return tf.nest.map_structure(overlap_add, whole_outputs, last_outputs)
