"""Audio file I/O for vocalsep: probe, stream, read and atomically write audio.

Everything is decoded and encoded in blocks, so a one-hour file can be streamed in bounded
memory, and reading one whole never holds it twice. Two decoding backends are used, chosen by
trying rather than by extension:

* libsndfile (via ``soundfile``) for WAV, FLAC, Ogg Vorbis, Opus and the other formats it
  recognises by content.
* ffmpeg (an ``ffmpeg -f f32le`` pipe, with ``ffprobe`` for metadata) for MP4/M4A/AAC,
  multi-stream ``.stem.mp4`` and anything else libsndfile rejects but ffprobe finds an audio
  stream in. MP3 also goes to ffmpeg even though libsndfile opens it: measured with
  libsndfile 1.2.2, an MP3 without a Xing/LAME header gets an estimated length and libsndfile
  silently stops decoding there (a 2 s VBR file decoded as 0.47 s). FLAC files whose
  STREAMINFO gives no total length also go to ffmpeg, because libsndfile drops their last
  block with an error.

Channel rule applied when a different channel count is requested (``channels=2`` by default):

* mono is duplicated to both stereo channels;
* stereo passes through unchanged;
* six channels are taken as 5.1 in WAV/ffmpeg order FL FR FC LFE BL BR and downmixed with
  ITU-R BS.775 coefficients: L = FL + 0.7071 FC + 0.7071 BL, R = FR + 0.7071 FC + 0.7071 BR,
  LFE dropped (no normalisation, so the result may exceed [-1, 1]);
* any other count above two: left = mean of the even-indexed channels, right = mean of the
  odd-indexed channels;
* ``channels=1`` averages the two channels of that stereo result.

Resampling uses soxr's streaming resampler at VHQ quality; its output is sample-identical to a
one-shot ``soxr.resample`` call and has ``round(frames * target_rate / source_rate)`` frames.

Every failure is raised as a typed error from :mod:`vocalsep.errors` naming the file and the
cause. A 0-byte file is reported as :class:`EmptyAudioError`. Files whose format gives no total
length (Ogg, MP3 without a Xing header) cannot be recognised as truncated: they just decode
shorter.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, Protocol

import numpy as np
import soundfile as sf
import soxr

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

MODEL_SAMPLE_RATE = 44100
DEFAULT_BLOCK_FRAMES = 65536
RESAMPLE_QUALITY = "VHQ"
# Apple's AAC encoder delay, the largest priming a conforming AAC stream carries: stems (and
# decoded-vs-declared lengths) that differ by no more than this are only misaligned by priming.
PRIMING_TOLERANCE_FRAMES = 2112
MP3_BITRATE = "320k"

Backend = Literal["soundfile", "ffmpeg"]

_SURROUND_GAIN = np.float32(math.sqrt(0.5))
# soundfile reports this frame count when the container does not state its length.
_UNKNOWN_FRAMES = 2**63 - 1
# WAV writers that stream to a pipe cannot go back to fill in the data size.
_WAV_UNKNOWN_SIZES = (0, 0xFFFFFFFF)
_FFMPEG_DAMAGE_MARKERS = (
    "partial file",
    "moov atom not found",
    "invalid data found",
    "end of file",
    "packet corrupt",
    "error while decoding",
)
_FFMPEG_MISSING_DECODER_MARKERS = ("decoder (codec", "no decoder")
# "[aac @ 0x55e661d57900] " prefixes carry a heap address that means nothing to a user.
_FFMPEG_CONTEXT_PREFIX = re.compile(r"\[[^\]]* @ 0x[0-9a-f]+\] ")
_WRITE_SUBTYPES = {"wav": ("PCM_16", "PCM_24", "FLOAT"), "flac": ("PCM_16", "PCM_24")}
_WRITE_FORMATS = ("wav", "flac", "mp3")


@dataclass(frozen=True)
class AudioInfo:
    """What a reader needs to know before decoding: rate, layout, length and backend."""

    path: str
    sample_rate: int
    channels: int
    frames: int | None
    """Frames the container declares; None when it does not say (MP3, Matroska, ...)."""
    duration_seconds: float | None
    container: str
    codec: str
    stream: int
    """Index among the file's audio streams (ffmpeg's ``0:a:N``)."""
    num_streams: int
    backend: Backend


# ---------------------------------------------------------------------------------------------
# Probing


def probe(path: str | os.PathLike[str], stream: int = 0) -> AudioInfo:
    """Describe one audio stream of a file, raising a typed error for anything unreadable."""
    file_path = os.fspath(path)
    _check_regular_file(file_path)
    wav_problem = _wav_truncation(file_path)
    if wav_problem is not None:
        raise TruncatedAudioError(file_path, wav_problem)
    try:
        with sf.SoundFile(file_path) as sound_file:
            info = _soundfile_info(file_path, sound_file)
    except sf.LibsndfileError as error:
        info = _ffprobe_info(file_path, stream, f"libsndfile: {_libsndfile_reason(error)}")
    else:
        if info.container == "MP3":
            info = _ffprobe_info(file_path, stream, "libsndfile only estimates MP3 lengths")
        elif info.frames == _UNKNOWN_FRAMES:
            info = _ffprobe_info(file_path, stream, "libsndfile fails on undeclared lengths")
        elif info.frames == 0 and info.container != "WAV":
            # libsndfile reports a truncated Ogg as 0 frames; ffmpeg can tell cut from empty.
            info = _ffprobe_info(file_path, stream, "libsndfile found no samples")
        elif stream != 0:
            raise UnsupportedFormatError(
                file_path, f"has a single audio stream, so stream {stream} does not exist"
            )
    if info.frames == 0:
        raise EmptyAudioError(file_path, "contains no audio samples")
    return info


def _check_regular_file(path: str) -> None:
    file_path = Path(path)
    try:
        status = file_path.stat()
    except FileNotFoundError:
        raise AudioFileNotFoundError(path, "no such file") from None
    except OSError as error:
        raise AudioError(path, f"cannot access the file: {error.strerror}") from None
    if file_path.is_dir():
        raise AudioFileNotFoundError(path, "is a directory, not an audio file")
    if not file_path.is_file():
        raise AudioFileNotFoundError(path, "is not a regular file")
    if status.st_size == 0:
        raise EmptyAudioError(path, "file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied: the file is not readable")


def _wav_truncation(path: str) -> str | None:
    """Compare a RIFF/WAVE header's declared data size with the bytes actually present.

    libsndfile silently clamps the frame count of a truncated WAV to the bytes it finds, so a
    file cut in half would otherwise decode as a valid shorter file.
    """
    file_path = Path(path)
    file_size = file_path.stat().st_size
    with file_path.open("rb") as handle:
        riff = handle.read(12)
        if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            return None
        offset = 12
        while True:
            handle.seek(offset)
            chunk_header = handle.read(8)
            if len(chunk_header) < 8:
                return (
                    f"truncated: the file ends after {file_size} bytes, before the WAV data chunk"
                )
            chunk_id, chunk_size = struct.unpack("<4sI", chunk_header)
            if chunk_id == b"data":
                present = file_size - offset - 8
                if chunk_size not in _WAV_UNKNOWN_SIZES and present < chunk_size:
                    return (
                        f"truncated: the WAV header declares {chunk_size} bytes of audio data "
                        f"but only "
                        f"{present} are present"
                    )
                return None
            offset += 8 + chunk_size + (chunk_size & 1)


def _soundfile_info(path: str, sound_file: sf.SoundFile) -> AudioInfo:
    frames = sound_file.frames
    return AudioInfo(
        path=path,
        sample_rate=sound_file.samplerate,
        channels=sound_file.channels,
        frames=frames,
        duration_seconds=frames / sound_file.samplerate,
        container=sound_file.format,
        codec=sound_file.subtype,
        stream=0,
        num_streams=1,
        backend="soundfile",
    )


_LIBSNDFILE_NOT_A_FILE = "File does not exist or is not a regular file"
"""What libsndfile says of any file it cannot identify, a text file named .mp3 say; callers have
checked that the file exists and is regular by then, so the words would mislead."""


def _libsndfile_reason(error: sf.LibsndfileError) -> str:
    reason = error.error_string.strip().rstrip(".")
    if reason.startswith(_LIBSNDFILE_NOT_A_FILE):
        return "not a recognised audio format"
    return reason or f"libsndfile error {error.code}"


def _require_tool(name: str, path: str | os.PathLike[str], purpose: str) -> str:
    """Resolve ffmpeg/ffprobe at call time, so a missing install is reported, not crashed on."""
    executable = shutil.which(name)
    if executable is None:
        raise FfmpegNotFoundError(
            path,
            f"{name} is needed to {purpose} but was not found on PATH; install the Debian "
            f"package 'ffmpeg' (apt-get install ffmpeg)",
        )
    return executable


def _ffprobe_info(path: str, stream: int, why_ffmpeg: str) -> AudioInfo:
    """Describe a file through ffprobe; ``why_ffmpeg`` says why libsndfile was not enough."""
    ffprobe = _require_tool("ffprobe", path, f"read this file ({why_ffmpeg})")
    command = [
        ffprobe,
        "-v",
        "error",
        "-show_entries",
        "stream=codec_type,codec_name,codec_tag_string,sample_rate,channels,time_base,"
        "duration_ts,duration:format=format_name,duration",
        "-of",
        "json",
        f"file:{path}",
    ]
    result = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        stderr = _text(result.stderr)
        message = _last_line(result.stderr).replace(f"file:{path}: ", "")
        if "moov atom not found" in stderr:
            raise TruncatedAudioError(
                path, f"truncated: the MP4 index (moov atom) is missing ({message})"
            )
        if message == "End of file":
            raise TruncatedAudioError(
                path,
                f"truncated: ffprobe recognised the format but the file ends early ({message})",
            )
        raise NotAudioError(path, f"not a recognised audio file ({why_ffmpeg}; ffprobe: {message})")
    report = json.loads(result.stdout or b"{}")
    streams = report.get("streams", [])
    container = report.get("format", {}).get("format_name", "unknown")
    audio_streams = [entry for entry in streams if entry.get("codec_type") == "audio"]
    if not audio_streams:
        found = ", ".join(entry.get("codec_type", "unknown") for entry in streams) or "none"
        raise NotAudioError(
            path, f"contains no audio stream (format {container}, streams found: {found})"
        )
    if not 0 <= stream < len(audio_streams):
        raise UnsupportedFormatError(
            path, f"audio stream {stream} does not exist (the file has {len(audio_streams)})"
        )
    entry = audio_streams[stream]
    codec = entry.get("codec_name", "unknown")
    sample_rate = int(entry.get("sample_rate", 0))
    channels = int(entry.get("channels", 0))
    if codec in ("unknown", "none") or sample_rate <= 0 or channels <= 0:
        raise UnsupportedFormatError(
            path,
            f"audio stream {stream} uses a codec ffmpeg cannot decode "
            f"(codec {codec}, tag {entry.get('codec_tag_string', '?')})",
        )
    frames = None
    if entry.get("time_base") == f"1/{sample_rate}" and "duration_ts" in entry:
        frames = int(entry["duration_ts"])
    duration = entry.get("duration", report.get("format", {}).get("duration"))
    return AudioInfo(
        path=path,
        sample_rate=sample_rate,
        channels=channels,
        frames=frames,
        duration_seconds=frames / sample_rate if frames is not None else _float_or_none(duration),
        container=container,
        codec=codec,
        stream=stream,
        num_streams=len(audio_streams),
        backend="ffmpeg",
    )


def _float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _last_line(raw: bytes) -> str:
    lines = [line.strip() for line in _text(raw).splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


# ---------------------------------------------------------------------------------------------
# Decoding


def iter_blocks(
    path: str | os.PathLike[str],
    *,
    sample_rate: int | None = MODEL_SAMPLE_RATE,
    channels: int | None = 2,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
    stream: int = 0,
) -> Generator[np.ndarray, None, None]:
    """Yield float32 ``[block_frames, channels]`` blocks (the last may be shorter).

    The file is probed before this returns, so missing or non-audio files fail at the call;
    decoding errors found later (truncation, NaN) are raised from the iteration. Close the
    iterator (or exhaust it) to stop an ffmpeg decoder early; dropping it also does.
    """
    _check_targets(sample_rate, channels, block_frames)
    info = probe(path, stream)
    return _converted_blocks(info, sample_rate, channels, block_frames)


def read_audio(
    path: str | os.PathLike[str],
    *,
    sample_rate: int | None = MODEL_SAMPLE_RATE,
    channels: int | None = 2,
    stream: int = 0,
) -> np.ndarray:
    """Decode a whole stream to float32 ``[frames, channels]``.

    The result is filled in place from the best length estimate (exact frame count, else the
    container's duration) and resized in place at the end, so the file is never held in memory
    twice, even for formats such as MP3 whose exact length is only known after decoding.
    """
    _check_targets(sample_rate, channels, DEFAULT_BLOCK_FRAMES)
    info = probe(path, stream)
    out_channels = channels or info.channels
    audio = np.empty((_estimated_length(info, sample_rate), out_channels), dtype=np.float32)
    filled = 0
    # closing() stops an ffmpeg decoder at once should anything below raise.
    with contextlib.closing(
        _converted_blocks(info, sample_rate, channels, DEFAULT_BLOCK_FRAMES)
    ) as blocks:
        for block in blocks:
            if filled + len(block) > len(audio):
                # An estimate fell short: grow by realloc (large buffers are remapped, not copied).
                grown = max(filled + len(block), len(audio) * 5 // 4)
                audio.resize((grown, out_channels), refcheck=False)
            audio[filled : filled + len(block)] = block
            filled += len(block)
    audio.resize((filled, out_channels), refcheck=False)
    return audio


def _estimated_length(info: AudioInfo, sample_rate: int | None) -> int:
    """Output frames to preallocate: exact when the header says, else from the duration."""
    if info.frames is not None:
        source_frames = info.frames
    elif info.duration_seconds:
        source_frames = math.ceil(info.duration_seconds * info.sample_rate)
    else:
        source_frames = DEFAULT_BLOCK_FRAMES
    return max(
        1, _resampled_length(source_frames, info.sample_rate, sample_rate or info.sample_rate)
    )


def read_stems(
    path: str | os.PathLike[str],
    streams: Sequence[int] | None = None,
    *,
    sample_rate: int | None = MODEL_SAMPLE_RATE,
    channels: int | None = 2,
) -> list[np.ndarray]:
    """Read several audio streams of one file (MUSDB: mixture, drums, bass, other, vocals).

    Streams are trimmed to a common length when they differ by at most
    ``PRIMING_TOLERANCE_FRAMES`` (AAC priming); a larger mismatch means the stems do not line
    up and raises :class:`TruncatedAudioError`.
    """
    indices = range(probe(path).num_streams) if streams is None else streams
    stems = [
        read_audio(path, sample_rate=sample_rate, channels=channels, stream=index)
        for index in indices
    ]
    lengths = [len(stem) for stem in stems]
    shortest = min(lengths, default=0)
    if lengths and max(lengths) - shortest > PRIMING_TOLERANCE_FRAMES:
        described = ", ".join(f"stream {i}: {n}" for i, n in zip(indices, lengths, strict=True))
        raise TruncatedAudioError(
            path,
            f"stems differ in length by more than {PRIMING_TOLERANCE_FRAMES} frames, so one is "
            f"truncated or they do not belong together ({described})",
        )
    return [stem[:shortest] for stem in stems]


def _check_targets(sample_rate: int | None, channels: int | None, block_frames: int) -> None:
    if sample_rate is not None and sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive or None, got {sample_rate}")
    if channels not in (None, 1, 2):
        raise ValueError(f"channels must be 1, 2 or None, got {channels}")
    if block_frames <= 0:
        raise ValueError(f"block_frames must be positive, got {block_frames}")


def _resampled_length(frames: int, source_rate: int, target_rate: int) -> int:
    """soxr's output length, round(frames * target / source), in exact integer arithmetic."""
    return (2 * frames * target_rate + source_rate) // (2 * source_rate)


class BlockConverter:
    """Streams blocks through the channel rule and, when the rates differ, soxr resampling.

    One implementation for decoding (file rate and channels to the model's) and for writing
    separated stems back at an input's rate and channel count.
    """

    def __init__(self, source_rate: int, target_rate: int, channels: int) -> None:
        self._channels = channels
        self._resampler = (
            None
            if source_rate == target_rate
            else soxr.ResampleStream(
                source_rate, target_rate, channels, dtype="float32", quality=RESAMPLE_QUALITY
            )
        )

    def convert(self, block: np.ndarray) -> np.ndarray:
        """The converted block; with resampling, its length follows the stream, not the block."""
        mixed = _mix_channels(block, self._channels)
        if self._resampler is None:
            return mixed
        return self._resampler.resample_chunk(mixed, last=False)

    def flush(self) -> np.ndarray:
        """The resampler's delayed tail, to append after the last block."""
        empty = np.zeros((0, self._channels), dtype=np.float32)
        return (
            empty if self._resampler is None else self._resampler.resample_chunk(empty, last=True)
        )


def _converted_blocks(
    info: AudioInfo, sample_rate: int | None, channels: int | None, block_frames: int
) -> Generator[np.ndarray, None, None]:
    converter = BlockConverter(
        info.sample_rate, sample_rate or info.sample_rate, channels or info.channels
    )
    decoder = (
        _soundfile_blocks(info, block_frames)
        if info.backend == "soundfile"
        else _ffmpeg_blocks(info, block_frames)
    )
    with contextlib.closing(decoder):
        yield from _fixed_size(_converted(decoder, converter), block_frames)


def _converted(blocks: Iterator[np.ndarray], converter: BlockConverter) -> Iterator[np.ndarray]:
    for block in blocks:
        yield converter.convert(block)
    yield converter.flush()


def _fixed_size(blocks: Iterator[np.ndarray], block_frames: int) -> Iterator[np.ndarray]:
    """Re-cut blocks so consumers see a fixed block size whatever the resampling ratio."""
    pending: list[np.ndarray] = []
    pending_frames = 0
    for block in blocks:
        if not len(block):
            continue
        pending.append(block)
        pending_frames += len(block)
        if pending_frames < block_frames:
            continue
        joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
        full = pending_frames - pending_frames % block_frames
        for start in range(0, full, block_frames):
            yield joined[start : start + block_frames]
        pending = [joined[full:]] if full < pending_frames else []
        pending_frames -= full
    if pending_frames:
        yield np.concatenate(pending) if len(pending) > 1 else pending[0]


def _mix_channels(block: np.ndarray, channels: int | None) -> np.ndarray:
    source_channels = block.shape[1]
    if channels is None or channels == source_channels:
        return block
    stereo = _to_stereo(block)
    return stereo if channels == 2 else stereo.mean(axis=1, keepdims=True)


def _to_stereo(block: np.ndarray) -> np.ndarray:
    source_channels = block.shape[1]
    if source_channels == 1:
        return np.repeat(block, 2, axis=1)
    if source_channels == 2:
        return block
    if source_channels == 6:
        front_left, front_right, centre, _lfe, back_left, back_right = block.T
        centre_share = _SURROUND_GAIN * centre
        left = front_left + centre_share + _SURROUND_GAIN * back_left
        right = front_right + centre_share + _SURROUND_GAIN * back_right
        return np.stack([left, right], axis=1)
    return np.stack([block[:, 0::2].mean(axis=1), block[:, 1::2].mean(axis=1)], axis=1)


def _check_finite(block: np.ndarray, path: str, first_frame: int) -> None:
    finite = np.isfinite(block)
    if not finite.all():
        bad_frame = first_frame + int(np.argmin(finite.all(axis=1)))
        raise InvalidSamplesError(
            path, f"contains NaN or infinite samples (first at frame {bad_frame})"
        )


def _soundfile_blocks(info: AudioInfo, block_frames: int) -> Iterator[np.ndarray]:
    decoded = 0
    try:
        with sf.SoundFile(info.path) as sound_file:
            while True:
                block = sound_file.read(block_frames, dtype="float32", always_2d=True)
                if not len(block):
                    break
                _check_finite(block, info.path, decoded)
                decoded += len(block)
                yield block
    except sf.LibsndfileError as error:
        raise TruncatedAudioError(
            info.path,
            f"truncated or damaged: decoding failed after {decoded} of {info.frames} frames "
            f"(libsndfile: {_libsndfile_reason(error)})",
        ) from None
    if info.frames is not None and decoded < info.frames:
        raise TruncatedAudioError(
            info.path,
            f"truncated: decoded only {decoded} of the {info.frames} frames the header declares",
        )


def _ffmpeg_blocks(info: AudioInfo, block_frames: int) -> Iterator[np.ndarray]:
    """Decode through an ffmpeg pipe; the process is killed and reaped however iteration ends.

    stderr goes to a temporary file rather than a pipe, so a file producing many error lines
    cannot fill the pipe and deadlock ffmpeg while we read stdout.
    """
    ffmpeg = _require_tool("ffmpeg", info.path, f"decode {info.codec} audio")
    command = [
        ffmpeg,
        "-v",
        "error",
        "-nostdin",
        "-i",
        f"file:{info.path}",
        "-map",
        f"0:a:{info.stream}",
        "-ac",
        str(info.channels),
        "-ar",
        str(info.sample_rate),
        "-f",
        "f32le",
        "pipe:1",
    ]
    frame_bytes = 4 * info.channels
    decoded = 0
    with tempfile.TemporaryFile() as stderr_file:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr_file
        )
        try:
            assert process.stdout is not None
            while True:
                # A fresh bytearray per block keeps the yielded arrays writable without a copy.
                chunk = bytearray(block_frames * frame_bytes)
                received = process.stdout.readinto(chunk)
                if not received:
                    break
                usable_frames = received // frame_bytes
                block = np.frombuffer(chunk, dtype="<f4", count=usable_frames * info.channels)
                block = block.reshape(usable_frames, info.channels)
                if info.frames is not None:
                    # Decoders emit the AAC end padding; the container length is authoritative.
                    block = block[: max(info.frames - decoded, 0)]
                if not len(block):
                    continue
                _check_finite(block, info.path, decoded)
                decoded += len(block)
                yield block
            return_code = process.wait()
        finally:
            _reap(process)
        stderr_file.seek(0)
        _raise_for_ffmpeg_failure(info, return_code, _text(stderr_file.read()), decoded)


