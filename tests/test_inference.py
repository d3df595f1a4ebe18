"""Masks to stems: every inference setting, on any frame count, against plain references."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from vocalsep.model import inference, unet
from vocalsep.model.inference import InferenceConfig

TINY = unet.UNetConfig.tiny()
ZEROS, ONES = np.zeros(TINY.model_bins), np.ones(TINY.model_bins)


@pytest.fixture(scope="module")
def tiny_network() -> inference.NetworkFn:
    keras.utils.set_random_seed(0)
    return inference.keras_network_fn(unet.build_unet(TINY), TINY)


def _random_stft(frames: int, seed: int = 0, channels: int = 2, bins: int = 0) -> tf.Tensor:
    rng = np.random.default_rng(seed)
    shape = (1, frames, bins or TINY.stft.num_bins, channels)
    return tf.complex(
        rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
    )


def _separate(
    network: inference.NetworkFn, mixture: tf.Tensor, **settings: object
) -> dict[str, np.ndarray]:
    stems = inference.separate_spectrogram(
        network, mixture, ZEROS, ONES, TINY, InferenceConfig(**settings)
    )
    return {stem: value.numpy() for stem, value in stems.items()}


@pytest.mark.parametrize("frames", [1, 5, TINY.frame_multiple, 45])
def test_ratio_masks_split_the_mixture_on_any_frame_count(
    tiny_network: inference.NetworkFn, frames: int
) -> None:
    mixture = _random_stft(frames, seed=frames)
    stems = _separate(tiny_network, mixture, mask_power=2.0, residual_last_stem=False)
    assert set(stems) == set(TINY.stems)
    for stem in stems.values():
        assert stem.shape == mixture.shape and stem.dtype == np.complex64
    np.testing.assert_allclose(sum(stems.values()), mixture, atol=1e-5)


def test_a_residual_last_stem_is_left_to_the_caller(tiny_network: inference.NetworkFn) -> None:
    mixture = _random_stft(TINY.patch_frames)
    residual = _separate(tiny_network, mixture)
    masked = _separate(tiny_network, mixture, residual_last_stem=False)
    assert list(residual) == list(TINY.stems[:-1])
    np.testing.assert_allclose(residual["vocals"], masked["vocals"], atol=1e-6)


def test_bins_above_the_model_reuse_the_top_bins_share_or_are_silent(
    tiny_network: inference.NetworkFn,
) -> None:
    mixture = _random_stft(TINY.patch_frames)
    repeated = _separate(tiny_network, mixture)["vocals"]
    vocals_share = np.abs(repeated) / np.abs(mixture.numpy())
    # The Nyquist bin is separated (not passed through or muted) with the top bin's split.
    np.testing.assert_allclose(vocals_share[:, :, -1], vocals_share[:, :, -2], rtol=1e-4)
    assert np.ptp(vocals_share[:, :, -1]) > 1e-3
    silent = _separate(tiny_network, mixture, band_extension="zeros", residual_last_stem=False)
    for stem in silent.values():
        assert np.all(stem[:, :, TINY.model_bins :] == 0)
        assert np.all(np.abs(stem[:, :, : TINY.model_bins]) > 0)


class _Recording:
    """A network that returns fixed masks and remembers which stems it was asked for."""

    def __init__(self, masks: Mapping[str, np.ndarray]) -> None:
        self.masks = masks
        self.asked: list[tuple[str, ...]] = []

    def __call__(self, features: tf.Tensor, stems: Sequence[str]) -> dict[str, tf.Tensor]:
        self.asked.append(tuple(stems))
        return {stem: tf.constant(self.masks[stem]) for stem in stems}


def _fixed_masks(frames: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    shape = (1, frames, TINY.model_bins, 2)
    return {stem: rng.uniform(0.05, 0.95, shape).astype(np.float32) for stem in TINY.stems}


def test_direct_masks_run_only_the_networks_of_the_masked_stems() -> None:
    frames = TINY.frame_multiple
    network = _Recording(_fixed_masks(frames))
    mixture = _random_stft(frames)
    stems = _separate(network, mixture, mask_type="direct")
    assert network.asked == [("vocals",)]
    expected = mixture.numpy()[..., : TINY.model_bins, :] * network.masks["vocals"]
    np.testing.assert_allclose(stems["vocals"][..., : TINY.model_bins, :], expected, rtol=1e-6)
    _separate(network, mixture)  # ratio masks need every stem's network
    assert network.asked[-1] == TINY.stems


def test_ratio_masks_follow_the_exponent() -> None:
    frames = TINY.frame_multiple
    masks = _fixed_masks(frames)
    mixture = _random_stft(frames)
    stems = _separate(_Recording(masks), mixture, mask_power=1.5)
    weights = {stem: mask**1.5 + 1e-10 for stem, mask in masks.items()}
    share = weights["vocals"] / (weights["vocals"] + weights["accompaniment"])
    np.testing.assert_allclose(
        stems["vocals"][..., : TINY.model_bins, :],
        mixture.numpy()[..., : TINY.model_bins, :] * share,
        rtol=1e-5,
    )


def test_channel_swap_average_averages_the_masks_of_both_channel_orders() -> None:
    frames = TINY.frame_multiple

    def lopsided(features: tf.Tensor, stems: Sequence[str]) -> dict[str, tf.Tensor]:
        # Both channels' masks follow the left channel only: a network that is not symmetric.
        left = tf.sigmoid(features[..., :1]) * tf.ones_like(features)
        return {"vocals": left, "accompaniment": 1 - left}

    mixture = _random_stft(frames)
    stems = _separate(lopsided, mixture, channel_swap_average=True, mask_type="direct")
    # The tiny Jansson network's features: log1p magnitudes (statistics 0 and 1 here).
    features = np.log1p(np.abs(mixture.numpy()[..., : TINY.model_bins, :]))
    left, right = (1 / (1 + np.exp(-features[..., index : index + 1])) for index in (0, 1))
    expected = mixture.numpy()[..., : TINY.model_bins, :] * (left + right) / 2
    np.testing.assert_allclose(stems["vocals"][..., : TINY.model_bins, :], expected, rtol=1e-5)


def _norbert_wiener(estimates: np.ndarray, mixture: np.ndarray, iterations: int) -> np.ndarray:
    """norbert's ``expectation_maximization`` (with ``wiener``'s scaling), written plainly in
    numpy for one song: estimates ``[frames, bins, channels, sources]``, mixture without the
    sources axis."""
    eps = np.finfo(np.float32).eps
    scale = max(1.0, np.abs(mixture).max() / 10.0)
    mixture, estimates = mixture / scale, estimates / scale
    channels, sources = mixture.shape[-1], estimates.shape[-1]
    for _ in range(iterations):
        powers = np.mean(np.abs(estimates) ** 2, axis=2)
        covariances = [
            np.einsum("tfi,tfk->fik", estimates[..., j], np.conj(estimates[..., j]))
            / (eps + powers[..., j].sum(axis=0))[:, None, None]
            for j in range(sources)
        ]
        mixture_covariance = sum(
            powers[..., j, None, None] * covariances[j][None] for j in range(sources)
        ) + np.sqrt(eps) * np.eye(channels)
        inverse = np.linalg.inv(mixture_covariance)
        estimates = np.stack(
            [
                np.einsum(
                    "tfik,tfk->tfi",
                    powers[..., j, None, None] * covariances[j][None] @ inverse,
                    mixture,
                )
                for j in range(sources)
            ],
            axis=-1,
        )
    return estimates * scale


@pytest.mark.parametrize("iterations", [1, 2])
def test_wiener_filter_equals_norberts_algorithm(iterations: int) -> None:
    mixture = _random_stft(12, seed=1, bins=9)
    rng = np.random.default_rng(2)
    shares = rng.uniform(0.1, 0.9, (1, 12, 9, 2)).astype(np.float32)
    estimates = {"vocals": mixture * shares, "accompaniment": mixture * (1 - shares)}
    filtered = inference.wiener(estimates, mixture, iterations)
    expected = _norbert_wiener(
        np.stack([estimates["vocals"][0], estimates["accompaniment"][0]], axis=-1),
        mixture.numpy()[0],
        iterations,
    )
    np.testing.assert_allclose(filtered["vocals"][0], expected[..., 0], rtol=2e-3, atol=2e-5)
    np.testing.assert_allclose(filtered["accompaniment"][0], expected[..., 1], rtol=2e-3, atol=2e-5)
    # Filters that sum to (almost) the identity: the sources still add up to the mixture.
    np.testing.assert_allclose(
        filtered["vocals"] + filtered["accompaniment"], mixture, rtol=1e-2, atol=1e-3
    )


def test_wiener_filtering_in_separation_changes_the_split(
    tiny_network: inference.NetworkFn,
) -> None:
    mixture = _random_stft(TINY.patch_frames)
    plain = _separate(tiny_network, mixture)
    filtered = _separate(tiny_network, mixture, wiener_iterations=1)
    assert list(filtered) == ["vocals"]
    assert np.abs(filtered["vocals"] - plain["vocals"]).max() > 1e-3


@pytest.mark.parametrize(
    "overrides",
    [
        {"mask_type": "soft"},
        {"band_extension": "mirror"},
        {"wiener_iterations": -1},
        {"wiener_iterations": 1, "mask_type": "direct"},
        {"storage_dtype": "int8"},
        {"mask_power": 0.0},
    ],
)
def test_config_rejects_unknown_settings(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        InferenceConfig(**overrides)


def test_config_round_trips_and_spleeters_settings() -> None:
    config = InferenceConfig(wiener_iterations=1, storage_dtype="float16")
    assert InferenceConfig.from_dict(dataclasses.asdict(config)) == config
    spleeter = InferenceConfig.spleeter()
    assert (spleeter.mask_power, spleeter.band_extension, spleeter.residual_last_stem) == (
        2.0,
        "zeros",
        False,
    )
    with pytest.raises(ValueError, match="unknown inference settings"):
        InferenceConfig.from_dict({"mask_exponent": 2})


def _reference_separation_loss(
    references: Mapping[str, np.ndarray],
    estimates: Mapping[str, np.ndarray],
    mixture: np.ndarray,
    window_frames: int,
    floor: float,
) -> float:
    """BSS Eval v4's distortion per window, written plainly: the reference minus its
    projection onto the estimate's span, one complex gain per bin and window."""
    losses = []
    windows = mixture.shape[1] // window_frames
    for stem, estimate in estimates.items():
        reference = references[stem]
        for batch in range(mixture.shape[0]):
            for window in range(windows):
                frames = slice(window * window_frames, (window + 1) * window_frames)
                error = 0.0
                for bin_ in range(mixture.shape[2]):
                    ref = reference[batch, frames, bin_].ravel()
                    est = estimate[batch, frames, bin_].ravel()
                    estimate_energy = np.vdot(est, est).real
                    gain = np.vdot(est, ref) / (estimate_energy + 1e-8)
                    error += max(np.vdot(ref, ref).real - abs(gain) ** 2 * estimate_energy, 0)
                energy = np.sum(np.abs(mixture[batch, frames]) ** 2)
                losses.append(np.log(error + floor * energy + 1e-8) - np.log(energy + 1e-8))
    return float(np.mean(losses))


