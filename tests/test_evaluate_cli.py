"""`vocalsep evaluate`: the real command on a tiny exported model and synthetic songs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tf_keras as keras

from vocalsep import cli
from vocalsep.audio import io, synth
from vocalsep.evaluation import evaluate, sources
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


def _scaled_mixture_dataset(root: Path) -> None:
    """Two hq tracks: synth_000's mixture.wav rewritten to half the stems' sum plus a tone (so
    it is plainly not their sum), synth_001's removed (so only the stems are there)."""
    first, second = synth.write_dataset(root, 2, 1.0, seed=3, layout="hq")
    mixture = io.read_audio(first / "mixture.wav")
    tone = 0.05 * np.sin(np.arange(len(mixture)) * 0.01)[:, np.newaxis]
    io.write_audio(
        first / "mixture.wav", (0.5 * mixture + tone).astype(np.float32), 44100, subtype="FLOAT"
    )
    (second / "mixture.wav").unlink()


def test_evaluate_separates_the_dataset_mixture_where_a_track_has_one(tmp_path: Path) -> None:
    _scaled_mixture_dataset(tmp_path / "songs")
    tracks = list(sources.tracks_from_root(sources.dataset_root(str(tmp_path / "songs")), "all"))
    own, summed = sorted(tracks, key=lambda track: track.track_id)
    written = io.read_audio(tmp_path / "songs" / "synth_000" / "mixture.wav")
    np.testing.assert_array_equal(own.mixture, written)
    assert np.max(np.abs(own.mixture - (own.vocals + own.accompaniment))) > 0.05
    assert summed.dataset_mixture is None
    np.testing.assert_array_equal(summed.mixture, summed.vocals + summed.accompaniment)
    # What `evaluate` hands each model is that mixture (a real scoring run, not a look at it).
    received: list[np.ndarray] = []

    def halves(mixture: np.ndarray) -> dict[str, np.ndarray]:
        received.append(mixture)
        return {"vocals": 0.5 * mixture, "accompaniment": 0.5 * mixture}

    result = evaluate.evaluate({"halves": ("halves", halves)}, tracks, workers=1)
    assert len(result.models["halves"].tracks) == 2
    np.testing.assert_array_equal(received[0], written)
    np.testing.assert_array_equal(received[1], summed.vocals + summed.accompaniment)
    assert "own mixture" in evaluate.json_text(result.to_dict())


def test_a_mixture_file_of_another_length_skips_the_track(tmp_path: Path) -> None:
    (folder,) = synth.write_dataset(tmp_path / "songs", 1, 1.0, seed=4, layout="hq")
    mixture = io.read_audio(folder / "mixture.wav")
    io.write_audio(folder / "mixture.wav", mixture[:-5000], 44100, subtype="FLOAT")
    (skipped,) = sources.tracks_from_root(sources.dataset_root(str(tmp_path / "songs")), "all")
    assert isinstance(skipped, evaluate.SkippedTrack)
    assert skipped.reason.startswith("length_mismatch") and "mixture" in skipped.reason


def test_musdb_clips_are_scored_on_their_mixture_stream(shared_data: Path) -> None:
    root = sources.dataset_root(str(shared_data / "musdb18-7"))
    track = next(t for t in sources.tracks_from_root(root) if isinstance(t, evaluate.EvalTrack))
    name = track.track_id.split("/", 1)[1]
    stream_zero = io.read_audio(shared_data / "musdb18-7" / "train" / f"{name}.stem.mp4")
    np.testing.assert_array_equal(track.mixture, stream_zero[: len(track.vocals)])
    # Coded on its own, the mixture stream is close to the stems' sum but not equal to it.
    difference = track.mixture - (track.vocals + track.accompaniment)
    assert 0 < np.max(np.abs(difference)) < 0.5
