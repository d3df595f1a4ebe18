"""Spectrogram U-Nets chosen by name, and everything between a mixture STFT and their masks.

Two architectures, both mapping magnitudes of the lowest ``model_bins`` STFT bins to one
sigmoid mask per stem and channel:

- ``jansson``: the Jansson et al. (2017) U-Net as one network with a mask per stem, fed
  log-compressed magnitudes standardised per bin with the Transform's statistics;
- ``spleeter``: Deezer's Spleeter graph (``vocalsep.model.spleeter``), one network per stem,
  fed raw magnitudes, which is what its published weights expect (``vocalsep.model.pretrained``).

The network's input features and training loss live here too; turning masks into stems is
``vocalsep.model.inference``. All of it is plain TensorFlow on top of ``vocalsep.audio.dsp``,
so the Trainer, the Evaluator and the serving graph run the identical computation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import tensorflow as tf
import tf_keras as keras

from vocalsep.audio import dsp
from vocalsep.model import spleeter

ARCHITECTURES = ("jansson", "spleeter")
COMPRESSIONS = ("log1p", "none")
KERNEL_SIZE = (5, 5)
STRIDES = (2, 2)
LEAKY_RELU_SLOPE = 0.2
DROPOUT_DECODER_LAYERS = 3


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Every architecture hyperparameter, plus the STFT the model was designed for.

    The STFT travels inside the config because ``model_bins`` and ``patch_frames`` only mean
    something for one ``n_fft``/``hop_length``: a model must never be fed another STFT.
    ``architecture`` picks the network (module docstring); ``spleeter`` takes raw magnitudes.
    """

    architecture: str = "jansson"
    stft: dsp.StftConfig = dataclasses.field(default_factory=dsp.StftConfig)
    encoder_channels: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    stems: tuple[str, ...] = ("vocals", "accompaniment")
    audio_channels: int = 2
    # All bins of n_fft 4096 but the Nyquist bin, which inference.stems_from_masks extends to.
    model_bins: int = 2048
    patch_frames: int = 256
    input_compression: str = "log1p"
    dropout_rate: float = 0.5

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}"
            )
        if self.architecture == "spleeter" and self.input_compression != "none":
            raise ValueError(
                "the spleeter architecture takes raw magnitudes: input_compression must be 'none'"
            )
        if not self.encoder_channels or any(c < 1 for c in self.encoder_channels):
            raise ValueError(f"encoder_channels must be positive, got {self.encoder_channels}")
        if len(self.stems) < 2 or len(set(self.stems)) != len(self.stems):
            raise ValueError(f"stems must be at least two distinct names, got {self.stems}")
        if self.audio_channels < 1:
            raise ValueError(f"audio_channels must be positive, got {self.audio_channels}")
        if not 0 < self.model_bins <= self.stft.num_bins:
            raise ValueError(
                f"model_bins {self.model_bins} must be in [1, {self.stft.num_bins}] "
                f"for n_fft {self.stft.n_fft}"
            )
        for name in ("model_bins", "patch_frames"):
            value = getattr(self, name)
            if value < 1 or value % self.frame_multiple:
                raise ValueError(
                    f"{name} {value} must be a positive multiple of 2**depth = "
                    f"{self.frame_multiple}, so every encoder stride halves it exactly"
                )
        if self.input_compression not in COMPRESSIONS:
            raise ValueError(
                f"input_compression must be one of {COMPRESSIONS}, got {self.input_compression!r}"
            )
        if not 0 <= self.dropout_rate < 1:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")

    @property
    def depth(self) -> int:
        """Number of stride-2 levels."""
        return len(self.encoder_channels)

    @property
    def frame_multiple(self) -> int:
        """Frames and bins must be multiples of this for the skips to line up."""
        return 2**self.depth

    @classmethod
    def tiny(cls) -> UNetConfig:
        """A seconds-to-build variant with the same structure, for tests."""
        return cls(
            stft=dsp.StftConfig(n_fft=512, hop_length=128),
            encoder_channels=(4, 8, 16),
            model_bins=256,
            patch_frames=32,
        )

    @classmethod
    def spleeter(cls) -> UNetConfig:
        """Spleeter 2stems: 1024 bins (0-11 kHz), 512-frame training patches, raw magnitudes."""
        return cls(
            architecture="spleeter", model_bins=1024, patch_frames=512, input_compression="none"
        )

    @property
    def standardises_input(self) -> bool:
        """Whether the network expects magnitudes standardised with the Transform's statistics."""
        return self.architecture == "jansson"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for TFX custom_config and the SavedModel's metadata."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> UNetConfig:
        """Inverse of ``to_dict``; JSON turns tuples into lists, so they are restored here."""
        values = dict(values)
        values["stft"] = dsp.StftConfig(**values["stft"])
        values["encoder_channels"] = tuple(values["encoder_channels"])
        values["stems"] = tuple(values["stems"])
        return cls(**values)


