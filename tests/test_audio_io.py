"""Tests for vocalsep.audio.io: every input is generated under tmp_path, nothing is downloaded."""

from __future__ import annotations

import dataclasses
import gc
import os
import shutil
import struct
import subprocess
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import pytest
import soundfile as sf
import soxr

from vocalsep.audio import io
from vocalsep.errors import (
    AudioError,
    AudioFileNotFoundError,
    AudioWriteError,
    EmptyAudioError,
    FfmpegNotFoundError,
    InvalidSamplesError,
    NotAudioError,
    TruncatedAudioError,
    UnsupportedFormatError,
)

RATE = io.MODEL_SAMPLE_RATE
HAVE_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
needs_ffmpeg = pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg/ffprobe not installed")


# ---------------------------------------------------------------------------------------------
# Helpers


def sine(frequency: float, seconds: float, rate: int = RATE, channels: int = 1) -> np.ndarray:
    """A [frames, channels] float32 sine at half scale, the same in every channel."""
    times = np.arange(round(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * frequency * times)
    return np.repeat(wave[:, np.newaxis], channels, axis=1).astype(np.float32)


def dominant_frequency(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio.mean(axis=1)))
    return float(np.argmax(spectrum) * rate / len(audio))


def ffmpeg(*args: str) -> None:
    """Run ffmpeg to build a fixture; its stderr is shown if it fails."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True, capture_output=True
    )


def lavfi_sine(frequency: int, seconds: float, rate: int = RATE) -> list[str]:
    return [
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency={frequency}:sample_rate={rate}:duration={seconds}",
    ]


def assert_error(
    error: pytest.ExceptionInfo[AudioError], path: Path, *cause_fragments: str
) -> None:
    """The message must let a user act: it names the file and says what is wrong."""
    message = str(error.value)
    assert path.name in message
    for fragment in cause_fragments:
        assert fragment.lower() in message.lower(), message


def open_file_count() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def cut(source: Path, target: Path, keep_fraction: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep_fraction)])
    return target


def minimal_png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def stereo_wav(tmp_path: Path) -> Path:
    path = tmp_path / "tone.wav"
    sf.write(path, np.concatenate([sine(440, 1.0), sine(660, 1.0)], axis=1), RATE)
    return path


@pytest.fixture(scope="module")
def m4a_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAVE_FFMPEG:
        pytest.skip("ffmpeg/ffprobe not installed")
    path = tmp_path_factory.mktemp("m4a") / "tone.m4a"
    ffmpeg(*lavfi_sine(440, 2), "-ac", "2", "-c:a", "aac", "-b:a", "128k", str(path))
    return path


STEM_FREQUENCIES = (220, 330, 550, 770, 990)


@pytest.fixture(scope="module")
def stem_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MUSDB-like .stem.mp4: five stereo AAC streams, each a different sine."""
    if not HAVE_FFMPEG:
        pytest.skip("ffmpeg/ffprobe not installed")
    path = tmp_path_factory.mktemp("stems") / "song.stem.mp4"
    inputs = [arg for frequency in STEM_FREQUENCIES for arg in lavfi_sine(frequency, 1)]
    maps = [arg for index in range(len(STEM_FREQUENCIES)) for arg in ("-map", f"{index}:a")]
    ffmpeg(*inputs, *maps, "-ac", "2", "-c:a", "aac", "-b:a", "128k", str(path))
    return path


