"""A 30-minute song through `vocalsep separate`: memory stays bounded, nothing is cut short.

The model is a tiny random-weight export (what is tested is the block streaming, not the
weights); the default model's memory on long songs is in BENCHMARKS.md.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import soundfile
import tf_keras as keras

from vocalsep.model import export, unet

MINUTES = 30
RATE = 44100
# Whole-song decoding would hold 30 min x 2 channels x 4 bytes = 605 MiB per copy (input and
# two stems at least) on top of TensorFlow's ~600 MiB; streaming in blocks stays under the
# 1.5 GB the issue allows a 3-minute song.
PEAK_RSS_LIMIT_MIB = 1500


def _write_long_song(path: Path) -> None:
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(path, "w", RATE, 2, "PCM_16") as song:
        for minute in range(MINUTES):
            time_s = np.arange(60 * RATE)[:, np.newaxis] / RATE + 60 * minute
            tones = 0.2 * np.sin(2 * np.pi * np.array([[220.0, 330.0]]) * time_s)
            song.write(tones + 0.01 * rng.standard_normal(tones.shape))


def _peak_rss_mib(command: list[str]) -> tuple[int, float, str]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    finished = threading.Event()

    def sample() -> None:
        nonlocal peak
        watched = psutil.Process(process.pid)
        while not finished.is_set():
            with contextlib.suppress(psutil.Error):
                peak = max(peak, watched.memory_info().rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    finished.set()
    sampler.join()
    return process.returncode, peak / 2**20, stderr


@pytest.mark.slow
def test_thirty_minutes_stream_through_in_bounded_memory(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    config = unet.UNetConfig.tiny()
    model_dir = export.export_saved_model(
        unet.build_unet(config),
        np.zeros(config.model_bins, np.float32),
        np.ones(config.model_bins, np.float32),
        config,
        export.InferenceConfig(),
        tmp_path / "model",
    )
    song = tmp_path / "long.wav"
    _write_long_song(song)
    command = [
        sys.executable, "-m", "vocalsep", "separate", "--quiet", str(song),
        "-o", str(tmp_path / "out"), "--model", str(model_dir),
    ]  # fmt: skip
    returncode, peak_mib, stderr = _peak_rss_mib(command)
    assert returncode == 0, stderr
    print(f"peak RSS separating {MINUTES} min: {peak_mib:.0f} MiB")
    assert peak_mib < PEAK_RSS_LIMIT_MIB
    for stem in ("vocals", "accompaniment"):
        info = soundfile.info(tmp_path / "out" / "long" / f"{stem}.wav")
        assert (info.frames, info.samplerate, info.channels) == (MINUTES * 60 * RATE, RATE, 2)
