"""Separate songs into vocals and accompaniment files: the Python API behind ``vocalsep separate``.

Files are separated in bounded memory: the input is streamed at the model's 44.1 kHz stereo in
blocks, and finished stem audio is resampled back to the input's rate and written as it comes.
Blocks start on the exported model's own chunk grid and hold whole model chunks, so each block's
chunks are exactly the chunks a whole-song call would compute (``dsp.chunked_map``).
Neighbouring blocks share just the model's chunk overlap, where they are crossfaded with the
model's own crossfade: the result matches ``separate_array`` on the whole song, and no audio is
separated twice except that overlap.

The model is either an exported SavedModel loaded in this process or anything else that calls
the same signature, such as ``vocalsep.serving.client.ServingClient`` for a model behind TF
Serving: both reach the same whole-song result, because the block grid is the model's own.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Protocol

import numpy as np

from vocalsep.audio import dsp, io
from vocalsep.errors import AudioWriteError, ModelNotFoundError, OutputExistsError
from vocalsep.model import saved

AUDIO_FORMATS = ("wav", "flac", "mp3")
Progress = Callable[[float, float | None], None]
"""Called with seconds of the input separated so far and its total duration (None: unknown)."""


class StemModel(Protocol):
    """What ``Separator`` needs of a model: its chunk grid and the ``serving_default`` call.

    ``chunk_length`` and ``overlap_length`` are the model's own chunking in samples at
    ``sample_rate``; calling it maps a ``[samples, 2]`` float32 mixture to one array per stem.
    """

    sample_rate: int
    stems: tuple[str, ...]
    chunk_length: int
    overlap_length: int

    def __call__(self, waveform: np.ndarray) -> dict[str, np.ndarray]: ...


class Separator:
    """A model loaded once, separating arrays and files.

    ``block_seconds`` bounds the audio the model sees at once, hence memory; it is rounded to
    whole model chunks, at least one. The default, one 30 s chunk of the shipped export per
    block, peaked lowest (880 MiB for a 3-minute song against 1118 MiB with 60 s blocks) at the
    same speed (BENCHMARKS.md). Blocks share one chunk overlap (1 s with the default export),
    so what they cost in recomputation is small even for short blocks.

    ``model`` is an exported model directory or a ``StemModel`` (e.g. a TF Serving client);
    by default, the shipped model (``vocalsep.model.default``).
    ``in_flight`` blocks are sent to the model at once; more than one only pays off for a
    remote model, where it overlaps network transfer, server queueing and local decoding.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | StemModel | None = None,
        *,
        block_seconds: float = 30.0,
        in_flight: int = 1,
    ) -> None:
        if block_seconds <= 0 or in_flight < 1:
            raise ValueError(
                f"block_seconds and in_flight must be positive, got {block_seconds}, {in_flight}"
            )
        if model is None:
            from vocalsep.model.default import default_model_dir

            model = default_model_dir()
        self._model = _load_model(model) if isinstance(model, (str, os.PathLike)) else model
        self._in_flight = in_flight
        self.sample_rate: int = self._model.sample_rate
        self.stems: tuple[str, ...] = self._model.stems
        self._overlap = int(self._model.overlap_length)
        stride = int(self._model.chunk_length) - self._overlap
        block_chunks = max(round(block_seconds * self.sample_rate / stride), 1)
        self.block_length = block_chunks * stride + self._overlap
        """Samples at 44.1 kHz the model sees at once: whole chunks of the model."""
        self._fade_in = dsp.fade_in(self._overlap)[:, np.newaxis]

    def separate_array(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        """Stems of a whole ``[samples, 2]`` float32 44.1 kHz mixture, in one model call."""
        return self._model(audio)

    def separate_blocks(self, blocks: Iterator[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """Stem segments, in order, of a stream of ``[frames, 2]`` 44.1 kHz blocks.

        Concatenated, the segments equal ``separate_array`` of the concatenated input (up to
        float rounding), while only one model block is held at a time.
        """
        step = self.block_length - self._overlap
        pending: dict[str, np.ndarray] | None = None
        windows = _windows(blocks, self.block_length, step)
        for window, last, stems in _mapped(self._model, windows, self._in_flight):
            if pending is not None:
                # Each side holds its own chunk alone here; the model's crossfade weights,
                # which sum to one, make the blend what the whole-song call computes.
                fade = slice(0, self._overlap)
                for name, output in stems.items():
                    output[fade] = (
                        self._fade_in * output[fade] + (1 - self._fade_in) * pending[name]
                    )
            end = len(window) if last else step
            yield {name: output[:end] for name, output in stems.items()}
            pending = {name: output[end : end + self._overlap] for name, output in stems.items()}

    def output_paths(
        self,
        input_path: str | os.PathLike[str],
        output_dir: str | os.PathLike[str],
        audio_format: str = "wav",
    ) -> dict[str, Path]:
        """Where ``separate_file`` writes each stem of ``input_path``."""
        folder = Path(output_dir) / Path(input_path).stem
        return {name: folder / f"{name}.{audio_format}" for name in self.stems}

    def separate_file(
        self,
        input_path: str | os.PathLike[str],
        output_dir: str | os.PathLike[str],
        *,
        audio_format: str = "wav",
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> dict[str, Path]:
        """Writes ``output_dir/<input name>/<stem>.<audio_format>`` at the input's rate.

        Mono inputs give mono stems, others stereo. All stems are written into a hidden folder
        first and moved into place only when every one is complete, so a failure leaves no
        output behind. Existing outputs are only replaced with ``overwrite=True``.
        """
        if audio_format not in AUDIO_FORMATS:
            raise ValueError(f"audio_format must be one of {AUDIO_FORMATS}, got {audio_format!r}")
        targets = self.output_paths(input_path, output_dir, audio_format)
        _refuse_existing(input_path, targets, overwrite)
        info = io.probe(input_path)
        blocks = io.iter_blocks(input_path, sample_rate=self.sample_rate, channels=2)
        channels = 1 if info.channels == 1 else 2
        folder = next(iter(targets.values())).parent
        staging = _staging_folder(folder)
        try:
            with contextlib.ExitStack() as stack:
                writers = {
                    name: stack.enter_context(
                        io.open_writer(staging / target.name, info.sample_rate, channels)
                    )
                    for name, target in targets.items()
                }
                converters = {
                    name: io.BlockConverter(self.sample_rate, info.sample_rate, channels)
                    for name in targets
                }

                def write(segment: dict[str, np.ndarray]) -> None:
                    for name, audio in segment.items():
                        writers[name].write(converters[name].convert(audio))

                # Encoding and writing a segment overlaps separating the next one; one write at
                # a time keeps memory bounded. Closed before the writers: their last write ends.
                pool = stack.enter_context(futures.ThreadPoolExecutor(1, "write"))
                writing: futures.Future[None] | None = None
                done = 0
                for segment in self.separate_blocks(blocks):
                    if writing is not None:
                        writing.result()
                    writing = pool.submit(write, segment)
                    done += len(next(iter(segment.values())))
                    if progress is not None:
                        progress(done / self.sample_rate, info.duration_seconds)
                if writing is not None:
                    writing.result()
                for name, converter in converters.items():
                    writers[name].write(converter.flush())
            _refuse_existing(input_path, targets, overwrite)
            _commit(staging, folder, targets)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return targets


def _load_model(model_dir: str | os.PathLike[str]) -> saved.Separator:
    model_path = Path(saved.resolve_export_dir(model_dir))
    if not (model_path / saved.METADATA_PATH).is_file():
        raise ModelNotFoundError(
            f"{model_path}: not a vocalsep model (no {saved.METADATA_PATH}); pass the "
            "directory written by vocalsep's exporter"
        )
    version = saved.read_metadata(model_path).get("format_version")
    if version != saved.METADATA_FORMAT_VERSION:
        raise ModelNotFoundError(
            f"{model_path}: exported in format {version}, this vocalsep reads format "
            f"{saved.METADATA_FORMAT_VERSION} (its chunk grid differs); export it again"
        )
    return saved.load_separator(model_path)


def _mapped(
    model: Callable[[np.ndarray], dict[str, np.ndarray]],
    windows: Iterator[tuple[np.ndarray, bool]],
    in_flight: int,
) -> Iterator[tuple[np.ndarray, bool, dict[str, np.ndarray]]]:
    """``(window, last, model(window))`` in input order, with up to ``in_flight`` calls running.

    Only ``in_flight`` windows are read ahead, so memory stays bounded. On an error (from the
    model or from reading the input) calls not yet started are cancelled before it propagates.
    """
    if in_flight == 1:
        for window, last in windows:
            yield window, last, model(window)
        return
    with futures.ThreadPoolExecutor(in_flight, thread_name_prefix="separate") as pool:
        pending: collections.deque[tuple[np.ndarray, bool, futures.Future]] = collections.deque()

        def finished() -> tuple[np.ndarray, bool, dict[str, np.ndarray]]:
            oldest_window, oldest_last, call = pending.popleft()
            return oldest_window, oldest_last, call.result()

        try:
            for window, last in windows:
                pending.append((window, last, pool.submit(model, window)))
                if len(pending) == in_flight:
                    yield finished()
            while pending:
                yield finished()
        finally:
            for _, _, call in pending:
                call.cancel()


def _windows(
    blocks: Iterator[np.ndarray], length: int, step: int
) -> Iterator[tuple[np.ndarray, bool]]:
    """Windows of ``length`` frames every ``step`` frames, each flagged whether it is the last.

    A window is only known not to be the last once input beyond it has arrived. Pieces are
    joined once per window, not once per block, to keep copying linear in the input length.
    """
    pieces: list[np.ndarray] = []
    buffered = 0
    for block in blocks:
        pieces.append(block)
        buffered += len(block)
        while buffered > length:
            joined = np.concatenate(pieces)
            yield joined[:length], False
            pieces = [joined[step:]]
            buffered -= step
    if pieces:
        yield np.concatenate(pieces), True


def _refuse_existing(
    input_path: str | os.PathLike[str], targets: dict[str, Path], overwrite: bool
) -> None:
    existing = [str(target) for target in targets.values() if target.exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            input_path, f"output {', '.join(existing)} already exists (use --overwrite)"
        )


def _staging_folder(folder: Path) -> Path:
    """A hidden folder beside the final one, so moving finished files in is a rename."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    except OSError as error:
        raise AudioWriteError(
            folder, f"cannot create the output folder: {error.strerror}"
        ) from None


def _commit(staging: Path, folder: Path, targets: dict[str, Path]) -> None:
    """Moves the finished stems into place: the whole folder at once when it is new."""
    try:
        if not folder.exists():
            staging.chmod(0o755)  # mkdtemp makes it private; the outputs are for everyone
            staging.rename(folder)
            return
        for target in targets.values():
            (staging / target.name).replace(target)
    except OSError as error:
        raise AudioWriteError(
            folder, f"cannot move the finished stems into place: {error}"
        ) from None