@pytest.fixture
def no_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate a machine without ffmpeg: PATH points at an empty directory."""
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))


# ---------------------------------------------------------------------------------------------
# Round trips and formats


@pytest.mark.parametrize(
    ("suffix", "subtype", "tolerance"),
    [
        (".wav", "PCM_16", 1 / 2**15),
        (".wav", "PCM_24", 1 / 2**23),
        (".wav", "FLOAT", 0.0),
        (".flac", "PCM_16", 1 / 2**15),
        (".flac", "PCM_24", 1 / 2**23),
    ],
)
def test_lossless_round_trip(tmp_path: Path, suffix: str, subtype: str, tolerance: float) -> None:
    audio = np.random.default_rng(0).uniform(-0.9, 0.9, (5000, 2)).astype(np.float32)
    path = tmp_path / f"out{suffix}"
    io.write_audio(path, audio, RATE, subtype=subtype)
    assert sf.info(path).subtype == subtype
    decoded = io.read_audio(path)
    assert decoded.dtype == np.float32
    assert decoded.shape == audio.shape
    np.testing.assert_allclose(decoded, audio, rtol=0, atol=tolerance)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_sixteen_bit_files_round_to_the_nearest_step(tmp_path: Path, suffix: str) -> None:
    """Our own int16 conversion: nearest step (half a step at most), no bias, clipped ends."""
    audio = np.random.default_rng(1).uniform(-1, 1, (20000, 2)).astype(np.float32)
    audio[:4, 0] = [1.0, -1.0, 1.5, -1.5]
    io.write_audio(tmp_path / f"out{suffix}", audio, RATE)
    steps = sf.read(tmp_path / f"out{suffix}", dtype="int16")[0]
    np.testing.assert_array_equal(steps[:4, 0], [32767, -32768, 32767, -32768])
    error = steps[4:] / 2**15 - audio[4:]
    assert np.abs(error).max() <= 0.5 / 2**15
    assert abs(error.mean()) < 0.01 / 2**15


def test_pcm16_conversion_matches_libsndfile_flac(tmp_path: Path) -> None:
    """libsndfile's FLAC writer rounds to nearest with the same 2**15 scale."""
    audio = np.random.default_rng(2).uniform(-1, 1, (20000, 2)).astype(np.float32)
    sf.write(tmp_path / "libsndfile.flac", audio, RATE, subtype="PCM_16")
    expected = sf.read(tmp_path / "libsndfile.flac", dtype="int16")[0]
    np.testing.assert_array_equal(io.to_pcm16(audio), expected)


def test_integer_formats_clip_but_float_keeps_range(tmp_path: Path) -> None:
    loud = np.array([[1.5, -2.0], [0.25, -0.25]], dtype=np.float32)
    io.write_audio(tmp_path / "int.wav", loud, RATE)
    io.write_audio(tmp_path / "float.wav", loud, RATE, subtype="FLOAT")
    clipped = io.read_audio(tmp_path / "int.wav")
    np.testing.assert_allclose(clipped, [[1.0, -1.0], [0.25, -0.25]], atol=1 / 2**15)
    np.testing.assert_array_equal(io.read_audio(tmp_path / "float.wav"), loud)


def test_mono_one_dimensional_input_round_trips(tmp_path: Path) -> None:
    mono = sine(440, 0.1)[:, 0]
    io.write_audio(tmp_path / "mono.flac", mono, RATE)
    np.testing.assert_allclose(
        io.read_audio(tmp_path / "mono.flac", channels=None)[:, 0], mono, atol=1 / 2**15
    )


@needs_ffmpeg
def test_mp3_round_trip(tmp_path: Path) -> None:
    audio = np.concatenate([sine(440, 2.0), sine(660, 2.0)], axis=1)
    path = tmp_path / "out.mp3"
    io.write_audio(path, audio, RATE)
    info = io.probe(path)
    assert (info.backend, info.codec, info.sample_rate) == ("ffmpeg", "mp3", RATE)
    decoded = io.read_audio(path)
    # LAME's gapless header normally makes this exact; allow two MP3 frames of padding.
    assert abs(len(decoded) - len(audio)) <= 2 * 1152
    overlap = min(len(decoded), len(audio))
    for channel in range(2):
        correlation = np.corrcoef(decoded[:overlap, channel], audio[:overlap, channel])[0, 1]
        assert correlation > 0.99


@needs_ffmpeg
def test_mp3_with_wav_extension_is_read_by_content(tmp_path: Path) -> None:
    mp3 = tmp_path / "real.mp3"
    io.write_audio(mp3, sine(440, 1.0, channels=2), RATE)
    disguised = tmp_path / "disguised.wav"
    shutil.copy(mp3, disguised)
    decoded = io.read_audio(disguised)
    assert abs(len(decoded) - RATE) <= 2 * 1152
    assert dominant_frequency(decoded, RATE) == pytest.approx(440, abs=2)


