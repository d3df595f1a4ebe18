"""Spleeter's U-Net (Deezer's 2stems graph), one network per stem, as a pure TensorFlow function.

The forward pass is written once, over a mapping from weight names to tensors, so the same code
runs in training (a Keras layer that owns float32 variables) and in the serving graph (weights
stored as float16 to halve the export and cast back up). The wiring follows Spleeter's
``spleeter/model/functions/unet.py`` exactly, quirks included:

- six 5x5 stride-2 ``same`` convolutions 2 -> 16 -> ... -> 512, each followed by batch norm
  (eps 1e-3) and leaky ReLU 0.2, except that the sixth's batch norm is computed by Spleeter and
  never used (so it is not part of this graph);
- the skips *and the bottleneck* are the pre-batch-norm convolution outputs;
- six 5x5 stride-2 ``same`` transposed convolutions 512 -> 256 -> ... -> 16 -> 1, each followed
  by ReLU, then batch norm, then 50% dropout on the first three; the skip is concatenated
  before the upsampled features;
- a 4x4 convolution with dilation 2 to ``audio_channels`` and a sigmoid.

Batch norm always uses its moving statistics, in training too: the published statistics are
the catalogue's, and batch statistics of a few short patches destroy the pretrained network
(issue 14's measurement: 7.0 -> 0.85 dB vocals SDR within 100 steps).

For serving, three parts can run in faster forms of the same function (only the order of
the sums differs; BENCHMARKS.md has the per-layer table that chose them):

- a 5x5 stride-2 transposed convolution as its sub-pixel form: one 3x3 stride-1 convolution to
  four times the channels, one group per output parity, then a depth-to-space. It does 36/25
  of the multiply-adds, so it only pays where TensorFlow's transposed convolution is poor: the
  decoder's last one, to a single channel (``subpixel_levels``);
- the last dilated convolution as ``conv2d`` with ``dilations`` instead of ``atrous_conv2d``'s
  space-to-batch (``dilated_conv2d``), which has no CPU gradient, so training keeps atrous;
- batch norm as one fused op (``fused_batch_norm``). It cannot be folded into the convolution
  weights here: the encoder's skips are the pre-batch-norm outputs, and in the decoder a ReLU
  sits between the transposed convolution and its batch norm.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import tensorflow as tf
import tf_keras as keras

BATCH_NORM_EPSILON = 1e-3
LEAKY_RELU_SLOPE = 0.2
DROPOUT_DECODER_LAYERS = 3
KERNEL = 5
LAST_KERNEL = 4
LAST_DILATION = 2
BATCH_NORM_PARTS = ("gamma", "beta", "moving_mean", "moving_variance")


def weight_shapes(
    encoder_channels: tuple[int, ...], audio_channels: int
) -> dict[str, tuple[int, ...]]:
    """Every weight of one stem's network, by name, in TensorFlow layouts and in a fixed order.

    Convolution kernels are ``[height, width, in, out]``, transposed-convolution kernels
    ``[height, width, out, in]`` (``tf.nn.conv2d_transpose``'s filter layout); height is time,
    width is frequency. Names follow the torch port (``down{k}``, ``up{k}``, 1-based).
    """
    shapes: dict[str, tuple[int, ...]] = {}
    depth = len(encoder_channels)
    in_channels = audio_channels
    for level, channels in enumerate(encoder_channels, start=1):
        shapes[f"down{level}_conv/kernel"] = (KERNEL, KERNEL, in_channels, channels)
        shapes[f"down{level}_conv/bias"] = (channels,)
        if level < depth:
            for part in BATCH_NORM_PARTS:
                shapes[f"down{level}_bn/{part}"] = (channels,)
        in_channels = channels
    decoder_channels = (*encoder_channels[-2::-1], 1)
    for level, channels in enumerate(decoder_channels, start=1):
        shapes[f"up{level}_deconv/kernel"] = (KERNEL, KERNEL, channels, in_channels)
        shapes[f"up{level}_deconv/bias"] = (channels,)
        for part in BATCH_NORM_PARTS:
            shapes[f"up{level}_bn/{part}"] = (channels,)
        # The next level sees the skip (the mirrored encoder convolution) beside these features.
        in_channels = channels + (encoder_channels[-level - 1] if level < depth else 0)
    shapes[f"up{depth + 1}_conv/kernel"] = (LAST_KERNEL, LAST_KERNEL, 1, audio_channels)
    shapes[f"up{depth + 1}_conv/bias"] = (audio_channels,)
    return shapes


def _batch_norm(
    features: tf.Tensor,
    weights: Mapping[str, tf.Tensor],
    prefix: str,
    repeats: int = 1,
    fused: bool = False,
) -> tf.Tensor:
    """Inference batch norm; ``repeats`` tiles the statistics over channel groups that are
    copies of the same channels (the sub-pixel form's four parities); ``fused`` computes it as
    one ``FusedBatchNormV3`` op (one pass over the features) instead of a multiply and an add."""
    parts = [weights[f"{prefix}/{part}"] for part in BATCH_NORM_PARTS]
    if repeats > 1:
        parts = [tf.tile(part, [repeats]) for part in parts]
    gamma, beta, mean, variance = parts
    if fused:
        normalised, _, _ = tf.compat.v1.nn.fused_batch_norm(
            features, gamma, beta, mean, variance, BATCH_NORM_EPSILON, is_training=False
        )
        return normalised
    return tf.nn.batch_normalization(features, mean, variance, beta, gamma, BATCH_NORM_EPSILON)


# For a 5x5 stride-2 "same" transposed convolution (TensorFlow pads the matching convolution by
# 1 before and 2 after), output 2m + p of an axis sums input m + d times kernel tap k:
# p = 0: d = -1 -> k = 3, d = 0 -> k = 1; p = 1: d = -1 -> 4, d = 0 -> 2, d = +1 -> 0. As a 3x3
# convolution over d = -1, 0, +1, the taps per parity, with 5 standing for a zero tap:
_SUBPIXEL_TAPS = ((3, 1, 5), (4, 2, 0))


def subpixel_kernel(kernel: tf.Tensor) -> tf.Tensor:
    """A 5x5 stride-2 transposed-convolution kernel ``[5, 5, out, in]`` as the 3x3 kernel
    ``[3, 3, in, 4 * out]`` whose output channel ``(2 * py + px) * out + c`` is output
    channel ``c`` at row parity ``py`` and column parity ``px`` (``tf.nn.depth_to_space``'s
    order)."""
    if tuple(kernel.shape[:2]) != (KERNEL, KERNEL):
        raise ValueError(f"sub-pixel form is for {KERNEL}x{KERNEL} kernels, got {kernel.shape}")
    out_channels, in_channels = kernel.shape[2], kernel.shape[3]
    padded = tf.pad(kernel, [[0, 1], [0, 1], [0, 0], [0, 0]])  # tap 5 is zero
    taps = [tap for parity in _SUBPIXEL_TAPS for tap in parity]
    gathered = tf.gather(tf.gather(padded, taps, axis=0), taps, axis=1)
    # [py, ty, px, tx, out, in] -> [ty, tx, in, py, px, out]
    grouped = tf.reshape(gathered, [2, 3, 2, 3, out_channels, in_channels])
    return tf.reshape(
        tf.transpose(grouped, [1, 3, 5, 0, 2, 4]), [3, 3, in_channels, 4 * out_channels]
    )


def _upsampled(
    hidden: tf.Tensor,
    weights: Mapping[str, tf.Tensor],
    level: int,
    subpixel: bool,
    fused_batch_norm: bool = False,
) -> tf.Tensor:
    """Decoder level ``level``: transposed convolution, bias, ReLU, batch norm."""
    kernel = weights[f"up{level}_deconv/kernel"]
    bias = weights[f"up{level}_deconv/bias"]
    if subpixel:
        # Bias, ReLU and batch norm act per channel, so they run before the depth-to-space
        # on the four parity groups (the convolution, bias and ReLU fuse into one op).
        features = tf.nn.conv2d(hidden, subpixel_kernel(kernel), 1, "SAME")
        features = tf.nn.relu(tf.nn.bias_add(features, tf.tile(bias, [4])))
        normalised = _batch_norm(features, weights, f"up{level}_bn", 4, fused_batch_norm)
        return tf.nn.depth_to_space(normalised, 2)
    shape = tf.shape(hidden)
    output_shape = tf.stack([shape[0], 2 * shape[1], 2 * shape[2], tf.shape(kernel)[2]])
    features = tf.nn.bias_add(tf.nn.conv2d_transpose(hidden, kernel, output_shape, 2, "SAME"), bias)
    return _batch_norm(tf.nn.relu(features), weights, f"up{level}_bn", 1, fused_batch_norm)


def serving_forms(depth: int) -> dict[str, object]:
    """``forward``'s arguments for the faster forms serving uses (module docstring)."""
    return {"subpixel_levels": (depth,), "dilated_conv2d": True, "fused_batch_norm": True}


def forward(
    weights: Mapping[str, tf.Tensor],
    magnitude: tf.Tensor,
    depth: int,
    dropout_rate: float = 0.5,
    training: bool = False,
    subpixel_levels: Collection[int] = (),
    dilated_conv2d: bool = False,
    fused_batch_norm: bool = False,
) -> tf.Tensor:
    """One stem's sigmoid mask ``[batch, frames, bins, channels]`` for raw magnitudes.

    ``frames`` and ``bins`` must be multiples of ``2**depth``. Spleeter's network returns
    ``mask * magnitude``; the mask alone is returned here, as the Jansson network does.
    ``subpixel_levels`` (1-based decoder levels), ``dilated_conv2d`` and ``fused_batch_norm``
    choose the serving forms (module docstring); the defaults are Spleeter's graph as it was.
    """
    convolutions = []
    hidden = magnitude
    for level in range(1, depth + 1):
        hidden = tf.nn.bias_add(
            tf.nn.conv2d(hidden, weights[f"down{level}_conv/kernel"], 2, "SAME"),
            weights[f"down{level}_conv/bias"],
        )
        convolutions.append(hidden)
        if level < depth:
            hidden = tf.nn.leaky_relu(
                _batch_norm(hidden, weights, f"down{level}_bn", 1, fused_batch_norm),
                LEAKY_RELU_SLOPE,
            )
    hidden = convolutions[-1]
    for level in range(1, depth + 1):
        hidden = _upsampled(hidden, weights, level, level in subpixel_levels, fused_batch_norm)
        if training and level <= DROPOUT_DECODER_LAYERS and dropout_rate:
            hidden = tf.nn.dropout(hidden, dropout_rate)
        if level < depth:
            hidden = tf.concat([convolutions[-level - 1], hidden], axis=-1)
    last = f"up{depth + 1}_conv"
    kernel = weights[f"{last}/kernel"]
    if dilated_conv2d:
        convolved = tf.nn.conv2d(hidden, kernel, 1, "SAME", dilations=LAST_DILATION)
    else:
        # atrous_conv2d is the dilated convolution by space-to-batch, which TensorFlow can
        # also differentiate on CPU (conv2d's own dilations have no CPU gradient).
        convolved = tf.nn.atrous_conv2d(hidden, kernel, LAST_DILATION, "SAME")
    mask = tf.sigmoid(tf.nn.bias_add(convolved, weights[f"{last}/bias"]))
    # The transposed convolutions' computed output shapes hide what is known statically.
    return tf.ensure_shape(mask, magnitude.shape[:-1].concatenate(mask.shape[-1:]))


def _initializer(name: str) -> keras.initializers.Initializer:
    """Spleeter's initialisation: He-uniform kernels, zero biases, unit batch norm."""
    if name.endswith("/kernel"):
        return keras.initializers.HeUniform()
    if name.endswith(("/gamma", "/moving_variance")):
        return keras.initializers.Ones()
    return keras.initializers.Zeros()


class SpleeterNetwork(keras.layers.Layer):
    """One stem's network as a Keras layer, so the Trainer treats it like any other model.

    The moving statistics are never trained (see the module docstring); everything else is.
    """

    def __init__(
        self,
        encoder_channels: tuple[int, ...],
        audio_channels: int,
        dropout_rate: float,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.encoder_channels = tuple(encoder_channels)
        self.audio_channels = audio_channels
        self.dropout_rate = dropout_rate
        self.named_weights: dict[str, tf.Variable] = {}

    def build(self, input_shape: tf.TensorShape) -> None:
        for name, shape in weight_shapes(self.encoder_channels, self.audio_channels).items():
            self.named_weights[name] = self.add_weight(
                name=name,
                shape=shape,
                initializer=_initializer(name),
                trainable=not name.endswith(("/moving_mean", "/moving_variance")),
            )
        super().build(input_shape)

    def call(self, magnitude: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        return forward(
            self.named_weights,
            magnitude,
            len(self.encoder_channels),
            self.dropout_rate,
            bool(training),
        )