def _reap(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            pipe.close()
    process.wait()


def _raise_for_ffmpeg_failure(info: AudioInfo, return_code: int, stderr: str, decoded: int) -> None:
    lowered = stderr.lower()
    lines = (_FFMPEG_CONTEXT_PREFIX.sub("", line).strip() for line in stderr.splitlines())
    message = " | ".join(line for line in lines if line)[-500:]
    if any(marker in lowered for marker in _FFMPEG_MISSING_DECODER_MARKERS):
        raise UnsupportedFormatError(info.path, f"ffmpeg cannot decode {info.codec}: {message}")
    if any(marker in lowered for marker in _FFMPEG_DAMAGE_MARKERS):
        raise TruncatedAudioError(
            info.path, f"truncated or damaged after {decoded} decoded frames; ffmpeg: {message}"
        )
    if return_code != 0:
        raise AudioError(info.path, f"ffmpeg failed with exit status {return_code}: {message}")
    if info.frames is not None and decoded < info.frames - PRIMING_TOLERANCE_FRAMES:
        raise TruncatedAudioError(
            info.path,
            f"truncated: decoded only {decoded} of the {info.frames} frames the container declares",
        )
    if decoded == 0:
        raise EmptyAudioError(info.path, "contains no audio samples")


# ---------------------------------------------------------------------------------------------
# Writing


class _Sink(Protocol):
    def write(self, block: np.ndarray) -> None: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


class AudioWriter:
    """Validates blocks (shape, dtype, finiteness) and clips them for integer outputs.

    16-bit outputs get their integers from ``to_pcm16`` here rather than from libsndfile:
    about three times faster, and rounded to nearest where libsndfile's WAV writer rounds down.
    """

    def __init__(self, path: Path, sink: _Sink, channels: int, subtype: str) -> None:
        self._path = path
        self._sink = sink
        self._channels = channels
        self._subtype = subtype
        self.frames_written = 0

    def write(self, block: np.ndarray) -> None:
        """Append ``[frames, channels]`` float samples (1-D is accepted for mono)."""
        samples = np.asarray(block)
        if not np.issubdtype(samples.dtype, np.floating):
            raise AudioWriteError(
                self._path, f"expected floating-point samples in [-1, 1], got {samples.dtype}"
            )
        if samples.ndim == 1 and self._channels == 1:
            samples = samples[:, np.newaxis]
        if samples.ndim != 2 or samples.shape[1] != self._channels:
            raise AudioWriteError(
                self._path,
                f"expected samples shaped [frames, {self._channels}], got {samples.shape}",
            )
        _check_finite(samples, os.fspath(self._path), self.frames_written)
        samples = samples.astype(np.float32, copy=False)
        if self._subtype == "PCM_16":
            samples = to_pcm16(samples)
        elif self._subtype != "FLOAT":
            samples = np.clip(samples, -1.0, 1.0)
        self._sink.write(np.ascontiguousarray(samples))
        self.frames_written += len(samples)


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples as 16-bit integers: ``x * 2**15`` rounded to nearest, clipped to int16.

    The scale is libsndfile's, so reading the file back as float gives the samples to within
    half a step (values at +1 and above clip to the largest step below it).
    """
    scaled = np.multiply(samples, np.float32(32768), dtype=np.float32)
    np.rint(scaled, out=scaled)
    np.clip(scaled, -32768, 32767, out=scaled)
    return scaled.astype(np.int16)


class _SoundfileSink:
    def __init__(
        self,
        temp_path: Path,
        target: Path,
        file_format: str,
        subtype: str,
        rate: int,
        channels: int,
    ) -> None:
        self._target = target
        try:
            self._file = sf.SoundFile(
                os.fspath(temp_path),
                "w",
                samplerate=rate,
                channels=channels,
                format=file_format,
                subtype=subtype,
            )
        except (sf.LibsndfileError, ValueError) as error:
            raise AudioWriteError(
                target, f"cannot start a {file_format} encoder: {error}"
            ) from None

    def write(self, block: np.ndarray) -> None:
        try:
            self._file.write(block)
        except sf.LibsndfileError as error:
            raise AudioWriteError(self._target, f"libsndfile write failed: {error}") from None

    def finish(self) -> None:
        try:
            self._file.close()
        except sf.LibsndfileError as error:
            raise AudioWriteError(self._target, f"libsndfile close failed: {error}") from None

    def abort(self) -> None:
        with contextlib.suppress(sf.LibsndfileError):
            self._file.close()


class _FfmpegMp3Sink:
    """Pipes float32 PCM into ffmpeg's libmp3lame, which writes the LAME gapless header."""

    def __init__(self, temp_path: Path, target: Path, rate: int, channels: int) -> None:
        self._target = target
        ffmpeg = _require_tool("ffmpeg", target, "encode MP3")
        command = [
            ffmpeg,
            "-v",
            "error",
            "-nostdin",
            "-f",
            "f32le",
            "-ar",
            str(rate),
            "-ac",
            str(channels),
            "-i",
            "pipe:0",
            "-c:a",
            "libmp3lame",
            "-b:a",
            MP3_BITRATE,
            "-f",
            "mp3",
            "-y",
            f"file:{temp_path}",
        ]
        # Closed by finish() or abort(); the sink outlives any single with-block.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr
        )

    def write(self, block: np.ndarray) -> None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(block.astype("<f4", copy=False).tobytes())
        except OSError:
            self._process.wait()
            raise AudioWriteError(
                self._target, f"ffmpeg MP3 encoder died: {self._errors()}"
            ) from None

    def finish(self) -> None:
        assert self._process.stdin is not None
        # If ffmpeg already exited, closing fails; its status and stderr below say why.
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        return_code = self._process.wait()
        if return_code != 0:
            raise AudioWriteError(
                self._target, f"ffmpeg MP3 encoder failed (status {return_code}): {self._errors()}"
            )
        self._stderr.close()

    def abort(self) -> None:
        _reap(self._process)
        self._stderr.close()

    def _errors(self) -> str:
        self._stderr.seek(0)
        return _last_line(self._stderr.read())