@pytest.mark.parametrize(("subtype", "rate"), [("VORBIS", 44100), ("OPUS", 48000)])
def test_ogg_read(tmp_path: Path, subtype: str, rate: int) -> None:
    path = tmp_path / f"tone.{subtype.lower()}"
    sf.write(path, sine(1000, 1.0, rate, channels=2), rate, format="OGG", subtype=subtype)
    decoded = io.read_audio(path)
    assert io.probe(path).backend == "soundfile"
    assert decoded.shape == (RATE, 2)
    assert dominant_frequency(decoded, RATE) == pytest.approx(1000, abs=2)


@needs_ffmpeg
def test_m4a_read_uses_container_length(m4a_file: Path) -> None:
    info = io.probe(m4a_file)
    assert (info.backend, info.codec, info.frames, info.num_streams) == (
        "ffmpeg",
        "aac",
        2 * RATE,
        1,
    )
    decoded = io.read_audio(m4a_file)
    # The decoder emits the final AAC frame's padding too; the container length wins.
    assert decoded.shape == (2 * RATE, 2)
    assert dominant_frequency(decoded, RATE) == pytest.approx(440, abs=2)


@needs_ffmpeg
def test_container_overstating_length_by_priming_is_tolerated(
    m4a_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_probe = io.probe
    overstated = real_probe(m4a_file).frames + 1500  # past the 888 frames of decoder padding

    def overstating_probe(path: Path, stream: int = 0) -> io.AudioInfo:
        return dataclasses.replace(real_probe(path, stream), frames=overstated)

    monkeypatch.setattr(io, "probe", overstating_probe)
    decoded = io.read_audio(m4a_file)
    assert overstated - io.PRIMING_TOLERANCE_FRAMES < len(decoded) < overstated
    assert decoded.flags.owndata  # shrunk in place, not a view of a larger buffer


@needs_ffmpeg
def test_raw_adts_aac_read(tmp_path: Path) -> None:
    path = tmp_path / "tone.aac"
    ffmpeg(*lavfi_sine(440, 1), "-c:a", "aac", str(path))
    assert io.probe(path).frames is None  # ADTS carries no total length
    decoded = io.read_audio(path)
    assert abs(len(decoded) - RATE) <= io.PRIMING_TOLERANCE_FRAMES
    assert dominant_frequency(decoded, RATE) == pytest.approx(440, abs=2)


@needs_ffmpeg
def test_stem_file_streams(stem_file: Path) -> None:
    info = io.probe(stem_file, stream=4)
    assert (info.num_streams, info.stream, info.channels) == (5, 4, 2)
    stems = io.read_stems(stem_file)
    assert len(stems) == len(STEM_FREQUENCIES)
    assert {stem.shape for stem in stems} == {(RATE, 2)}
    for stem, frequency in zip(stems, STEM_FREQUENCIES, strict=True):
        assert dominant_frequency(stem, RATE) == pytest.approx(frequency, abs=2)
    vocals = io.read_audio(stem_file, stream=4)
    np.testing.assert_array_equal(vocals, stems[4])
    drums, bass = io.read_stems(stem_file, streams=[1, 2])
    np.testing.assert_array_equal(drums, stems[1])
    np.testing.assert_array_equal(bass, stems[2])


@needs_ffmpeg
def test_stems_of_different_lengths_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "misaligned.stem.mp4"
    ffmpeg(*lavfi_sine(220, 1), *lavfi_sine(440, 2), "-map", "0:a", "-map", "1:a", str(path))
    with pytest.raises(TruncatedAudioError) as error:
        io.read_stems(path)
    assert_error(error, path, "stems differ in length")


@needs_ffmpeg
def test_stems_within_priming_tolerance_are_trimmed(tmp_path: Path) -> None:
    path = tmp_path / "nearly.stem.mp4"
    short = 1 - 1000 / RATE
    ffmpeg(*lavfi_sine(220, 1), *lavfi_sine(440, short), "-map", "0:a", "-map", "1:a", str(path))
    declared = [io.probe(path, stream).frames for stream in (0, 1)]
    assert 0 < declared[0] - declared[1] <= io.PRIMING_TOLERANCE_FRAMES
    mixture, other = io.read_stems(path)
    assert len(mixture) == len(other) == declared[1]


# ---------------------------------------------------------------------------------------------
# Resampling and channels


@pytest.mark.parametrize("source_rate", [48000, 16000])
def test_resampling_matches_one_shot_soxr(tmp_path: Path, source_rate: int) -> None:
    audio = sine(1000, 1.5, source_rate, channels=2)
    path = tmp_path / "tone.wav"
    sf.write(path, audio, source_rate, subtype="FLOAT")
    decoded = io.read_audio(path)
    assert len(decoded) == round(len(audio) * RATE / source_rate)
    assert dominant_frequency(decoded, RATE) == pytest.approx(1000, abs=1)
    reference = soxr.resample(audio, source_rate, RATE, quality=io.RESAMPLE_QUALITY)
    np.testing.assert_allclose(decoded, reference, atol=1e-6)


def test_native_rate_and_channels_are_kept_on_request(tmp_path: Path) -> None:
    audio = np.random.default_rng(1).uniform(-0.5, 0.5, (4000, 3)).astype(np.float32)
    path = tmp_path / "three.wav"
    sf.write(path, audio, 22050, subtype="FLOAT")
    np.testing.assert_array_equal(io.read_audio(path, sample_rate=None, channels=None), audio)


def test_mono_is_duplicated_to_stereo(tmp_path: Path) -> None:
    mono = sine(440, 0.5)
    path = tmp_path / "mono.wav"
    sf.write(path, mono, RATE, subtype="FLOAT")
    stereo = io.read_audio(path)
    np.testing.assert_array_equal(stereo, np.concatenate([mono, mono], axis=1))


def test_six_channels_downmix_as_5_1(tmp_path: Path) -> None:
    surround = np.random.default_rng(2).uniform(-0.3, 0.3, (3000, 6)).astype(np.float32)
    path = tmp_path / "surround.wav"
    sf.write(path, surround, RATE, subtype="FLOAT")
    front_left, front_right, centre, _lfe, back_left, back_right = surround.T
    expected = np.stack(
        [
            front_left + 0.7071 * centre + 0.7071 * back_left,
            front_right + 0.7071 * centre + 0.7071 * back_right,
        ],
        axis=1,
    )
    np.testing.assert_allclose(io.read_audio(path), expected, atol=1e-4)
    np.testing.assert_allclose(
        io.read_audio(path, channels=1)[:, 0], expected.mean(axis=1), atol=1e-4
    )


@needs_ffmpeg
def test_ffmpeg_delivers_5_1_in_the_order_the_downmix_assumes(tmp_path: Path) -> None:
    path = tmp_path / "surround.mka"
    frequencies = (200, 300, 400, 500, 600, 700)
    inputs = [arg for frequency in frequencies for arg in lavfi_sine(frequency, 1)]
    join = "join=inputs=6:channel_layout=5.1:map=0.0-FL|1.0-FR|2.0-FC|3.0-LFE|4.0-BL|5.0-BR"
    ffmpeg(*inputs, "-filter_complex", join, "-c:a", "pcm_f32le", str(path))
    assert io.probe(path).backend == "ffmpeg"
    native = io.read_audio(path, channels=None)
    found = [dominant_frequency(native[:, [channel]], RATE) for channel in range(6)]
    assert found == pytest.approx(frequencies, abs=2)


@pytest.mark.parametrize("channel_count", [3, 4, 8])
def test_other_channel_counts_average_even_and_odd(tmp_path: Path, channel_count: int) -> None:
    audio = np.random.default_rng(3).uniform(-0.5, 0.5, (2000, channel_count)).astype(np.float32)
    path = tmp_path / "multi.wav"
    sf.write(path, audio, RATE, subtype="FLOAT")
    expected = np.stack([audio[:, 0::2].mean(axis=1), audio[:, 1::2].mean(axis=1)], axis=1)
    np.testing.assert_allclose(io.read_audio(path), expected, atol=1e-6)


def test_invalid_targets_are_rejected(stereo_wav: Path) -> None:
    with pytest.raises(ValueError, match="channels"):
        io.read_audio(stereo_wav, channels=6)
    with pytest.raises(ValueError, match="block_frames"):
        io.iter_blocks(stereo_wav, block_frames=0)


# ---------------------------------------------------------------------------------------------
# Streaming


def _blocks_match_read_audio(path: Path) -> None:
    blocks = list(io.iter_blocks(path, block_frames=1000))
    assert all(len(block) == 1000 for block in blocks[:-1])
    assert 0 < len(blocks[-1]) <= 1000
    assert all(block.dtype == np.float32 and block.shape[1] == 2 for block in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), io.read_audio(path))


