"""From a mixture STFT and a network's masks to per-stem STFTs: every inference setting.

The Trainer's validation and the serving graph both call ``separate_spectrogram``, so what is
validated is what is served. Settings (``InferenceConfig``) are recorded in each export's
metadata; the ones Spleeter itself uses are ``InferenceConfig.spleeter()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import tensorflow as tf

from vocalsep.audio import dsp
from vocalsep.configs import from_plain_values
from vocalsep.model.unet import UNetConfig, network_input

MASK_TYPES = ("ratio", "direct")
BAND_EXTENSIONS = ("repeat", "zeros")
COMPUTE_DTYPES = ("float32", "bfloat16")
STORAGE_DTYPES = ("float32", "float16")
NETWORK_FORMS = ("fast", "native")
WIENER_EPSILON = 1.1920929e-07
"""float32's machine epsilon, norbert's default regulariser for the mixture covariance."""

NetworkFn = Callable[[tf.Tensor, Sequence[str]], Mapping[str, tf.Tensor]]
"""Features ``[batch, frames, model_bins, channels]`` and the stems wanted -> their masks."""


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    """How the serving graph cuts a song up and turns masks into stems; no effect on training.

    ``chunk_seconds`` is rounded to the nearest length whose STFT has a multiple of
    ``2**depth`` frames, so no whole chunk is padded for the network. 30 s chunks separate
    about 8% faster than 10 s chunks on CPU (less crossfade recomputed, fewer per-chunk costs)
    and scored no worse on a long input (``scripts/chunk_length_experiment.py``).

    Masks to stems, on the network's ``model_bins``:

    - ``mask_type="ratio"``: soft ratio masks across stems, ``m_i**p / sum_j m_j**p`` with
      ``mask_power`` p (stems sum to the mixture; silence gives silence); ``"direct"``: each
      stem's own mask as it is, so only the networks of the stems that are masked run;
    - ``band_extension``: bins above ``model_bins`` reuse the top model bin's mask
      (``"repeat"``: full band) or are silent in every masked stem (``"zeros"``, Spleeter's);
    - ``residual_last_stem``: the last stem is the mixture minus the others (one inverse STFT
      fewer, stems that sum to the input) rather than masked itself;
    - ``wiener_iterations``: rounds of multichannel Wiener filtering by expectation-maximisation
      (norbert's algorithm) after the masks, over each chunk's frames and the network's bins;
      0: none;
    - ``channel_swap_average``: average the masks of the input and of its channel-swapped copy.

    Speed and size knobs: ``jit_compile`` compiles each chunk's separation with XLA, which TF
    Serving on CPU only runs with ``--xla_cpu_compilation_enabled`` and which makes the
    convolutions several times slower on CPU; ``compute_dtype="bfloat16"`` runs the network in
    bfloat16 (float32 weights and mask arithmetic), fast only on CPUs with bfloat16
    instructions; ``storage_dtype="float16"`` stores the network's weights in float16 in the
    export (half the size) and computes with them cast back to float32;
    ``network_form="fast"`` runs parts of the ``spleeter`` architecture in faster forms of the
    same function (``spleeter.serving_forms``: the last transposed convolution as a sub-pixel
    convolution, the dilated one as ``conv2d``, batch norm fused), ``"native"`` as Spleeter's
    graph (the shipped model's stems agree within 1.3e-5 on real music; BENCHMARKS.md).
    """

    sample_rate: int = 44100
    chunk_seconds: float = 30.0
    overlap_seconds: float = 1.0
    mask_type: str = "ratio"
    mask_power: float = 1.0
    band_extension: str = "repeat"
    residual_last_stem: bool = True
    wiener_iterations: int = 0
    channel_swap_average: bool = False
    chunks_per_batch: int = 1
    jit_compile: bool = False
    compute_dtype: str = "float32"
    storage_dtype: str = "float32"
    network_form: str = "fast"

    def __post_init__(self) -> None:
        if self.sample_rate < 1:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be positive, got {self.chunk_seconds}")
        if self.overlap_seconds < 0:
            raise ValueError(f"overlap_seconds must be >= 0, got {self.overlap_seconds}")
        if self.mask_power <= 0:
            raise ValueError(f"mask_power must be positive, got {self.mask_power}")
        if self.chunks_per_batch < 1:
            raise ValueError(f"chunks_per_batch must be >= 1, got {self.chunks_per_batch}")
        if self.wiener_iterations < 0:
            raise ValueError(f"wiener_iterations must be >= 0, got {self.wiener_iterations}")
        for name, allowed in (
            ("mask_type", MASK_TYPES),
            ("band_extension", BAND_EXTENSIONS),
            ("compute_dtype", COMPUTE_DTYPES),
            ("storage_dtype", STORAGE_DTYPES),
            ("network_form", NETWORK_FORMS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.wiener_iterations and self.mask_type != "ratio":
            raise ValueError("Wiener filtering starts from ratio masks: use mask_type='ratio'")

    @classmethod
    def spleeter(cls, **overrides: Any) -> InferenceConfig:
        """Spleeter's own settings: squared ratio masks, nothing above 11 kHz in any stem."""
        values = {"mask_power": 2.0, "band_extension": "zeros", "residual_last_stem": False}
        return cls(**{**values, **overrides})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> InferenceConfig:
        """From an export's metadata or custom_config; settings it lacks keep their defaults."""
        return from_plain_values(cls, values, "inference")

    def masked_stems(self, stems: Sequence[str]) -> tuple[str, ...]:
        """The stems whose STFTs are computed by masking (the rest is the residual)."""
        return tuple(stems[:-1] if self.residual_last_stem else stems)

    def network_stems(self, stems: Sequence[str]) -> tuple[str, ...]:
        """The stems whose networks must run: all for ratio masks, else the masked ones."""
        return tuple(stems) if self.mask_type == "ratio" else self.masked_stems(stems)


def keras_network_fn(model: Any, config: UNetConfig) -> NetworkFn:
    """A ``build_unet`` model as a ``NetworkFn`` (in inference mode)."""
    if config.architecture == "spleeter":
        return lambda features, stems: {
            stem: model.get_layer(f"{stem}_unet")(features, training=False) for stem in stems
        }

    def all_stems(features: tf.Tensor, stems: Sequence[str]) -> Mapping[str, tf.Tensor]:
        masks = model(features, training=False)
        return {stem: masks[..., config.stems.index(stem)] for stem in stems}

    return all_stems


def _masks(
    network_fn: NetworkFn, features: tf.Tensor, stems: Sequence[str], swap_average: bool
) -> dict[str, tf.Tensor]:
    masks = {stem: tf.cast(mask, tf.float32) for stem, mask in network_fn(features, stems).items()}
    if not swap_average:
        return masks
    swapped = network_fn(features[..., ::-1], stems)
    return {
        stem: 0.5 * (masks[stem] + tf.cast(swapped[stem], tf.float32)[..., ::-1]) for stem in stems
    }


def _extension(share: tf.Tensor, extra_bins: int, extension: str) -> tf.Tensor:
    """A stem's share of the bins above the network's: its top bin's, or nothing."""
    if extension == "repeat":
        return tf.repeat(share[:, :, -1:], extra_bins, axis=2)
    shape = tf.shape(share)
    return tf.zeros(tf.concat([shape[:2], [extra_bins], shape[3:]], axis=0))


def wiener(
    estimates: Mapping[str, tf.Tensor], mixture_stft: tf.Tensor, iterations: int
) -> dict[str, tf.Tensor]:
    """Multichannel Wiener filtering by expectation-maximisation (norbert's ``wiener``).

    ``estimates`` are each source's complex STFT ``[batch, frames, bins, 2]``; each round
    models source j as a local Gaussian with power ``v_j[t, f]`` (mean over channels of
    ``|y_j|^2``) and a spatial covariance ``R_j[f]`` (over the frames given), then sets
    ``y_j = v_j R_j (sum_k v_k R_k + eps I)^-1 x``. Inputs are scaled as norbert does for
    numerical safety. The 2x2 Hermitian matrices are kept as their entries and inverted in
    closed form, so every step is elementwise over ``[batch, frames, bins]`` (a general matrix
    inverse per bin took about 2 s per 30 s chunk on two cores).
    """
    if mixture_stft.shape[-1] != 2:
        raise ValueError("Wiener filtering is written for stereo spectrograms")
    names = list(estimates)
    scale = dsp.as_complex(tf.maximum(1.0, tf.reduce_max(tf.abs(mixture_stft)) / 10.0))
    left, right = tf.unstack(mixture_stft / scale, axis=-1)
    sources = [tf.unstack(estimates[name] / scale, axis=-1) for name in names]
    for _ in range(iterations):
        models = []
        for first, second in sources:
            first_power = tf.math.real(first * tf.math.conj(first))
            second_power = tf.math.real(second * tf.math.conj(second))
            power = 0.5 * (first_power + second_power)
            # R_j[f] over the frames (axis 1), normalised by the source's total power there.
            weight = WIENER_EPSILON + tf.reduce_sum(power, axis=1, keepdims=True)
            r11 = tf.reduce_sum(first_power, axis=1, keepdims=True) / weight
            r22 = tf.reduce_sum(second_power, axis=1, keepdims=True) / weight
            cross = tf.reduce_sum(first * tf.math.conj(second), axis=1, keepdims=True)
            r12 = cross / dsp.as_complex(weight)
            models.append((power, r11, r22, r12))
        regulariser = tf.sqrt(WIENER_EPSILON)
        c11 = regulariser + tf.add_n([power * r11 for power, r11, _, _ in models])
        c22 = regulariser + tf.add_n([power * r22 for power, _, r22, _ in models])
        c12 = tf.add_n([dsp.as_complex(power) * r12 for power, _, _, r12 in models])
        determinant = dsp.as_complex(c11 * c22 - tf.math.real(c12 * tf.math.conj(c12)))
        # z = Cxx^-1 x, then y_j = v_j R_j z.
        z1 = (dsp.as_complex(c22) * left - c12 * right) / determinant
        z2 = (dsp.as_complex(c11) * right - tf.math.conj(c12) * left) / determinant
        sources = []
        for power, r11, r22, r12 in models:
            power = dsp.as_complex(power)
            sources.append(
                (
                    power * (dsp.as_complex(r11) * z1 + r12 * z2),
                    power * (tf.math.conj(r12) * z1 + dsp.as_complex(r22) * z2),
                )
            )
    return {
        name: tf.stack(source, axis=-1) * scale for name, source in zip(names, sources, strict=True)
    }


def _shares(
    masks: Mapping[str, tf.Tensor],
    frames: tf.Tensor,
    config: UNetConfig,
    inference: InferenceConfig,
) -> dict[str, tf.Tensor]:
    """Each computed stem's share of the mixture on the network's bins (padded frames cropped).

    The network's raw estimates ``mask * |mixture|`` only weigh the stems against each other,
    and ``|mixture|`` is common to all of them, so ratio masks are taken over the masks alone.
    Wiener filtering needs every stem; otherwise only the masked ones are computed.
    """
    cropped = {stem: mask[:, :frames] for stem, mask in masks.items()}
    wanted = config.stems if inference.wiener_iterations else inference.masked_stems(config.stems)
    if inference.mask_type == "direct":
        return {stem: cropped[stem] for stem in wanted}
    stacked = tf.stack([cropped[stem] for stem in config.stems], axis=-1)
    return {
        stem: dsp.ratio_mask(stacked, config.stems.index(stem), inference.mask_power)
        for stem in wanted
    }


def _model_band(
    shares: Mapping[str, tf.Tensor],
    mixture: tf.Tensor,
    config: UNetConfig,
    inference: InferenceConfig,
) -> dict[str, tf.Tensor]:
    """The masked stems on the network's bins (``mixture`` holds just those), Wiener-filtered
    if asked."""
    stems = {stem: dsp.apply_mask(mixture, share) for stem, share in shares.items()}
    if inference.wiener_iterations:
        stems = wiener(stems, mixture, inference.wiener_iterations)
    return {stem: stems[stem] for stem in inference.masked_stems(config.stems)}


def model_band_stems(
    masks: Mapping[str, tf.Tensor],
    mixture_stft: tf.Tensor,
    config: UNetConfig,
    inference: InferenceConfig,
) -> dict[str, tf.Tensor]:
    """The masked stems' STFTs on the network's bins: everything the network decides (what a
    training loss on the served separation needs). ``mixture_stft`` holds at least
    ``model_bins`` bins; the rest are ignored."""
    mixture = tf.convert_to_tensor(mixture_stft, tf.complex64)[:, :, : config.model_bins]
    shares = _shares(masks, tf.shape(mixture)[1], config, inference)
    return _model_band(shares, mixture, config, inference)


def stems_from_masks(
    masks: Mapping[str, tf.Tensor],
    mixture_stft: tf.Tensor,
    config: UNetConfig,
    inference: InferenceConfig,
) -> dict[str, tf.Tensor]:
    """The masked stems' full-band STFTs (``inference.masked_stems``).

    Bins above the network's get the extension of each stem's share (``band_extension``);
    Wiener filtering stays on the network's bins, where the masks are not extrapolated, and
    costs half as much there.
    """
    mixture_stft = tf.convert_to_tensor(mixture_stft, tf.complex64)
    bins = config.model_bins
    shares = _shares(masks, tf.shape(mixture_stft)[1], config, inference)
    low = _model_band(shares, mixture_stft[:, :, :bins], config, inference)
    extra_bins = config.stft.num_bins - bins
    return {
        stem: tf.concat(
            [
                low[stem],
                dsp.apply_mask(
                    mixture_stft[:, :, bins:],
                    _extension(shares[stem], extra_bins, inference.band_extension),
                ),
            ],
            axis=2,
        )
        for stem in low
    }


def separate_spectrogram(
    network_fn: NetworkFn,
    mixture_stft: tf.Tensor,
    mean: tf.Tensor | Any,
    scale: tf.Tensor | Any,
    config: UNetConfig,
    inference: InferenceConfig,
) -> dict[str, tf.Tensor]:
    """The masked stems' STFTs for a mixture STFT ``[batch, frames, bins, channels]``.

    Any frame count works; with ``inference.residual_last_stem`` the last stem is left to the
    caller (mixture minus the others, best done on waveforms).
    """
    mixture_stft = tf.convert_to_tensor(mixture_stft, tf.complex64)
    model_magnitude = dsp.magnitude(mixture_stft[:, :, : config.model_bins])
    features = network_input(model_magnitude, mean, scale, config)
    masks = _masks(
        network_fn,
        features,
        inference.network_stems(config.stems),
        inference.channel_swap_average,
    )
    return stems_from_masks(masks, mixture_stft, config, inference)


def _window_sums(values: tf.Tensor, window_frames: int | tf.Tensor) -> tf.Tensor:
    """``[batch, frames, bins, channels]`` summed over channels and over windows of frames:
    ``[batch, windows, bins]`` (frames after the last whole window are left out)."""
    summed = tf.reduce_sum(values, axis=-1)
    shape = tf.shape(summed)
    whole = shape[1] // window_frames * window_frames
    windows = tf.reshape(summed[:, :whole], [shape[0], -1, window_frames, shape[2]])
    return tf.reduce_sum(windows, axis=2)


def _energy(spectrogram: tf.Tensor) -> tf.Tensor:
    # Not tf.abs(...)**2, whose gradient at 0 is NaN for complex values.
    return tf.math.real(spectrogram * tf.math.conj(spectrogram))


def separation_loss(
    masks: Mapping[str, tf.Tensor],
    mixture_stft: tf.Tensor,
    source_stfts: tf.Tensor,
    config: UNetConfig,
    inference: InferenceConfig,
    window_frames: int,
    floor: float = 1e-3,
) -> tf.Tensor:
    """A differentiable stand-in for museval's SDR of the separation ``inference`` serves.

    The stems are computed on the network's bins exactly as served (ratio masks, Wiener
    filtering, the residual stem). Like BSS Eval v4, each window of ``window_frames`` frames
    forgives a per-bin complex gain of the estimate (its projection onto the reference), so
    only interference and artefacts count; the loss is the mean over windows and stems of
    ``log(error + floor * mixture energy) - log(mixture energy)``, where the floor caps what a
    near-silent window can weigh. ``source_stfts`` are ``[batch, frames, bins, channels,
    stems]`` (at least ``model_bins`` bins); a patch shorter than a window is one window.
    """
    if window_frames < 1:
        raise ValueError(f"window_frames must be >= 1, got {window_frames}")
    bins = config.model_bins
    mixture = tf.convert_to_tensor(mixture_stft, tf.complex64)[:, :, :bins]
    references = tf.convert_to_tensor(source_stfts, tf.complex64)[:, :, :bins]
    # Patches shorter than a window are one window.
    window_frames = tf.minimum(window_frames, tf.shape(mixture)[1])
    estimates = model_band_stems(masks, mixture, config, inference)
    if inference.residual_last_stem:
        estimates[config.stems[-1]] = mixture - tf.add_n(list(estimates.values()))
    mixture_energy = tf.reduce_sum(_window_sums(_energy(mixture), window_frames), axis=-1)
    losses = []
    for stem, estimate in estimates.items():
        reference = references[..., config.stems.index(stem)]
        cross = _window_sums(reference * tf.math.conj(estimate), window_frames)
        projected = _energy(cross) / (_window_sums(_energy(estimate), window_frames) + 1e-8)
        error = _window_sums(_energy(reference), window_frames) - projected
        error = tf.reduce_sum(tf.maximum(error, 0.0), axis=-1)
        losses.append(
            tf.math.log(error + floor * mixture_energy + 1e-8) - tf.math.log(mixture_energy + 1e-8)
        )
    return tf.reduce_mean(tf.stack(losses))
