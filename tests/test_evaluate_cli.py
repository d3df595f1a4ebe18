"""`vocalsep evaluate`: the real command on a tiny exported model and synthetic songs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tf_keras as keras

from vocalsep import cli
from vocalsep.audio import synth
from vocalsep.evaluation import sources
from vocalsep.model import export, unet

TINY = unet.UNetConfig.tiny()
INFERENCE = export.InferenceConfig(chunk_seconds=1.0, overlap_seconds=0.1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keras.utils.set_random_seed(0)
    return export.export_saved_model(
        unet.build_unet(TINY),
        np.full(TINY.model_bins, 0.5, np.float32),
        np.full(TINY.model_bins, 2.0, np.float32),
        TINY,
        INFERENCE,
        tmp_path_factory.mktemp("model") / "export",
    )


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("songs") / "songs"
    synth.write_dataset(root, 3, 2.0, seed=7, layout="generic")
    (root / "broken").mkdir()  # a track with no vocal stem: skipped, not fatal
    (root / "broken" / "bass.wav").write_bytes(b"not audio")
    return root


@pytest.mark.slow
def test_prints_the_table_and_writes_json_and_report(
    model_dir: Path, songs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(
        [
            "evaluate",
            "--model",
            str(model_dir),
            "--data",
            str(songs),
            "--split",
            "all",
            "--baseline",
            str(model_dir),
            "--min-improvement-db",
            "0.5",
            "--json",
            str(tmp_path / "out" / "metrics.json"),
            "--report",
            str(tmp_path / "out" / "report.html"),
            "--report-tracks",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert status == cli.EXIT_OK
    assert "vocals        SDR" in out and "accompaniment MDX SDR" in out
    assert all(f"songs/synth_00{index}" in out for index in range(3))
    assert "skipped songs/broken: missing_stem" in out
    # The same model as its own baseline: no improvement, so not blessed.
    assert "verdict: NOT BLESSED" in out
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    candidate = metrics["models"]["candidate"]
    assert len(candidate["tracks"]) == 3
    assert candidate["aggregate"] == metrics["models"]["baseline"]["aggregate"]
    assert f"{candidate['aggregate']['vocals']['SDR']:.2f}" in out
    assert metrics["decision"]["blessed"] is False
    assert metrics["config"]["min_improvement_db"] == 0.5
    assert metrics["cost"]["museval_scorings"] == 6
    assert (tmp_path / "out" / "report.html").stat().st_size > 10_000


def test_eval_split_of_a_root_is_the_one_the_example_gen_uses(
    model_dir: Path, songs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A hash split over 3 songs has no eval track here (10% eval): said plainly, status 1.
    status = cli.main(["evaluate", "--model", str(model_dir), "--data", str(songs)])
    assert status == cli.EXIT_FAILED
    assert "no track could be scored" in capsys.readouterr().err


def test_a_missing_model_dir_or_empty_data_root_is_one_clear_error(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-model"
    assert cli.main(["evaluate", "--model", str(missing), "--data", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert str(missing) in error and "not a model exported by vocalsep" in error
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["evaluate", "--model", str(model_dir), "--data", str(empty)]) == 1
    error = capsys.readouterr().err
    assert str(empty) in error and "no track folders or audio files" in error


def test_a_musdb_folder_with_subsets_is_read_from_train(tmp_path: Path) -> None:
    synth.write_dataset(tmp_path / "musdb18" / "train", 1, 1.0, seed=1, layout="stems")
    (tmp_path / "musdb18" / "test").mkdir()
    root = sources.dataset_root(str(tmp_path / "musdb18"))
    assert (root.path, root.name, root.split_rule) == (
        str(tmp_path / "musdb18" / "train"),
        "musdb18",
        "musdb",
    )
    plain = sources.dataset_root(str(tmp_path / "musdb18" / "train"))
    assert (plain.path, plain.split_rule) == (str(tmp_path / "musdb18" / "train"), "auto")