@pytest.mark.parametrize("source_rate", [RATE, 48000])
def test_blocks_concatenate_to_read_audio(tmp_path: Path, source_rate: int) -> None:
    path = tmp_path / "noise.flac"
    noise = np.random.default_rng(4).uniform(-0.5, 0.5, (12345, 2))
    sf.write(path, noise, source_rate)
    _blocks_match_read_audio(path)


@needs_ffmpeg
def test_ffmpeg_blocks_concatenate_to_read_audio(m4a_file: Path) -> None:
    _blocks_match_read_audio(m4a_file)


@pytest.fixture(scope="module")
def ten_minute_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Ten minutes of 48 kHz mono: one WAV (libsndfile) and one Matroska PCM (ffmpeg pipe)."""
    if not HAVE_FFMPEG:
        pytest.skip("ffmpeg/ffprobe not installed")
    directory = tmp_path_factory.mktemp("long")
    paths = [directory / "long.wav", directory / "long.mka"]
    for path in paths:
        ffmpeg(*lavfi_sine(440, 600, rate=48000), "-c:a", "pcm_s16le", str(path))
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1], ids=["soundfile", "ffmpeg"])
def test_long_file_streams_in_bounded_memory(ten_minute_files: list[Path], index: int) -> None:
    path = ten_minute_files[index]
    decoded_bytes = 600 * RATE * 2 * 4  # ten minutes at 44.1 kHz stereo float32: ~212 MB
    frames = 0
    tracemalloc.start()
    try:
        for block in io.iter_blocks(path):
            frames += len(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frames == 600 * RATE
    assert peak < decoded_bytes / 20, f"peak {peak / 1e6:.1f} MB"


@needs_ffmpeg
def test_read_audio_holds_an_mp3_once(tmp_path: Path) -> None:
    """MP3 gives only a duration up front; the whole-file read must still not double up."""
    path = tmp_path / "minute.mp3"
    ffmpeg(*lavfi_sine(440, 60, rate=48000), "-ac", "2", str(path))
    assert io.probe(path).frames is None
    decoded_bytes = 60 * RATE * 2 * 4
    tracemalloc.start()
    try:
        audio = io.read_audio(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert abs(len(audio) - 60 * RATE) < 4096
    assert peak < 1.2 * decoded_bytes, f"peak {peak / 1e6:.1f} MB for {decoded_bytes / 1e6:.1f} MB"


@needs_ffmpeg
@pytest.mark.parametrize("stop", ["close", "drop"])
def test_stopping_early_reaps_ffmpeg(m4a_file: Path, stop: str) -> None:
    me = psutil.Process()
    open_files_before = open_file_count()
    blocks = io.iter_blocks(m4a_file, block_frames=1024)
    next(blocks)
    assert [child.name() for child in me.children()] == ["ffmpeg"]
    if stop == "close":
        blocks.close()
    else:
        del blocks
        gc.collect()
    assert me.children() == []  # killed and waited for: no zombie either
    assert open_file_count() == open_files_before


# ---------------------------------------------------------------------------------------------
# Bad inputs


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.wav"
    with pytest.raises(AudioFileNotFoundError) as error:
        io.read_audio(path)
    assert_error(error, path, "no such file")
    assert isinstance(error.value, FileNotFoundError)


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "album.wav"
    path.mkdir()
    with pytest.raises(AudioFileNotFoundError) as error:
        io.iter_blocks(path)
    assert_error(error, path, "directory")


@needs_ffmpeg
@pytest.mark.parametrize(
    ("name", "content", "cause"),
    [
        ("notes.txt", b"these are lyrics, not audio\n" * 20, "no audio stream"),
        ("noise.wav", np.random.default_rng(5).bytes(5000), "not a recognised audio file"),
        ("cover.png", minimal_png(), "no audio stream"),
    ],
)
def test_not_audio(tmp_path: Path, name: str, content: bytes, cause: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(NotAudioError) as error:
        io.read_audio(path)
    assert_error(error, path, cause)


@needs_ffmpeg
def test_a_text_file_named_mp3_is_called_not_a_recognised_format(tmp_path: Path) -> None:
    """libsndfile says "File does not exist or is not a regular file" of it: it exists."""
    path = tmp_path / "lyrics.mp3"
    path.write_text("Verse one, a song about songs\n")
    with pytest.raises(NotAudioError) as error:
        io.probe(path)
    assert_error(error, path, "(libsndfile: not a recognised audio format; ffprobe: ")
    assert "regular file" not in str(error.value) and "pipe" not in str(error.value)


def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    path.touch()
    with pytest.raises(EmptyAudioError) as error:
        io.read_audio(path)
    assert_error(error, path, "0 bytes")


def test_wav_header_without_data_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "header_only.wav"
    sf.write(path, np.zeros((0, 2), dtype=np.float32), RATE)
    with pytest.raises(EmptyAudioError) as error:
        io.iter_blocks(path)
    assert_error(error, path, "no audio samples")


@pytest.mark.parametrize(
    ("keep_bytes", "cause"),
    [(88_200, "declares 176400 bytes of audio data"), (30, "before the WAV data chunk")],
    ids=["in-data", "in-header"],
)
def test_truncated_wav(stereo_wav: Path, tmp_path: Path, keep_bytes: int, cause: str) -> None:
    path = tmp_path / "cut.wav"
    path.write_bytes(stereo_wav.read_bytes()[:keep_bytes])
    with pytest.raises(TruncatedAudioError) as error:
        io.read_audio(path)
    assert_error(error, path, "truncated", cause)


def test_truncated_flac_raises_mid_stream(stereo_wav: Path, tmp_path: Path) -> None:
    flac = tmp_path / "full.flac"
    sf.write(flac, sf.read(stereo_wav)[0], RATE)
    path = cut(flac, tmp_path / "cut.flac", 0.6)
    blocks_before_error = 0
    with pytest.raises(TruncatedAudioError) as error:
        for _ in io.iter_blocks(path, sample_rate=None, block_frames=4096):
            blocks_before_error += 1
    assert blocks_before_error > 0
    assert_error(error, path, "truncated", "of 44100 frames")


@needs_ffmpeg
def test_m4a_cut_in_half_without_index(m4a_file: Path, tmp_path: Path) -> None:
    path = cut(m4a_file, tmp_path / "cut.m4a", 0.5)  # moov atom is at the end of the file
    with pytest.raises(TruncatedAudioError) as error:
        io.read_audio(path)
    assert_error(error, path, "truncated", "moov atom")


@needs_ffmpeg
def test_m4a_cut_in_half_with_index_first(tmp_path: Path) -> None:
    full = tmp_path / "faststart.m4a"
    ffmpeg(*lavfi_sine(440, 2), "-c:a", "aac", "-movflags", "+faststart", str(full))
    path = cut(full, tmp_path / "cut.m4a", 0.5)
    blocks_before_error = 0
    with pytest.raises(TruncatedAudioError) as error:
        for _ in io.iter_blocks(path, block_frames=4096):
            blocks_before_error += 1
    assert blocks_before_error > 0
    assert_error(error, path, "truncated", "partial file")


@needs_ffmpeg
def test_truncated_ogg_is_not_called_empty(tmp_path: Path) -> None:
    full = tmp_path / "full.ogg"
    sf.write(full, sine(440, 1.0, channels=2), RATE)
    path = cut(full, tmp_path / "cut.ogg", 0.5)
    with pytest.raises(TruncatedAudioError) as error:
        io.read_audio(path)
    assert_error(error, path, "truncated", "ends early")


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path: Path, bad_value: float) -> None:
    audio = sine(440, 2.0, channels=2)
    audio[70000, 1] = bad_value
    path = tmp_path / "broken.wav"
    sf.write(path, audio, RATE, subtype="FLOAT")
    blocks_before_error = 0
    with pytest.raises(InvalidSamplesError) as error:
        for _ in io.iter_blocks(path, block_frames=8192):
            blocks_before_error += 1
    assert blocks_before_error > 0  # found mid-stream, not up front
    assert_error(error, path, "NaN or infinite", "frame 70000")


def test_missing_stream_in_single_stream_file(stereo_wav: Path) -> None:
    with pytest.raises(UnsupportedFormatError) as error:
        io.read_audio(stereo_wav, stream=1)
    assert_error(error, stereo_wav, "stream 1 does not exist")


@needs_ffmpeg
def test_missing_stream_in_stem_file(stem_file: Path) -> None:
    with pytest.raises(UnsupportedFormatError) as error:
        io.read_stems(stem_file, streams=[0, 5])
    assert_error(error, stem_file, "stream 5 does not exist")


@needs_ffmpeg
def test_codec_ffmpeg_cannot_decode(stereo_wav: Path, tmp_path: Path) -> None:
    data = bytearray(stereo_wav.read_bytes())
    data[20:22] = struct.pack("<H", 0x3FFF)  # an unassigned WAVE format tag
    path = tmp_path / "alien.wav"
    path.write_bytes(data)
    with pytest.raises(UnsupportedFormatError) as error:
        io.read_audio(path)
    assert_error(error, path, "codec ffmpeg cannot decode")


@needs_ffmpeg
def test_missing_ffmpeg_is_reported_with_install_hint(m4a_file: Path, no_ffmpeg: None) -> None:
    with pytest.raises(FfmpegNotFoundError) as error:
        io.read_audio(m4a_file)
    assert_error(error, m4a_file, "ffprobe", "apt-get install ffmpeg")


def test_libsndfile_formats_need_no_ffmpeg(stereo_wav: Path, no_ffmpeg: None) -> None:
    assert io.read_audio(stereo_wav).shape == (RATE, 2)


# ---------------------------------------------------------------------------------------------
# Atomic writing


def _listing(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_streaming_writer_uses_hidden_temp_then_renames(tmp_path: Path) -> None:
    target = tmp_path / "out.flac"
    audio = sine(440, 1.0, channels=2)
    with io.open_writer(target, RATE, 2) as writer:
        for start in range(0, len(audio), 10000):
            writer.write(audio[start : start + 10000])
        (temp_name,) = _listing(tmp_path)
        assert temp_name.startswith(".out.flac.")
        assert temp_name.endswith(".flac")
    assert _listing(tmp_path) == ["out.flac"]
    assert writer.frames_written == len(audio)
    np.testing.assert_allclose(io.read_audio(target), audio, atol=1 / 2**15)


def test_output_permissions_follow_umask(tmp_path: Path) -> None:
    target = tmp_path / "out.wav"
    io.write_audio(target, sine(440, 0.1), RATE)
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


@needs_ffmpeg
def test_streaming_mp3_writer(tmp_path: Path) -> None:
    target = tmp_path / "out.mp3"
    audio = sine(440, 2.0, channels=2)
    with io.open_writer(target, RATE, 2) as writer:
        for start in range(0, len(audio), 30000):
            writer.write(audio[start : start + 30000])
    decoded = io.read_audio(target)
    assert abs(len(decoded) - len(audio)) <= 2 * 1152
    assert dominant_frequency(decoded, RATE) == pytest.approx(440, abs=2)


def _assert_failed_write_left_nothing(
    directory: Path, target: Path, write: Callable[[], None], error_type: type[AudioError]
) -> pytest.ExceptionInfo[AudioError]:
    before = {path.name: path.read_bytes() for path in directory.iterdir()}
    with pytest.raises(error_type) as error:
        write()
    after = {path.name: path.read_bytes() for path in directory.iterdir()}
    assert after == before  # no temp file, no partial target, an old target untouched
    assert target.name in str(error.value)
    return error


@pytest.mark.parametrize("suffix", [".wav", ".flac", pytest.param(".mp3", marks=needs_ffmpeg)])
@pytest.mark.parametrize("existing_target", [False, True])
def test_nan_input_writes_nothing(tmp_path: Path, suffix: str, existing_target: bool) -> None:
    target = tmp_path / f"out{suffix}"
    if existing_target:
        target.write_bytes(b"previous good output")
    audio = sine(440, 3.0, channels=2)
    audio[-10, 0] = np.nan  # in the last block, after earlier blocks reached the encoder
    error = _assert_failed_write_left_nothing(
        tmp_path, target, lambda: io.write_audio(target, audio, RATE), InvalidSamplesError
    )
    assert "NaN" in str(error.value)


def test_unknown_extension_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.xyz"
    error = _assert_failed_write_left_nothing(
        tmp_path,
        target,
        lambda: io.write_audio(target, sine(440, 0.1), RATE),
        UnsupportedFormatError,
    )
    assert "xyz" in str(error.value)


@pytest.mark.parametrize(
    ("suffix", "subtype"), [(".flac", "FLOAT"), (".wav", "PCM_8"), (".mp3", "PCM_16")]
)
def test_unsupported_subtype_writes_nothing(tmp_path: Path, suffix: str, subtype: str) -> None:
    target = tmp_path / f"out{suffix}"
    _assert_failed_write_left_nothing(
        tmp_path,
        target,
        lambda: io.write_audio(target, sine(440, 0.1), RATE, subtype=subtype),
        UnsupportedFormatError,
    )


def test_missing_directory_is_a_write_error(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "out.wav"
    with pytest.raises(AudioWriteError) as error:
        io.write_audio(target, sine(440, 0.1), RATE)
    assert_error(error, target, "temporary file")
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("suffix", [".wav", pytest.param(".mp3", marks=needs_ffmpeg)])
def test_failed_rename_keeps_existing_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    target = tmp_path / f"out{suffix}"
    target.write_bytes(b"previous good output")

    def refuse_rename(self: Path, other: Path) -> Path:
        raise PermissionError(13, "Permission denied", str(other))

    monkeypatch.setattr(Path, "replace", refuse_rename)
    error = _assert_failed_write_left_nothing(
        tmp_path, target, lambda: io.write_audio(target, sine(440, 0.5), RATE), AudioWriteError
    )
    assert "Permission denied" in str(error.value)


class SeparationFailedError(Exception):
    """Stands in for any failure of the code producing the blocks."""


def test_exception_inside_writer_block_discards_output(tmp_path: Path) -> None:
    target = tmp_path / "out.wav"
    target.write_bytes(b"previous good output")
    with pytest.raises(SeparationFailedError), io.open_writer(target, RATE, 2) as writer:
        writer.write(sine(440, 0.5, channels=2))
        raise SeparationFailedError
    assert _listing(tmp_path) == ["out.wav"]
    assert target.read_bytes() == b"previous good output"


@pytest.mark.parametrize(
    ("audio", "cause"),
    [
        (np.zeros((0, 2), dtype=np.float32), "no samples"),
        (np.zeros((100, 2), dtype=np.int16), "floating-point"),
        (np.zeros((2, 100, 2), dtype=np.float32), "shaped"),
    ],
    ids=["empty", "integer", "three-dimensional"],
)
def test_bad_write_input_writes_nothing(tmp_path: Path, audio: np.ndarray, cause: str) -> None:
    target = tmp_path / "out.wav"
    error = _assert_failed_write_left_nothing(
        tmp_path, target, lambda: io.write_audio(target, audio, RATE), AudioWriteError
    )
    assert cause in str(error.value)


def test_writer_rejects_wrong_channel_count(tmp_path: Path) -> None:
    target = tmp_path / "out.wav"
    with pytest.raises(AudioWriteError) as error, io.open_writer(target, RATE, 2) as writer:
        writer.write(sine(440, 0.1, channels=3))
    assert_error(error, target, "[frames, 2]")
    assert _listing(tmp_path) == []


def test_mp3_without_ffmpeg_writes_nothing(tmp_path: Path, no_ffmpeg: None) -> None:
    target = tmp_path / "out.mp3"
    before = _listing(tmp_path)
    with pytest.raises(FfmpegNotFoundError) as error:
        io.write_audio(target, sine(440, 0.1), RATE)
    assert_error(error, target, "apt-get install ffmpeg")
    assert _listing(tmp_path) == before