def build_unet(config: UNetConfig, dtype_policy: str = "float32") -> keras.Model:
    """The network ``config.architecture`` names, as a Keras model; see ``build_jansson``."""
    if config.architecture == "spleeter":
        if dtype_policy != "float32":
            raise ValueError("the spleeter architecture computes in float32 only")
        return build_spleeter(config)
    return build_jansson(config, dtype_policy)


def build_spleeter(config: UNetConfig) -> keras.Model:
    """Raw magnitudes ``[batch, frames, model_bins, channels]`` to masks, one network per stem.

    Output masks are ``[batch, frames, model_bins, channels, stems]``, like ``build_jansson``'s,
    so losses, ratio masks and the serving graph do not care which architecture made them.
    """
    features = keras.Input(shape=(None, config.model_bins, config.audio_channels), name="magnitude")
    masks = [
        spleeter.SpleeterNetwork(
            config.encoder_channels, config.audio_channels, config.dropout_rate, name=f"{stem}_unet"
        )(features)
        for stem in config.stems
    ]
    stacked = keras.layers.Lambda(lambda stems: tf.stack(stems, axis=-1), name="masks")(masks)
    return keras.Model(features, stacked, name="spleeter")


def build_jansson(config: UNetConfig, dtype_policy: str = "float32") -> keras.Model:
    """Normalised features ``[batch, frames, model_bins, channels]`` to masks in (0, 1).

    Output masks are ``[batch, frames, model_bins, channels, stems]``. The time axis is left
    unknown so the same weights run on training patches and on long inference chunks (any
    multiple of ``2**depth`` frames). ``dtype_policy`` is a Keras policy name such as
    ``"mixed_bfloat16"``: mixed policies keep float32 variables, so weights copy between
    policies unchanged, and the masks then come out in the compute dtype.
    """
    policy = keras.mixed_precision.Policy(dtype_policy)
    features = keras.Input(
        shape=(None, config.model_bins, config.audio_channels), name="normalised_magnitude"
    )
    skips = []
    hidden = features
    for level, channels in enumerate(config.encoder_channels):
        hidden = keras.layers.Conv2D(
            channels,
            KERNEL_SIZE,
            strides=STRIDES,
            padding="same",
            name=f"encoder_conv_{level}",
            dtype=policy,
        )(hidden)
        hidden = keras.layers.BatchNormalization(name=f"encoder_batch_norm_{level}", dtype=policy)(
            hidden
        )
        hidden = keras.layers.LeakyReLU(
            LEAKY_RELU_SLOPE, name=f"encoder_activation_{level}", dtype=policy
        )(hidden)
        skips.append(hidden)

    # Each decoder level mirrors an encoder level; the deepest encoder output is the bottleneck,
    # so the skips are concatenated from the second-deepest upwards.
    decoder_channels = config.encoder_channels[-2::-1]
    for level, channels in enumerate(decoder_channels):
        hidden = keras.layers.Conv2DTranspose(
            channels,
            KERNEL_SIZE,
            strides=STRIDES,
            padding="same",
            activation="relu",
            name=f"decoder_deconv_{level}",
            dtype=policy,
        )(hidden)
        hidden = keras.layers.BatchNormalization(name=f"decoder_batch_norm_{level}", dtype=policy)(
            hidden
        )
        if level < DROPOUT_DECODER_LAYERS:
            hidden = keras.layers.Dropout(
                config.dropout_rate, name=f"decoder_dropout_{level}", dtype=policy
            )(hidden)
        hidden = keras.layers.Concatenate(name=f"decoder_skip_{level}", dtype=policy)(
            [hidden, skips[-2 - level]]
        )

    mask_count = config.audio_channels * len(config.stems)
    masks = keras.layers.Conv2DTranspose(
        mask_count,
        KERNEL_SIZE,
        strides=STRIDES,
        padding="same",
        activation="sigmoid",
        name="mask_deconv",
        dtype=policy,
    )(hidden)
    masks = keras.layers.Reshape(
        (-1, config.model_bins, config.audio_channels, len(config.stems)),
        name="masks",
        dtype=policy,
    )(masks)
    return keras.Model(features, masks, name="unet")


