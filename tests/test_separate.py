"""`vocalsep separate` and the Separator behind it, on a tiny random-weight exported model.

Random weights separate nonsense, but what the command promises regardless of the weights is
checked: output layout, rate, channels and length; stems summing to the input; block-wise
streaming giving the whole-song result; overwrite refusal; and per-file failures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import tensorflow as tf
import tf_keras as keras

from vocalsep import cli
from vocalsep.audio import io
from vocalsep.errors import AudioWriteError, ModelNotFoundError
from vocalsep.model import export, saved, unet
from vocalsep.separator import Separator

TINY = unet.UNetConfig.tiny()
# Short model chunks, so that small blocks and many joins fit in a few seconds of audio.
INFERENCE = export.InferenceConfig(chunk_seconds=0.2, overlap_seconds=0.02)
RATE = 44100


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keras.utils.set_random_seed(0)
    model = unet.build_unet(TINY)
    mean = np.full(TINY.model_bins, 0.5, np.float32)
    scale = np.full(TINY.model_bins, 2.0, np.float32)
    return export.export_saved_model(
        model, mean, scale, TINY, INFERENCE, tmp_path_factory.mktemp("model") / "tiny"
    )


@pytest.fixture(scope="module")
def separator(model_dir: Path) -> Separator:
    return Separator(model_dir, block_seconds=1.0)


def _music(seconds: float, rate: int, channels: int, noise: float = 0.01) -> np.ndarray:
    """Tones plus quiet noise, well inside [-1, 1] so no stem clips.

    10 ms fades keep the edges smooth, so resampling does not ring there.
    """
    time = np.arange(round(seconds * rate))[:, np.newaxis] / rate
    fade = np.minimum(np.minimum(time, seconds - time) / 0.01, 1.0)
    tones = 0.2 * np.sin(2 * np.pi * np.array([[220.0, 331.0]])[:, :channels] * time)
    tones += 0.1 * np.sin(2 * np.pi * 1250.0 * time)
    hiss = np.random.default_rng(0).standard_normal(tones.shape)
    return (fade * tones + noise * hiss).astype(np.float32)


def _separate(*args: str) -> int:
    return cli.main(["separate", "--quiet", *args])


@pytest.mark.parametrize("chunks_per_block", [None, 1])
def test_blockwise_streaming_matches_the_whole_song_call(
    separator: Separator, model_dir: Path, chunks_per_block: int | None
) -> None:
    if chunks_per_block is not None:  # as the default block length does with the shipped model
        chunk_seconds = saved.read_metadata(model_dir)["chunk_length"] / RATE
        separator = Separator(model_dir, block_seconds=chunks_per_block * chunk_seconds)
        assert separator.block_length == saved.read_metadata(model_dir)["chunk_length"]
    mixture = _music(5.0, RATE, 2)
    expected = separator.separate_array(mixture)
    window_lengths: list[int] = []
    model = separator._model

    def recording_model(window: np.ndarray) -> dict[str, np.ndarray]:
        window_lengths.append(len(window))
        return model(window)

    separator._model = recording_model  # type: ignore[assignment]
    try:
        blocks = (mixture[start : start + 10000] for start in range(0, len(mixture), 10000))
        segments = list(separator.separate_blocks(blocks))
    finally:
        separator._model = model
    assert len(window_lengths) >= 5, window_lengths
    assert max(window_lengths) == separator.block_length
    for stem in separator.stems:
        streamed = np.concatenate([segment[stem] for segment in segments])
        assert streamed.shape == mixture.shape
        # Exact agreement everywhere, block joins included.
        np.testing.assert_allclose(streamed, expected[stem], atol=1e-5)


def test_separates_each_input_at_its_rate_and_channels(tmp_path: Path, model_dir: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    stereo = _music(1.3, RATE, 2)
    # No noise: the round trip through the model's 44.1 kHz would cut it near 11 kHz.
    mono = _music(1.1, 22050, 1, noise=0.0)
    soundfile.write(inputs / "stereo.wav", stereo, RATE, subtype="FLOAT")
    soundfile.write(inputs / "mono.flac", mono, 22050, subtype="PCM_24")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(inputs / "stereo.wav"), str(inputs / "song.mp3")],
        check=True,
    )
    out = tmp_path / "out"
    paths = [str(inputs / name) for name in ("stereo.wav", "mono.flac", "song.mp3")]
    assert _separate(*paths, "-o", str(out), "--model", str(model_dir)) == cli.EXIT_OK
    assert sorted(entry.name for entry in out.iterdir()) == ["mono", "song", "stereo"]

    for name, rate, source in (
        ("stereo", RATE, stereo),
        ("mono", 22050, mono),
        ("song", RATE, io.read_audio(inputs / "song.mp3", sample_rate=None, channels=None)),
    ):
        stems = {}
        for stem in ("vocals", "accompaniment"):
            audio, file_rate = soundfile.read(out / name / f"{stem}.wav", dtype="float32")
            assert file_rate == rate
            stems[stem] = audio.reshape(len(audio), -1)
            assert stems[stem].shape == source.shape, (name, stem)
        # Soft masks sum to one; what is left is 16-bit quantisation and resampling.
        np.testing.assert_allclose(stems["vocals"] + stems["accompaniment"], source, atol=1e-3)


def test_mp3_output(tmp_path: Path, model_dir: Path) -> None:
    source = tmp_path / "tune.wav"
    soundfile.write(source, _music(1.0, 32000, 2), 32000)
    out = tmp_path / "out"
    assert _separate(str(source), "-o", str(out), "--model", str(model_dir), "--format", "mp3") == 0
    for stem in ("vocals", "accompaniment"):
        info = io.probe(out / "tune" / f"{stem}.mp3")
        assert (info.sample_rate, info.channels, info.codec) == (32000, 2, "mp3")


def test_refuses_to_overwrite_unless_asked(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "song.wav"
    soundfile.write(source, _music(0.5, RATE, 2), RATE)
    out = tmp_path / "out"
    command = [str(source), "-o", str(out), "--model", str(model_dir), "--format", "flac"]
    assert _separate(*command) == cli.EXIT_OK
    vocals = out / "song" / "vocals.flac"
    before = vocals.read_bytes()
    vocals.write_bytes(b"keep me")
    capsys.readouterr()

    assert _separate(*command) == cli.EXIT_FAILED
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"vocalsep: error: {source}: ") and "--overwrite" in error
    assert vocals.read_bytes() == b"keep me"

    assert _separate(*command, "--overwrite") == cli.EXIT_OK
    assert vocals.read_bytes() == before
    assert sorted(path.name for path in out.rglob("*")) == [
        "accompaniment.flac",
        "song",
        "vocals.flac",
    ]


def test_bad_inputs_are_reported_and_the_others_finish(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.wav"
    soundfile.write(good, _music(0.5, RATE, 2), RATE)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_text("this is not audio\n")
    missing = tmp_path / "missing.flac"
    out = tmp_path / "out"
    paths = [str(corrupt), str(missing), str(good)]
    assert _separate(*paths, "-o", str(out), "--model", str(model_dir)) == cli.EXIT_FAILED
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"vocalsep: error: {corrupt}: ")
    assert errors[1].startswith(f"vocalsep: error: {missing}: ")
    assert f"{good} -> {out / 'good'}" in captured.out
    assert [path.name for path in out.iterdir()] == ["good"]


def test_a_failure_while_writing_leaves_no_output(separator: Separator, tmp_path: Path) -> None:
    source = tmp_path / "song.wav"
    soundfile.write(source, _music(3.0, RATE, 2), RATE)

    def failing_progress(done: float, total: float | None) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        separator.separate_file(source, tmp_path / "out", progress=failing_progress)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_failure_in_the_writing_thread_stops_the_file_and_leaves_no_output(
    separator: Separator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Segments are written on a second thread; its error must reach the caller."""
    source = tmp_path / "song.wav"
    soundfile.write(source, _music(3.0, RATE, 2), RATE)
    write = io.AudioWriter.write
    written: list[int] = []

    def failing_write(writer: io.AudioWriter, block: np.ndarray) -> None:
        if len(written) == 3:
            raise AudioWriteError(source, "encoder died")
        written.append(len(block))
        write(writer, block)

    monkeypatch.setattr(io.AudioWriter, "write", failing_write)
    with pytest.raises(AudioWriteError, match="encoder died"):
        separator.separate_file(source, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    assert len(written) == 3


def test_default_model_errors_name_the_folder_and_help_stays_light(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOCALSEP_MODEL_DIR", str(tmp_path / "nowhere"))
    assert cli.main(["separate", "song.wav", "-o", str(tmp_path)]) == cli.EXIT_FAILED
    error = capsys.readouterr().err
    assert f"{tmp_path / 'nowhere'}: no default model there; pass --model DIR" in error
    assert cli.main(["separate", "song.wav", "-o", str(tmp_path), "--model", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith(f"vocalsep: error: {tmp_path}: not a vocalsep model")
    probe = (
        "import sys, vocalsep.cli as cli\n"
        "try:\n    cli.main(['separate', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'separate' in cli.build_parser().format_help()\n"
        "sys.exit('tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    help_text = " ".join(result.stdout.split())
    assert "--model DIR" in help_text and "default: the shipped model" in help_text


def test_a_model_exported_in_an_older_format_is_refused(tmp_path: Path, model_dir: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    metadata_file = old / saved.METADATA_PATH
    metadata = json.loads(metadata_file.read_text())
    metadata_file.write_text(json.dumps({**metadata, "format_version": 1}))
    with pytest.raises(ModelNotFoundError, match=r"exported in format 1.*export it again"):
        Separator(old)


def test_native_bfloat16_is_read_from_the_cpu_flags() -> None:
    assert saved.native_bfloat16("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 fma\n")
    assert saved.native_bfloat16("flags\t: sse2 amx_bf16 amx_tile\n")
    assert not saved.native_bfloat16("flags\t: sse2 avx2 avx512f\nbugs\t: avx512_bf16\n")


def test_bfloat16_precision_stays_close_to_float32_and_is_undone_after(
    tmp_path: Path, model_dir: Path
) -> None:
    source = tmp_path / "song.wav"
    soundfile.write(source, _music(2.0, RATE, 2), RATE, subtype="FLOAT")
    vocals = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / precision
        assert _separate(str(source), "-o", str(out), "--model", str(model_dir),
                         "--precision", precision) == cli.EXIT_OK  # fmt: skip
        vocals[precision], _ = soundfile.read(out / "song" / "vocals.wav", dtype="float32")
        options = tf.config.optimizer.get_experimental_options()
        assert not options.get(saved.ONEDNN_BFLOAT16_OPTION, False)
    # 16-bit output: differences below one step would not show.
    difference = np.abs(vocals["bfloat16"] - vocals["float32"]).max()
    assert difference < 0.01
    if saved.native_bfloat16():
        assert difference > 0  # the option took effect (elsewhere oneDNN may skip the rewrite)
    with pytest.raises(SystemExit):
        _separate(str(source), "-o", str(tmp_path / "x"), "--precision", "float16")


SEPARATE_IN_A_FRESH_PROCESS = """
import sys
from vocalsep import cli
status = cli.main(sys.argv[1:])
loaded = [name for name in cli.UNUSED_BY_SEPARATE if sys.modules.get(name) is not None]
print("loaded:", loaded)
sys.exit(status)
"""


def test_a_separate_process_runs_without_keras_or_the_google_api_client_and_quietly(
    tmp_path: Path, model_dir: Path
) -> None:
    source = tmp_path / "song.wav"
    soundfile.write(source, _music(1.0, RATE, 2), RATE)
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-c", SEPARATE_IN_A_FRESH_PROCESS, "separate", "--quiet",
         str(source), "-o", str(tmp_path / "out"), "--model", str(model_dir)],
        capture_output=True, text=True, check=False, env=environment,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded: []" in result.stdout
    # No TensorFlow C++ log lines (they name their source files).
    assert ".cc:" not in result.stderr, result.stderr[-2000:]
    assert (tmp_path / "out" / "song" / "vocals.wav").exists()