@contextlib.contextmanager
def open_writer(
    path: str | os.PathLike[str],
    sample_rate: int,
    channels: int,
    *,
    format: str | None = None,
    subtype: str | None = None,
) -> Iterator[AudioWriter]:
    """Write audio blockwise to a hidden temporary file, renamed over ``path`` on clean exit.

    On any exception (including one raised by the caller inside the ``with`` block) the
    temporary file is deleted and ``path`` is left exactly as it was. Formats: wav
    (PCM_16 default, PCM_24, FLOAT), flac (PCM_16 default, PCM_24) and mp3 (ffmpeg libmp3lame,
    320 kb/s CBR, at most 2 channels; ffmpeg lowers rates above 48 kHz to 48 kHz). Integer
    formats and MP3 clip samples to [-1, 1]; FLOAT keeps them as given.
    """
    target = Path(path)
    resolved_format, resolved_subtype = _resolve_format(target, format, subtype, channels)
    if sample_rate <= 0 or channels <= 0:
        raise ValueError(
            f"sample_rate and channels must be positive, got {sample_rate}, {channels}"
        )
    temp_path = _create_temp_file(target)
    sink: _Sink | None = None
    try:
        if resolved_format == "mp3":
            sink = _FfmpegMp3Sink(temp_path, target, sample_rate, channels)
        else:
            sink = _SoundfileSink(
                temp_path, target, resolved_format, resolved_subtype, sample_rate, channels
            )
        writer = AudioWriter(target, sink, channels, resolved_subtype)
        yield writer
        sink.finish()
        if writer.frames_written == 0:
            raise AudioWriteError(target, "no samples were written; refusing an empty audio file")
        _commit(temp_path, target)
    except BaseException:
        if sink is not None:
            sink.abort()
        with contextlib.suppress(FileNotFoundError):
            temp_path.unlink()
        raise


