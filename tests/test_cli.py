"""The `vocalsep` command as a user runs it: a real process, real files, real exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from vocalsep import __version__

VOCALSEP = [sys.executable, "-m", "vocalsep"]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VOCALSEP, *args], capture_output=True, text=True, cwd=cwd, check=False, timeout=300
    )


def _sine_wav(path: Path, seconds: float = 0.5, sample_rate: int = 22050) -> Path:
    time = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * time)
    soundfile.write(path, np.stack([tone, 0.5 * tone], axis=1), sample_rate, subtype="PCM_16")
    return path


def test_version_and_help() -> None:
    version = _run("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"vocalsep {__version__}"
    help_text = _run("--help")
    assert help_text.returncode == 0
    for command in ("info", "convert", "synth", "demo"):
        assert command in help_text.stdout


def test_help_does_not_import_tensorflow() -> None:
    probe = (
        "import sys, vocalsep.cli as cli; cli.build_parser().format_help(); "
        "sys.exit('tensorflow' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


def test_no_command_is_a_usage_error() -> None:
    result = _run()
    assert result.returncode == 2
    assert "COMMAND" in result.stderr


def test_info_reports_each_file_and_fails_only_the_bad_one(tmp_path: Path) -> None:
    good = _sine_wav(tmp_path / "good.wav")
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio\n")
    missing = tmp_path / "missing.flac"
    result = _run("info", str(good), str(bad), str(missing))
    assert result.returncode == 1
    assert f"{good}: " in result.stdout
    assert "22050 Hz, 2 ch, 0.500 s" in result.stdout
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"vocalsep: error: {bad}: ")
    assert errors[1].startswith(f"vocalsep: error: {missing}: ")
    assert "Traceback" not in result.stderr


def test_convert_resamples_and_refuses_to_overwrite(tmp_path: Path) -> None:
    source = _sine_wav(tmp_path / "in.wav")
    target = tmp_path / "out.flac"
    result = _run("convert", str(source), str(target), "--sample-rate", "44100")
    assert result.returncode == 0, result.stderr
    audio, sample_rate = soundfile.read(target, dtype="float32")
    assert sample_rate == 44100
    assert audio.shape == (44100 // 2, 2)

    before = target.read_bytes()
    again = _run("convert", str(source), str(target))
    assert again.returncode == 1
    assert "exists" in again.stderr and "--overwrite" in again.stderr
    assert target.read_bytes() == before


def test_convert_of_bad_input_writes_nothing(tmp_path: Path) -> None:
    truncated = tmp_path / "cut.wav"
    _sine_wav(tmp_path / "whole.wav", seconds=2.0)
    whole = (tmp_path / "whole.wav").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    target = tmp_path / "out.wav"
    result = _run("convert", str(truncated), str(target))
    assert result.returncode == 1
    assert str(truncated) in result.stderr
    assert "trunc" in result.stderr.lower()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cut.wav", "whole.wav"]


def test_synth_writes_a_dataset(tmp_path: Path) -> None:
    result = _run("synth", str(tmp_path / "set"), "--tracks", "2", "--seconds", "1")
    assert result.returncode == 0, result.stderr
    folders = sorted(path for path in (tmp_path / "set").iterdir() if path.is_dir())
    assert len(folders) == 2
    for folder in folders:
        names = {path.name for path in folder.iterdir()}
        assert names == {"mixture.wav", "drums.wav", "bass.wav", "other.wav", "vocals.wav"}


@pytest.mark.parametrize("layout", ["generic", "stems"])
def test_synth_layouts(tmp_path: Path, layout: str) -> None:
    result = _run("synth", str(tmp_path), "--tracks", "1", "--seconds", "0.5", "--layout", layout)
    assert result.returncode == 0, result.stderr
    (folder,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    assert "vocals.wav" in {path.name for path in folder.iterdir()}
