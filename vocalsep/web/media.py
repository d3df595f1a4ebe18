"""What the page plays and shows: tracks re-encoded with vocalsep's own codecs, spectrograms.

Both work on files of any length in bounded memory: audio is streamed block by block, and a
spectrogram reads only the short windows it draws, by seeking.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from vocalsep.audio import io
from vocalsep.evaluation import report

SPECTROGRAM_COLUMNS = 960
"""Windows drawn per track, evenly spaced over the song; also the image width in pixels."""
SPECTROGRAM_HEIGHT = 160


def transcode(source: Path, target: Path, channels: int | None = None) -> None:
    """Writes ``source`` again as ``target`` (format from its extension), at the same rate.

    ``channels`` follows ``vocalsep.audio.io``'s channel rule (None keeps the source's). The
    target appears only when complete.
    """
    info = io.probe(source)
    blocks = io.iter_blocks(source, sample_rate=None, channels=channels)
    with io.open_writer(target, info.sample_rate, channels or info.channels) as writer:
        for block in blocks:
            writer.write(block)


def _log_magnitudes(path: Path) -> np.ndarray:
    """``[bins, SPECTROGRAM_COLUMNS]`` log magnitudes of windows spread evenly over a file."""
    with sf.SoundFile(path) as sound:
        window = report.SPECTROGRAM_N_FFT
        starts = np.linspace(0, max(sound.frames - window, 0), SPECTROGRAM_COLUMNS).round()
        columns = []
        for start in starts.astype(int):
            sound.seek(start)
            audio = sound.read(window, dtype="float32", always_2d=True)
            columns.append(report.magnitude_db(audio, sound.samplerate)[:, 0])
    return np.stack(columns, axis=1)


def draw_spectrograms(tracks: Mapping[str, Path], reference: str) -> dict[str, Path]:
    """A PNG beside each wav track, all on the ``reference`` track's level so they compare.

    As in the evaluation report: ``report.DYNAMIC_RANGE_DB`` below the reference's peak is
    black, frequencies up to ``report.SPECTROGRAM_MAX_HZ``, low at the bottom.
    """
    levels = {name: _log_magnitudes(path) for name, path in tracks.items()}
    peak = float(levels[reference].max())
    images = {}
    for name, decibels in levels.items():
        scaled = (decibels - peak + report.DYNAMIC_RANGE_DB) / report.DYNAMIC_RANGE_DB
        image = Image.fromarray(report.colour_map(scaled[::-1])).resize(
            (SPECTROGRAM_COLUMNS, SPECTROGRAM_HEIGHT), Image.Resampling.BILINEAR
        )
        target = tracks[name].with_suffix(".png")
        partial = target.with_name(f".{target.name}.partial")
        image.save(partial, format="PNG", optimize=True)
        partial.replace(target)
        images[name] = target
    return images
