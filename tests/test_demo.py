"""The README's first command: the whole pipeline, served, separating a song; then the cache.

Both runs must leave a clean terminal: only the demo's own progress and results.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from vocalsep.pipeline import demo


def _demo(root: Path, *options: str) -> subprocess.CompletedProcess[str]:
    # As a person runs it: TensorFlow's C++ log level left to vocalsep (the tests set one).
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-m", "vocalsep", "demo", "--root", str(root), *options],
        capture_output=True,
        text=True,
        timeout=1200,
        env=environment,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _assert_only_its_own_lines(result: subprocess.CompletedProcess[str]) -> None:
    """No TensorFlow C++ log line (its own process's or a Beam worker's), no traceback, nothing
    on stderr: every line is the demo's progress ("[demo] ...") or its results ("  name: path")."""
    output = result.stdout + result.stderr
    assert not re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] ", output, re.M), output
    assert ".cc:" not in output and "Traceback" not in output, output
    assert "Exception ignored" not in output, output
    assert result.stderr == "", result.stderr[-3000:]
    for line in result.stdout.splitlines():
        assert line.startswith(("[demo] ", "  ")), line


@pytest.mark.slow
def test_demo_runs_end_to_end_then_reuses_every_cached_result(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    first = _demo(root)
    _assert_only_its_own_lines(first)
    assert "reused cached" not in first.stdout
    assert (
        "[demo] executed: FileBasedExampleGen, ImportSchemaGen, Transform, Trainer, "
        "SdrEvaluator, Pusher" in first.stdout
    )
    (version,) = (root / "serving" / "vocalsep").iterdir()
    mix, rate = soundfile.read(root / "demo_mix.wav", dtype="float32")
    vocals, _ = soundfile.read(root / "stems" / "demo_mix" / "vocals.wav", dtype="float32")
    accompaniment, _ = soundfile.read(
        root / "stems" / "demo_mix" / "accompaniment.wav", dtype="float32"
    )
    assert vocals.shape == accompaniment.shape == mix.shape
    assert rate == 44100
    # Soft masks split the mix: the stems add back up to it (to 16-bit output precision).
    np.testing.assert_allclose(vocals + accompaniment, mix, atol=2e-3)
    (report,) = (root / "pipeline" / "SdrEvaluator" / "report").glob("*/report.html")
    assert "<audio" in report.read_text()
    assert f"report: {report}" in first.stdout

    second = _demo(root)
    _assert_only_its_own_lines(second)
    assert "reused cached results of 6 of 6" in second.stdout
    assert [path.name for path in (root / "serving" / "vocalsep").iterdir()] == [version.name]


@pytest.mark.slow
def test_demo_in_containers_runs_pipeline_yaml_under_kfp_local_and_serves_from_the_image(
    tmp_path: Path,
) -> None:
    """`vocalsep demo --orchestrator kfp-local` (needs the image: see tests/test_kfp_local.py)."""
    from test_kfp_local import _need_containers

    _need_containers()
    root = tmp_path / "demo"
    result = _demo(root, "--orchestrator", "kfp-local")
    _assert_only_its_own_lines(result)
    for step in ("FileBasedExampleGen", "ImportSchemaGen", "Transform", "Trainer", "Pusher"):
        assert re.search(rf"^\[demo\] {step}: success in \d+ s$", result.stdout, re.M), step
    assert re.search(r"^\[demo\] SdrEvaluator: BLESSED", result.stdout, re.M)
    assert "[demo] vocalsep serve in a container of" in result.stdout
    (version,) = (root / "serving" / "vocalsep").iterdir()
    assert f"served model: {version}" in result.stdout
    mix, _ = soundfile.read(root / "demo_mix.wav", dtype="float32")
    vocals, _ = soundfile.read(root / "stems" / "demo_mix" / "vocals.wav", dtype="float32")
    assert vocals.shape == mix.shape
    (report,) = root.glob("vocalsep-demo-*/*/report/report.html")
    assert f"report: {report}" in result.stdout
    (log,) = (root / "logs").glob("kfp-local-*.log")
    assert "Executing task" in log.read_text()  # every container's output is kept there


@pytest.mark.slow
def test_demo_on_the_portable_runner_runs_every_beam_dofn_in_the_images_workers(
    tmp_path: Path,
) -> None:
    """`vocalsep demo --beam-runner portable` (needs the image: see tests/test_portable.py):
    ExampleGen and Transform on Beam's portable runner, a worker pool container started and
    stopped by the command; a second run reuses every cached result, the pool's included."""
    from test_kfp_local import _need_containers

    _need_containers()
    root = tmp_path / "demo"
    first = _demo(root, "--beam-runner", "portable")
    _assert_only_its_own_lines(first)
    assert "[demo] ExampleGen and Transform on Beam's portable runner" in first.stdout
    assert (
        "[demo] executed: FileBasedExampleGen, ImportSchemaGen, Transform, Trainer, "
        "SdrEvaluator, Pusher" in first.stdout
    )
    assert re.search(r"^\[demo\] SdrEvaluator: BLESSED", first.stdout, re.M)
    (version,) = (root / "serving" / "vocalsep").iterdir()
    vocals, _ = soundfile.read(root / "stems" / "demo_mix" / "vocals.wav", dtype="float32")
    assert vocals.size
    log = (root / "beam-workers.log").read_text()
    # ExampleGen and Transform: a worker each, booted in the image; then the pool stopped.
    assert log.count("Starting worker with command ['/opt/venv/bin/vocalsep-beam-boot'") == 2
    assert re.search(r"Beam worker pool stopped, reaped 2 workers; the largest peak RSS \d+", log)
    second = _demo(root, "--beam-runner", "portable")
    assert "reused cached results of 6 of 6" in second.stdout
    assert [path.name for path in (root / "serving" / "vocalsep").iterdir()] == [version.name]


def test_demo_config_gates_above_the_mixture_and_validates_on_held_out_songs(
    tmp_path: Path,
) -> None:
    config = demo.demo_config(tmp_path)
    assert config.evaluator_config().floor_db == demo.DEMO_FLOOR_DB > 0
    (root,) = config.data_roots
    assert root.validation_tracks == demo.DEMO_EVAL_TRACKS
    assert config.trainer_custom_config()["eval_roots"] == [root.to_dict()]
    assert config.ingest.segment_samples >= config.trainer.unet_config().patch_frames