def _two_sources(frames: int) -> tuple[tf.Tensor, tf.Tensor]:
    vocals = _random_stft(frames, seed=1, bins=TINY.model_bins)
    # An accompaniment with a different spectral shape, so the oracle masks are not flat.
    tilt = np.linspace(0.1, 3.0, TINY.model_bins, dtype=np.float32)[None, None, :, None]
    accompaniment = _random_stft(frames, seed=2, bins=TINY.model_bins) * tilt
    return vocals, accompaniment


def test_separation_loss_is_bss_evals_windowed_distortion_of_the_served_stems() -> None:
    vocals, accompaniment = _two_sources(frames=12)
    mixture = vocals + accompaniment
    masks = {"vocals": tf.abs(vocals), "accompaniment": tf.abs(accompaniment)}
    served = InferenceConfig(mask_power=0.5, residual_last_stem=True)
    loss = inference.separation_loss(
        masks, mixture, tf.stack([vocals, accompaniment], -1), TINY, served, window_frames=4
    )
    share = (np.abs(vocals.numpy()) + 1e-10) ** 0.5
    share = share / (share + (np.abs(accompaniment.numpy()) + 1e-10) ** 0.5)
    vocal_estimate = share * mixture.numpy()
    expected = _reference_separation_loss(
        {"vocals": vocals.numpy(), "accompaniment": accompaniment.numpy()},
        {"vocals": vocal_estimate, "accompaniment": mixture.numpy() - vocal_estimate},
        mixture.numpy(),
        window_frames=4,
        floor=1e-3,
    )
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4, atol=1e-4)


