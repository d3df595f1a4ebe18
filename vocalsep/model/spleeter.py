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
"""

from __future__ import annotations

from collections.abc import Mapping

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


def _batch_norm(features: tf.Tensor, weights: Mapping[str, tf.Tensor], prefix: str) -> tf.Tensor:
    return tf.nn.batch_normalization(
        features,
        weights[f"{prefix}/moving_mean"],
        weights[f"{prefix}/moving_variance"],
        weights[f"{prefix}/beta"],
        weights[f"{prefix}/gamma"],
        BATCH_NORM_EPSILON,
    )


def forward(
    weights: Mapping[str, tf.Tensor],
    magnitude: tf.Tensor,
    depth: int,
    dropout_rate: float = 0.5,
    training: bool = False,
) -> tf.Tensor:
    """One stem's sigmoid mask ``[batch, frames, bins, channels]`` for raw magnitudes.

    ``frames`` and ``bins`` must be multiples of ``2**depth``. Spleeter's network returns
    ``mask * magnitude``; the mask alone is returned here, as the Jansson network does.
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
                _batch_norm(hidden, weights, f"down{level}_bn"), LEAKY_RELU_SLOPE
            )
    hidden = convolutions[-1]
    for level in range(1, depth + 1):
        kernel = weights[f"up{level}_deconv/kernel"]
        shape = tf.shape(hidden)
        output_shape = tf.stack([shape[0], 2 * shape[1], 2 * shape[2], tf.shape(kernel)[2]])
        hidden = tf.nn.bias_add(
            tf.nn.conv2d_transpose(hidden, kernel, output_shape, 2, "SAME"),
            weights[f"up{level}_deconv/bias"],
        )
        hidden = _batch_norm(tf.nn.relu(hidden), weights, f"up{level}_bn")
        if training and level <= DROPOUT_DECODER_LAYERS and dropout_rate:
            hidden = tf.nn.dropout(hidden, dropout_rate)
        if level < depth:
            hidden = tf.concat([convolutions[-level - 1], hidden], axis=-1)
    last = f"up{depth + 1}_conv"
    # atrous_conv2d is the dilated convolution by space-to-batch, which TensorFlow can also
    # differentiate on CPU (conv2d's own dilations have no CPU gradient).
    mask = tf.sigmoid(
        tf.nn.bias_add(
            tf.nn.atrous_conv2d(hidden, weights[f"{last}/kernel"], LAST_DILATION, "SAME"),
            weights[f"{last}/bias"],
        )
    )
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
