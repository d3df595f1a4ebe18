"""DSP core: exact inversion, linearity, masks, seamless chunk joins and graph/SavedModel use.

These properties are what training and serving rely on, so each is checked numerically rather
than by inspecting code: a silent off-by-one in padding would show up as a click in every song.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from vocalsep.audio import dsp

SAMPLE_RATE = 44100
DEFAULT = dsp.StftConfig()
SMALL = dsp.StftConfig(n_fft=1024, hop_length=256)
MEDIUM = dsp.StftConfig(n_fft=2048, hop_length=512)
AWKWARD_LENGTHS = (1, 7, 1023, 1024, 4095, 4096, 4097, SAMPLE_RATE + 3, 3 * SAMPLE_RATE + 17)
WAVEFORM_SPEC = tf.TensorSpec([None, 2], tf.float32)


def _noise(length: int, seed: int = 0, channels: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((length, channels)).astype(np.float32)


def _relative_error(expected: np.ndarray, actual: tf.Tensor | np.ndarray) -> float:
    return float(np.linalg.norm(expected - np.asarray(actual)) / np.linalg.norm(expected))


def _sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2)))


def _join_regions(length: int, chunk_length: int, overlap: int) -> list[slice]:
    """Input samples within one overlap of every crossfade, where a join bug would show."""
    stride = chunk_length - overlap
    return [
        slice(max(k * stride - 2 * overlap, 0), min(k * stride + overlap, length))
        for k in range(1, dsp.num_chunks(length, chunk_length, overlap))
        if k * stride - 2 * overlap < length
    ]


@pytest.mark.parametrize(
    "config", [DEFAULT, SMALL, MEDIUM], ids=["4096-1024", "1024-256", "2048-512"]
)
@pytest.mark.parametrize("length", AWKWARD_LENGTHS)
def test_istft_inverts_stft_for_awkward_lengths(config: dsp.StftConfig, length: int) -> None:
    waveform = _noise(length, seed=length)
    spectrogram = dsp.stft(waveform, config)
    assert spectrogram.shape == (dsp.num_frames(length, config), config.num_bins, 2)
    assert spectrogram.dtype == tf.complex64
    assert _relative_error(waveform, dsp.istft(spectrogram, config, length)) < 1e-5


@pytest.mark.parametrize("window", ["sqrt_hann", "hamming"])
def test_other_windows_invert_exactly(window: str) -> None:
    config = dsp.StftConfig(n_fft=1024, hop_length=512, window=window)
    waveform = _noise(5001)
    restored = dsp.istft(dsp.stft(waveform, config), config, 5001)
    assert _relative_error(waveform, restored) < 1e-5


def test_round_trip_keeps_leading_batch_dimensions() -> None:
    batch = _noise(2 * 3 * 3001).reshape(2, 3, 3001, 2)
    spectrogram = dsp.stft(batch, SMALL)
    assert spectrogram.shape == (2, 3, dsp.num_frames(3001, SMALL), SMALL.num_bins, 2)
    assert _relative_error(batch, dsp.istft(spectrogram, SMALL, 3001)) < 1e-5
    # Each item is transformed on its own: batching changes nothing.
    np.testing.assert_allclose(dsp.stft(batch[1, 2], SMALL), spectrogram[1, 2], atol=1e-4)


def test_stft_is_linear_so_sources_can_be_remixed_in_the_spectrogram() -> None:
    first, second = _noise(10007, seed=1), _noise(10007, seed=2)
    mixed = dsp.stft(first + second, DEFAULT)
    summed = dsp.stft(first, DEFAULT) + dsp.stft(second, DEFAULT)
    assert _relative_error(mixed.numpy(), summed) < 1e-6


def test_frame_count_and_padding_agree_with_the_transform() -> None:
    for length in [*range(1, 2600, 37), *AWKWARD_LENGTHS[:7]]:
        frames = dsp.num_frames(length, SMALL)
        padded = dsp.padded_length(length, SMALL)
        assert dsp.stft(np.zeros((length, 2), np.float32), SMALL).shape[0] == frames
        assert padded == (frames - 1) * SMALL.hop_length + SMALL.n_fft
        assert (padded - SMALL.n_fft) % SMALL.hop_length == 0
        assert padded >= length + 2 * (SMALL.n_fft - SMALL.hop_length)
        assert int(dsp.num_frames(tf.constant(length), SMALL)) == frames


def test_sine_at_a_bin_centre_lands_in_that_bin() -> None:
    bin_index, length = 37, 16 * SMALL.n_fft
    time = np.arange(length)
    sine = np.sin(2 * np.pi * bin_index * time / SMALL.n_fft).astype(np.float32)
    magnitudes = dsp.magnitude(dsp.stft(np.stack([sine, 0.5 * sine], axis=-1), SMALL)).numpy()
    overlaps = SMALL.n_fft // SMALL.hop_length
    interior = magnitudes[overlaps:-overlaps]  # frames lying wholly inside the sine
    assert (interior.argmax(axis=1) == bin_index).all()
    # A periodic Hann window leaks a bin-centred sine into the two neighbouring bins only.
    far_bins = np.delete(interior, [bin_index - 1, bin_index, bin_index + 1], axis=1)
    assert far_bins.max() < 1e-3 * interior.max()
    np.testing.assert_allclose(interior[..., 1], 0.5 * interior[..., 0], rtol=1e-4)


@pytest.mark.parametrize(
    ("n_fft", "hop_length", "window"),
    [(4096, 1000, "hann"), (1024, 1024, "hann"), (0, 1, "hann"), (1024, 256, "kaiser")],
)
def test_config_rejects_settings_that_cannot_reconstruct(
    n_fft: int, hop_length: int, window: str
) -> None:
    with pytest.raises(ValueError):
        dsp.StftConfig(n_fft=n_fft, hop_length=hop_length, window=window)


def test_istft_refuses_a_length_that_does_not_match_the_frames() -> None:
    spectrogram = dsp.stft(_noise(5000), SMALL)
    with pytest.raises(tf.errors.InvalidArgumentError):
        dsp.istft(spectrogram, SMALL, 100)


@pytest.mark.parametrize("power", [1.0, 2.0, 0.5])
def test_ratio_masks_sum_to_one(power: float) -> None:
    rng = np.random.default_rng(3)
    source_magnitudes = np.abs(rng.standard_normal((20, 65, 2, 3))).astype(np.float32)
    masks = dsp.ratio_masks(source_magnitudes, power=power).numpy()
    assert masks.min() >= 0
    np.testing.assert_allclose(masks.sum(axis=-1), 1.0, atol=1e-6)


def test_silence_is_split_evenly_and_stays_silent() -> None:
    masks = dsp.ratio_masks(tf.zeros([4, 9, 2, 2]), power=2.0)
    np.testing.assert_allclose(masks, 0.5)
    silent_mixture = tf.zeros([4, 9, 2], tf.complex64)
    assert not np.any(dsp.apply_mask(silent_mixture[..., tf.newaxis], masks).numpy())


def test_oracle_masks_separate_better_than_the_mixture() -> None:
    time = np.arange(3 * SMALL.n_fft * 8) / SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * 220 * harmonic * time) / harmonic for harmonic in (1, 2, 3))
    voice = np.stack([tone, 0.8 * tone], axis=-1).astype(np.float32)
    noise = 0.5 * _noise(len(time), seed=4)
    sources = [voice, noise]
    mixture_spectrogram = dsp.stft(voice + noise, SMALL)
    source_magnitudes = tf.stack([dsp.magnitude(dsp.stft(s, SMALL)) for s in sources], axis=-1)
    masks = dsp.ratio_masks(source_magnitudes, power=2.0)
    for index, source in enumerate(sources):
        estimate = dsp.istft(
            dsp.apply_mask(mixture_spectrogram, masks[..., index]), SMALL, len(time)
        ).numpy()
        assert _sdr(source, estimate) > _sdr(source, voice + noise) + 10


CHUNK_LENGTH, OVERLAP = 1000, 150


@pytest.mark.parametrize("chunks_per_batch", [1, 3])
@pytest.mark.parametrize("length", [1, 37, CHUNK_LENGTH, 11 * CHUNK_LENGTH + 13])
def test_identity_through_chunks_reproduces_the_input(length: int, chunks_per_batch: int) -> None:
    waveform = _noise(length, seed=length)
    restored = dsp.chunked_map(
        waveform, lambda chunk: chunk, CHUNK_LENGTH, OVERLAP, chunks_per_batch
    ).numpy()
    assert restored.shape == waveform.shape
    assert np.abs(restored - waveform).max() < 1e-6


def test_identity_is_exact_at_the_edges_with_a_one_second_crossfade() -> None:
    """The song's first and last samples lie in a lone chunk ramp and are divided by it; with
    a long ramp the smallest weights must not round to zero (they would give inf or NaN)."""
    waveform = _noise(3 * SAMPLE_RATE + 5, seed=2)
    restored = dsp.chunked_map(waveform, lambda chunk: chunk, 2 * SAMPLE_RATE, SAMPLE_RATE // 2)
    np.testing.assert_allclose(restored.numpy(), waveform, atol=1e-5)


def test_whole_chunks_of_a_song_are_the_songs_own_chunks() -> None:
    """A block starting on the chunk grid and holding whole chunks sees exactly the song's
    chunks, so blocks crossfaded over one overlap rebuild the song (what Separator relies on)."""
    stride = CHUNK_LENGTH - OVERLAP
    waveform = _noise(9 * stride + 77, seed=4)

    def fn(chunk: tf.Tensor) -> tf.Tensor:
        # Depends on the whole chunk, so a chunk cut differently would give a different output.
        return chunk * tf.reduce_mean(tf.abs(chunk), axis=[1, 2], keepdims=True)

    song = dsp.chunked_map(waveform, fn, CHUNK_LENGTH, OVERLAP).numpy()
    block = waveform[2 * stride : 5 * stride + OVERLAP]
    assert dsp.num_chunks(len(block), CHUNK_LENGTH, OVERLAP) == 3
    inner = dsp.chunked_map(block, fn, CHUNK_LENGTH, OVERLAP).numpy()
    # Away from the block's edges (where the song blends in neighbouring chunks) they agree.
    np.testing.assert_allclose(
        inner[OVERLAP : len(block) - OVERLAP], song[2 * stride + OVERLAP : 5 * stride], atol=1e-6
    )


def test_no_error_at_any_chunk_join() -> None:
    length = 11 * CHUNK_LENGTH + 13
    waveform = _noise(length, seed=5)
    restored = dsp.chunked_map(waveform, lambda chunk: chunk, CHUNK_LENGTH, OVERLAP).numpy()
    joins = _join_regions(length, CHUNK_LENGTH, OVERLAP)
    assert len(joins) == dsp.num_chunks(length, CHUNK_LENGTH, OVERLAP) - 1 >= 12
    for join in joins:
        assert np.abs(restored[join] - waveform[join]).max() < 1e-6, join


def test_constant_gain_has_no_bumps_at_joins() -> None:
    time = np.arange(7 * CHUNK_LENGTH + 321) / SAMPLE_RATE
    sine = np.sin(2 * np.pi * 440 * time).astype(np.float32)
    waveform = np.stack([sine, -sine], axis=-1)
    halved = dsp.chunked_map(waveform, lambda chunk: 0.5 * chunk, CHUNK_LENGTH, OVERLAP, 2)
    np.testing.assert_allclose(halved, 0.5 * waveform, rtol=0, atol=1e-6)


def test_spectrogram_round_trip_per_chunk_with_two_outputs() -> None:
    length = 5 * 4096 + 777
    waveform = _noise(length, seed=6)

    def separate(chunk: tf.Tensor) -> dict[str, tf.Tensor]:
        spectrogram = dsp.stft(chunk, SMALL)
        unit_mask = tf.ones_like(dsp.magnitude(spectrogram))
        resynthesised = dsp.istft(dsp.apply_mask(spectrogram, unit_mask), SMALL, tf.shape(chunk)[1])
        return {"vocals": resynthesised, "accompaniment": chunk - resynthesised}

    outputs = dsp.chunked_map(
        waveform, separate, chunk_length=4096, overlap=512, chunks_per_batch=2
    )
    assert set(outputs) == {"vocals", "accompaniment"}
    assert _relative_error(waveform, outputs["vocals"]) < 1e-5
    assert np.abs(outputs["vocals"].numpy() - waveform).max() < 1e-5
    assert np.abs(outputs["accompaniment"].numpy()).max() < 1e-5


@pytest.mark.parametrize(
    ("chunk_length", "overlap", "chunks_per_batch"),
    [(100, 50, 1), (100, 60, 1), (100, -1, 1), (0, 0, 1), (100, 10, 0), (100.0, 10, 1)],
)
def test_chunking_rejects_bad_arguments(
    chunk_length: int, overlap: int, chunks_per_batch: int
) -> None:
    with pytest.raises(ValueError):
        dsp.chunked_map(_noise(10), lambda chunk: chunk, chunk_length, overlap, chunks_per_batch)


def test_graph_mode_with_unknown_lengths_traces_once() -> None:
    @tf.function(input_signature=[WAVEFORM_SPEC])
    def round_trip(waveform: tf.Tensor) -> tf.Tensor:
        spectrogram = dsp.stft(waveform, SMALL)
        return dsp.istft(spectrogram, SMALL, tf.shape(waveform)[0])

    @tf.function(input_signature=[WAVEFORM_SPEC])
    def chunked(waveform: tf.Tensor) -> tf.Tensor:
        return dsp.chunked_map(waveform, lambda chunk: chunk, CHUNK_LENGTH, OVERLAP, 2)

    spectrogram_spec = tf.function(lambda w: dsp.stft(w, SMALL)).get_concrete_function(
        WAVEFORM_SPEC
    )
    assert spectrogram_spec.output_shapes.as_list() == [None, SMALL.num_bins, 2]
    for length in (5, 9000):
        waveform = _noise(length, seed=length)
        assert _relative_error(waveform, round_trip(waveform)) < 1e-5
        assert np.abs(chunked(waveform).numpy() - waveform).max() < 1e-6
    assert round_trip.experimental_get_tracing_count() == 1
    assert chunked.experimental_get_tracing_count() == 1


class _ChunkedIdentity(tf.Module):
    @tf.function(input_signature=[WAVEFORM_SPEC])
    def separate(self, waveform: tf.Tensor) -> dict[str, tf.Tensor]:
        def passthrough(chunk: tf.Tensor) -> dict[str, tf.Tensor]:
            resynthesised = dsp.istft(dsp.stft(chunk, SMALL), SMALL, tf.shape(chunk)[1])
            return {"identity": chunk, "resynthesised": resynthesised}

        return dsp.chunked_map(waveform, passthrough, CHUNK_LENGTH, OVERLAP, 2)


def test_chunked_map_survives_saved_model_export(tmp_path: Path) -> None:
    module = _ChunkedIdentity()
    tf.saved_model.save(module, str(tmp_path), signatures=module.separate)
    serving_fn = tf.saved_model.load(str(tmp_path)).signatures["serving_default"]
    for length in (3, 4321):
        waveform = _noise(length, seed=length)
        outputs = serving_fn(waveform=tf.constant(waveform))
        assert np.abs(outputs["identity"].numpy() - waveform).max() < 1e-6
        assert _relative_error(waveform, outputs["resynthesised"]) < 1e-5
