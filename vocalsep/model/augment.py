"""On-the-fly remixing of per-source STFTs into training patches.

The STFT is linear, so scaling, channel-swapping and summing source STFTs from different
tracks gives exactly the STFT of the remixed waveform: augmentation needs no audio and no
further transforms. All randomness is stateless and seeded per element, so a seeded input
pipeline yields the same batches on every run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import tensorflow as tf

from vocalsep.model.unet import UNetConfig

Remix = Callable[..., tuple[tf.Tensor, tf.Tensor]]


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """How far a remix may stray from the recordings.

    With ``remix_probability`` an example mixes sources of unrelated segments (each cropped on
    its own); otherwise it is a recorded mix, every source of one segment with one crop.
    ``gain_db`` bounds a uniform per-source gain; each source's channels are swapped with
    ``channel_swap_probability`` and it is silenced with ``silence_probability``, so the
    model also learns that a missing stem gets an empty mask.
    """

    gain_db: float = 6.0
    channel_swap_probability: float = 0.5
    silence_probability: float = 0.1
    remix_probability: float = 1.0

    def __post_init__(self) -> None:
        if self.gain_db < 0:
            raise ValueError(f"gain_db must be >= 0, got {self.gain_db}")
        for name in ("channel_swap_probability", "silence_probability", "remix_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


def _augment_source(
    spectrogram: tf.Tensor,
    seed: tf.Tensor,
    augment_config: AugmentConfig,
    config: UNetConfig,
    crop_seed: tf.Tensor | None = None,
) -> tf.Tensor:
    """A random ``patch_frames`` crop of one source ``[frames, bins, channels]``, gained.

    Sources of one recording share ``crop_seed``, so their crops line up.
    """
    own_crop_seed, gain_seed, swap_seed, silence_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4)
    )
    crop_seed = own_crop_seed if crop_seed is None else crop_seed
    frames = tf.shape(spectrogram)[0]
    start = tf.random.stateless_uniform(
        [], crop_seed, maxval=frames - config.patch_frames + 1, dtype=tf.int32
    )
    patch = spectrogram[start : start + config.patch_frames, : config.model_bins]
    gain_db = tf.random.stateless_uniform(
        [], gain_seed, -augment_config.gain_db, augment_config.gain_db
    )
    gain = tf.pow(10.0, gain_db / 20.0)
    swap = tf.random.stateless_uniform([], swap_seed) < augment_config.channel_swap_probability
    patch = tf.where(swap, tf.reverse(patch, axis=[-1]), patch)
    silent = tf.random.stateless_uniform([], silence_seed) < augment_config.silence_probability
    gain = tf.where(silent, 0.0, gain)
    return patch * tf.complex(gain, 0.0)


def remix_fn(augment_config: AugmentConfig, config: UNetConfig, sources: Sequence[str]) -> Remix:
    """``(seed, unrelated source STFTs[, one recording's STFTs]) -> (mixture, sources)``.

    Source STFTs are complex ``[frames, bins, channels]`` in ``sources`` order, which must be
    the model's stem order; the recording's are needed when ``remix_probability`` is below 1.
    Outputs are complex and keep only the ``model_bins`` the loss looks at:
    ``[patch_frames, model_bins, channels]`` and ``[..., stems]``; the mixture is their sum.
    """
    if tuple(sources) != config.stems:
        raise ValueError(f"sources {tuple(sources)} must match the model's stems {config.stems}")

    def remix(
        seed: tf.Tensor,
        spectrograms: Sequence[tf.Tensor],
        recording: Sequence[tf.Tensor] | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 2 * len(sources) + 2))
        patches = [
            _augment_source(spectrogram, source_seed, augment_config, config)
            for spectrogram, source_seed in zip(spectrograms, seeds[: len(sources)], strict=True)
        ]
        if recording is not None:
            recorded = [
                _augment_source(spectrogram, source_seed, augment_config, config, seeds[-2])
                for spectrogram, source_seed in zip(
                    recording, seeds[len(sources) : 2 * len(sources)], strict=True
                )
            ]
            remixed = tf.random.stateless_uniform([], seeds[-1]) < augment_config.remix_probability
            patches = [tf.where(remixed, *pair) for pair in zip(patches, recorded, strict=True)]
        return tf.add_n(patches), tf.stack(patches, axis=-1)

    return remix