def test_separation_loss_ranks_masks_and_forgives_a_gain() -> None:
    vocals, accompaniment = _two_sources(frames=8)
    mixture, sources = vocals + accompaniment, tf.stack([vocals, accompaniment], -1)
    served = InferenceConfig(mask_power=1.0, residual_last_stem=False)

    def loss(vocal_mask: tf.Tensor, accompaniment_mask: tf.Tensor) -> float:
        masks = {"vocals": vocal_mask, "accompaniment": accompaniment_mask}
        return float(inference.separation_loss(masks, mixture, sources, TINY, served, 4))

    oracle = loss(tf.abs(vocals), tf.abs(accompaniment))
    flat = loss(tf.ones_like(tf.abs(vocals)), tf.ones_like(tf.abs(vocals)))
    swapped = loss(tf.abs(accompaniment), tf.abs(vocals))
    assert oracle < flat < swapped
    # A flat split is a per-bin gain of the mixture: it only costs what the mixture holds
    # that is not the stem, exactly as a 0.9 split does.
    assert loss(9 * tf.ones_like(tf.abs(vocals)), tf.ones_like(tf.abs(vocals))) == pytest.approx(
        flat, abs=1e-5
    )


def test_separation_loss_has_finite_gradients_on_silence_through_the_wiener_filter() -> None:
    vocals, accompaniment = _two_sources(frames=8)
    vocals = tf.zeros_like(vocals)  # a silent stem and silent masks: the worst case for NaNs
    mixture, sources = vocals + accompaniment, tf.stack([vocals, accompaniment], -1)
    vocal_mask = tf.Variable(tf.zeros_like(tf.abs(accompaniment)))
    accompaniment_mask = tf.Variable(tf.abs(accompaniment))
    served = InferenceConfig(mask_power=0.5, wiener_iterations=1)
    with tf.GradientTape() as tape:
        loss = inference.separation_loss(
            {"vocals": vocal_mask, "accompaniment": accompaniment_mask},
            mixture,
            sources,
            TINY,
            served,
            window_frames=4,
        )
    gradients = tape.gradient(loss, [vocal_mask, accompaniment_mask])
    assert np.isfinite(float(loss))
    assert all(np.isfinite(gradient.numpy()).all() for gradient in gradients)
    assert any(np.abs(gradient.numpy()).max() > 0 for gradient in gradients)