def _per_bin(statistic: tf.Tensor | Any) -> tf.Tensor:
    """Broadcasts a ``[bins]`` statistic over channels; ``[bins, channels]`` passes through."""
    statistic = tf.convert_to_tensor(statistic, tf.float32)
    return statistic[:, tf.newaxis] if statistic.shape.rank == 1 else statistic


def normalise(
    mixture_magnitude: tf.Tensor, mean: tf.Tensor | Any, scale: tf.Tensor | Any, config: UNetConfig
) -> tf.Tensor:
    """Model input from raw magnitudes ``[..., frames, bins, channels]``.

    Takes the first ``model_bins`` bins (so callers may pass all STFT bins), compresses, then
    standardises per bin with ``mean``/``scale`` computed by tf.Transform over the training
    split on the *compressed* magnitudes. ``mean``/``scale`` are ``[model_bins]`` or
    ``[model_bins, channels]``; ``scale`` must be positive. Architectures that take raw
    magnitudes ignore them.
    """
    model_input = tf.convert_to_tensor(mixture_magnitude, tf.float32)[..., : config.model_bins, :]
    if not config.standardises_input:
        return model_input
    if config.input_compression == "log1p":
        model_input = tf.math.log1p(model_input)
    return (model_input - _per_bin(mean)) / _per_bin(scale)


def masked_l1_loss(
    masks: tf.Tensor, mixture_magnitude: tf.Tensor, source_magnitudes: tf.Tensor
) -> tf.Tensor:
    """Jansson's loss: mean ``|mask * mixture - source|`` over every stem, bin and frame.

    ``masks`` are the model's ``[..., frames, model_bins, channels, stems]``; magnitudes are
    raw (uncompressed) and may include all STFT bins, of which the first ``model_bins`` count.
    Averaging over all elements equals averaging the per-stem losses, since stems are equal in
    size.
    """
    model_bins = masks.shape[-3]
    mixture = tf.convert_to_tensor(mixture_magnitude, tf.float32)[..., :model_bins, :]
    sources = tf.convert_to_tensor(source_magnitudes, tf.float32)[..., :model_bins, :, :]
    estimates = tf.cast(masks, tf.float32) * mixture[..., tf.newaxis]
    return tf.reduce_mean(tf.abs(estimates - sources))


def network_input(
    mixture_magnitude: tf.Tensor, mean: tf.Tensor | Any, scale: tf.Tensor | Any, config: UNetConfig
) -> tf.Tensor:
    """The network's input for mixture magnitudes ``[batch, frames, bins, channels]``.

    ``normalise``s and zero-pads frames up to a multiple of ``2**depth``, the only frame
    counts the network accepts; ``inference.stems_from_masks`` crops the padding off again.
    """
    frame_count = tf.shape(mixture_magnitude)[1]
    padded_frames = -(-frame_count // config.frame_multiple) * config.frame_multiple
    padding = [[0, 0], [0, padded_frames - frame_count], [0, 0], [0, 0]]
    return normalise(tf.pad(mixture_magnitude, padding), mean, scale, config)