def write_audio(
    path: str | os.PathLike[str],
    audio: np.ndarray,
    sample_rate: int,
    *,
    format: str | None = None,
    subtype: str | None = None,
) -> None:
    """Atomically write ``[frames, channels]`` (or 1-D mono) float audio; see open_writer."""
    samples = np.asarray(audio)
    if samples.ndim not in (1, 2):
        raise AudioWriteError(
            path, f"expected samples shaped [frames, channels], got {samples.shape}"
        )
    channels = samples.shape[1] if samples.ndim == 2 else 1
    with open_writer(path, sample_rate, channels, format=format, subtype=subtype) as writer:
        for start in range(0, len(samples), DEFAULT_BLOCK_FRAMES):
            writer.write(samples[start : start + DEFAULT_BLOCK_FRAMES])


def _resolve_format(
    target: Path, format: str | None, subtype: str | None, channels: int
) -> tuple[str, str]:
    chosen = (format or target.suffix.lstrip(".")).lower()
    if chosen not in _WRITE_FORMATS:
        raise UnsupportedFormatError(
            target,
            f"cannot write format {chosen or '(no extension)'!r}; use one of "
            f"{', '.join(_WRITE_FORMATS)}",
        )
    if chosen == "mp3":
        if subtype is not None:
            raise UnsupportedFormatError(
                target, f"MP3 is always {MP3_BITRATE}b/s CBR; subtype {subtype!r} does not apply"
            )
        if channels > 2:
            raise UnsupportedFormatError(target, f"MP3 holds at most 2 channels, got {channels}")
        return chosen, "MP3"
    allowed = _WRITE_SUBTYPES[chosen]
    chosen_subtype = (subtype or allowed[0]).upper()
    if chosen_subtype not in allowed:
        raise UnsupportedFormatError(
            target, f"{chosen} subtype {subtype!r} is not supported; use one of {allowed}"
        )
    return chosen, chosen_subtype


def _create_temp_file(target: Path) -> Path:
    """Create the hidden temporary next to the target, so the final rename stays atomic.

    os.open with mode 0o666 lets the umask decide the final permissions, as for any new file
    (mkstemp would leave the output readable by its owner only).
    """
    while True:
        temp_path = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp{target.suffix}")
        try:
            descriptor = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as error:
            raise AudioWriteError(
                target, f"cannot create a temporary file in {target.parent}: {error.strerror}"
            ) from None
        os.close(descriptor)
        return temp_path


def _commit(temp_path: Path, target: Path) -> None:
    try:
        descriptor = os.open(temp_path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        temp_path.replace(target)
    except OSError as error:
        raise AudioWriteError(
            target, f"cannot move the finished file into place: {error}"
        ) from None
    # Persist the rename itself; some filesystems refuse fsync on a directory, which is harmless.
    with contextlib.suppress(OSError):
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
