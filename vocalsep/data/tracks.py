"""Decode one track into vocals and accompaniment, refusing anything that would be a wrong example.

Every refusal is a typed error whose ``code`` is the reason written to the rejects file:
``undecodable`` (any :class:`~vocalsep.errors.AudioError` from the audio module),
``missing_stem``, ``sample_rate_mismatch``, ``length_mismatch``, ``silent_vocals`` and
``too_short``. Stems are decoded through :mod:`vocalsep.audio.io` at the model rate, stereo.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tempfile
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from vocalsep.audio import io
from vocalsep.data.config import IngestConfig
from vocalsep.data.roots import StemFile, TrackSource
from vocalsep.errors import (
    AudioError,
    MissingStemError,
    SampleRateMismatchError,
    SilentStemError,
    StemLengthMismatchError,
    TrackRejectedError,
)

UNDECODABLE = "undecodable"
# Stems whose lengths differ by at most this many frames at the model rate only differ by codec
# priming (the audio module's AAC tolerance) and are trimmed to the shortest.
LENGTH_TOLERANCE_FRAMES = io.PRIMING_TOLERANCE_FRAMES


@dataclasses.dataclass(frozen=True)
class TrackAudio:
    """A validated track: float32 ``[samples, 2]`` sources at ``sample_rate``.

    The mixture is by definition ``vocals + accompaniment``, so remixing stays exact.
    """

    vocals: np.ndarray
    accompaniment: np.ndarray
    sample_rate: int

    @property
    def num_samples(self) -> int:
        return len(self.vocals)


def rejection_reason(error: Exception) -> str:
    """The rejects-file reason for an ingestion error."""
    if isinstance(error, TrackRejectedError):
        return error.code
    if isinstance(error, AudioError):
        return UNDECODABLE
    raise TypeError(f"not an ingestion error: {error!r}")


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """A local path for ``path``: itself when local, else a temporary copy (``gs://`` etc.).

    The decoders (libsndfile, ffmpeg) need local files; remote roots are read through
    ``tf.io.gfile`` so the same pipeline runs on Dataflow against a bucket.
    """
    if "://" not in path:
        yield path
        return
    with tempfile.TemporaryDirectory() as folder:
        local = f"{folder}/{path.rsplit('/', 1)[-1]}"
        tf.io.gfile.copy(path, local)
        yield local


def _level_db(audio: np.ndarray) -> float:
    """RMS over all samples and channels, in dBFS (float64 accumulation)."""
    power = float(np.mean(np.square(audio, dtype=np.float64))) if audio.size else 0.0
    return 10.0 * math.log10(power) if power > 0 else -math.inf


def _to_stereo(mono: np.ndarray) -> np.ndarray:
    return np.repeat(mono[:, np.newaxis], 2, axis=1)


def _check_sample_rates(track: TrackSource, files: dict[str, str]) -> None:
    """Stem files must share a native rate: different rates mean separate renders.

    One probe per file: streams of one container (MUSDB ``.stem.mp4``) are time-aligned by the
    container whatever their rates, and probing each stream would cost one ffprobe apiece.
    """
    rates: dict[str, int] = {}
    for path in sorted({stem.path for stem in track.stems}):
        info = io.probe(files[path])
        for stem in track.stems:
            if stem.path == path and stem.stream >= info.num_streams:
                raise MissingStemError(
                    track.track_id,
                    f"{path} has {info.num_streams} audio stream(s), so stream {stem.stream} "
                    f"({stem.role}) is missing",
                )
        rates[path.rsplit("/", 1)[-1]] = info.sample_rate
    if len(set(rates.values())) > 1:
        described = ", ".join(f"{name}: {rate} Hz" for name, rate in rates.items())
        raise SampleRateMismatchError(track.track_id, f"stems differ in sample rate ({described})")


def _describe(stem: StemFile) -> str:
    name = stem.path.rsplit("/", 1)[-1]
    if stem.channel >= 0:
        return f"{name} channel {stem.channel}"
    return f"{name} stream {stem.stream}" if stem.stream else name


def _decode_stems(
    track: TrackSource, files: dict[str, str], sample_rate: int
) -> list[tuple[StemFile, np.ndarray]]:
    """Each stem as float32 stereo at ``sample_rate``; channel pairs are decoded once."""
    if track.layout == "channel_pairs":
        audio = io.read_audio(files[track.stems[0].path], sample_rate=sample_rate, channels=None)
        if audio.shape[1] != 2:
            raise MissingStemError(
                track.track_id,
                f"a channel-pair file needs 2 channels (one per source), found {audio.shape[1]}",
            )
        return [(stem, _to_stereo(audio[:, stem.channel])) for stem in track.stems]
    return [
        (stem, io.read_audio(files[stem.path], sample_rate=sample_rate, stream=stem.stream))
        for stem in track.stems
    ]


def _check_lengths(track: TrackSource, decoded: list[tuple[StemFile, np.ndarray]]) -> int:
    lengths = {_describe(stem): len(audio) for stem, audio in decoded}
    shortest, longest = min(lengths.values()), max(lengths.values())
    if longest - shortest > LENGTH_TOLERANCE_FRAMES:
        described = ", ".join(f"{name}: {length}" for name, length in lengths.items())
        raise StemLengthMismatchError(
            track.track_id,
            f"stems differ by {longest - shortest} samples at the model rate, more than the "
            f"{LENGTH_TOLERANCE_FRAMES} codec priming allows ({described})",
        )
    return shortest


def load_mixture(track: TrackSource, config: IngestConfig, num_samples: int) -> np.ndarray | None:
    """The track's own mixture at the model rate, ``num_samples`` long (the stems' length), or
    None when the dataset has none.

    This is what a user would separate (MUSDB's stream 0 is coded on its own, so it differs
    slightly from the sum of the decoded stems); evaluation scores it, training keeps the sum.
    A length beyond codec priming of the stems' raises StemLengthMismatchError.
    """
    if track.mixture is None:
        return None
    with local_copy(track.mixture.path) as path:
        audio = io.read_audio(path, sample_rate=config.sample_rate, stream=track.mixture.stream)
    if abs(len(audio) - num_samples) > LENGTH_TOLERANCE_FRAMES:
        raise StemLengthMismatchError(
            track.track_id,
            f"the mixture ({_describe(track.mixture)}) has {len(audio)} samples at the model "
            f"rate, the stems {num_samples}: more than the {LENGTH_TOLERANCE_FRAMES} codec "
            "priming allows",
        )
    return np.pad(audio[:num_samples], [(0, max(num_samples - len(audio), 0)), (0, 0)])


def load_track(track: TrackSource, config: IngestConfig) -> TrackAudio:
    """Decode and validate a track, or raise the typed error that says why it is unusable."""
    if track.missing:
        raise MissingStemError(track.track_id, f"missing stem(s): {', '.join(track.missing)}")
    with contextlib.ExitStack() as stack:
        files = {
            path: stack.enter_context(local_copy(path))
            for path in sorted({stem.path for stem in track.stems})
        }
        _check_sample_rates(track, files)
        decoded = _decode_stems(track, files, config.sample_rate)
    length = _check_lengths(track, decoded)
    sources = {role: np.zeros((length, 2), np.float32) for role in ("vocals", "accompaniment")}
    for stem, audio in decoded:
        sources[stem.role] += audio[:length]
    vocal_level = _level_db(sources["vocals"])
    if vocal_level < config.silence_threshold_db:
        raise SilentStemError(
            track.track_id,
            f"vocal stem is silent: RMS {vocal_level:.1f} dBFS, below the "
            f"{config.silence_threshold_db:.1f} dBFS threshold",
        )
    return TrackAudio(sources["vocals"], sources["accompaniment"], config.sample_rate)
