"""The data stage end to end: LocalDagRunner, SQLite MLMD, Beam multi-processing workers.

One real run of ExampleGen -> ImportSchemaGen -> Transform over synthetic roots with planted
bad tracks; the tests then check the counts, the split, the transformed spectrograms (exact
remix), and the statistics against a direct computation with the shared DSP core.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from test_data_rejects import plant_bad_tracks
from tfx import v1 as tfx

from vocalsep.audio import dsp, synth
from vocalsep.data import roots
from vocalsep.data.config import IngestConfig, samples_for_frames
from vocalsep.data.examples import parse_example
from vocalsep.pipeline.data_stage import data_pipeline
from vocalsep.transforms import preprocessing

STFT = dsp.StftConfig()
FRAMES = 64
SEGMENT = samples_for_frames(FRAMES, STFT)
TRACK_SECONDS = 3.0
# Two workers in separate processes: anything the workers need must come from the package.
BEAM_ARGS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


@dataclass(frozen=True)
class Run:
    examples_uri: Path
    transform_graph_uri: Path
    transformed_uri: Path
    planted: dict[str, str]


def _newest(pattern: Path) -> Path:
    (path,) = sorted(pattern.parent.glob(pattern.name), key=lambda p: int(p.name))[-1:]
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    work = tmp_path_factory.mktemp("data_stage")
    synth.write_dataset(work / "hq", 4, TRACK_SECONDS, seed=7, layout="hq")
    synth.write_dataset(work / "folders", 2, TRACK_SECONDS, seed=8, layout="generic")
    planted = plant_bad_tracks(work / "folders", seconds=TRACK_SECONDS)
    dataset_roots = [
        roots.DatasetRoot(str(work / "hq"), split_rule="list", validation_tracks=("synth_002",)),
        roots.DatasetRoot(str(work / "folders"), split_rule="list", validation_tracks=("x",)),
    ]
    pipeline = data_pipeline(
        dataset_roots,
        str(work / "root"),
        str(work / "mlmd.sqlite"),
        ingest=IngestConfig(segment_samples=SEGMENT),
        beam_pipeline_args=BEAM_ARGS,
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    root = work / "root"
    return Run(
        examples_uri=_newest(root / "FileBasedExampleGen" / "examples" / "*"),
        transform_graph_uri=_newest(root / "Transform" / "transform_graph" / "*"),
        transformed_uri=_newest(root / "Transform" / "transformed_examples" / "*"),
        planted=planted,
    )


def _records(split_dir: Path) -> Iterator[bytes]:
    files = sorted(str(path) for path in split_dir.glob("*.gz"))
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        yield record.numpy()


def _raw(run: Run, split: str) -> list[dict[str, Any]]:
    return [parse_example(record) for record in _records(run.examples_uri / f"Split-{split}")]


def _transformed(run: Run) -> list[dict[str, np.ndarray]]:
    feature_spec = tft.TFTransformOutput(str(run.transform_graph_uri)).transformed_feature_spec()
    return [
        {
            name: value.numpy()
            for name, value in tf.io.parse_single_example(record, feature_spec).items()
        }
        for record in _records(run.transformed_uri / "Split-train")
    ]


def test_counts_match_inputs_minus_listed_rejects(run: Run) -> None:
    summary = json.loads((run.examples_uri / "summary.json").read_text())
    rejects = [
        json.loads(line) for line in (run.examples_uri / "rejects.jsonl").read_text().splitlines()
    ]
    assert {reject["track_id"]: reject["reason"] for reject in rejects} == {
        f"folders/{name}": reason for name, reason in run.planted.items()
    }
    assert summary["rejected"] == {reason: 1 for reason in run.planted.values()}
    # 4 HQ tracks (1 eval) and 2 good folder tracks are accepted; 3 s = two 64-frame segments.
    assert summary["tracks"] == {"train": 5, "eval": 1}
    train, evaluation = _raw(run, "train"), _raw(run, "eval")
    assert len(train) == summary["examples"]["train"] == 10
    assert [record["track_id"] for record in evaluation] == ["hq/synth_002"]
    assert evaluation[0]["num_samples"] == round(TRACK_SECONDS * 44100)
    assert "hq/synth_002" not in {record["track_id"] for record in train}
    tracks = [
        json.loads(line) for line in (run.examples_uri / "tracks.jsonl").read_text().splitlines()
    ]
    assert (
        len(tracks) + len(rejects) == summary["discovered"]["train"] + summary["discovered"]["eval"]
    )


def test_transformed_examples_have_the_expected_features(run: Run) -> None:
    spec = tft.TFTransformOutput(str(run.transform_graph_uri)).transformed_feature_spec()
    stft_shape = [FRAMES, STFT.num_bins, 2]
    for source in ("vocals", "accompaniment"):
        for part in ("real", "imag"):
            assert spec[preprocessing.stft_feature(source, part)].shape == stft_shape
    assert spec[preprocessing.MEAN_FEATURE].shape == [STFT.num_bins]
    assert set(spec) >= {"track_id", "root", "segment_index", "segment_start", "num_samples"}
    assert len(_transformed(run)) == len(_raw(run, "train"))


def _complex(example: dict[str, np.ndarray], source: str) -> np.ndarray:
    real = example[preprocessing.stft_feature(source, "real")]
    return real + 1j * example[preprocessing.stft_feature(source, "imag")]


def test_source_spectrograms_remix_exactly_to_the_mixture(run: Run) -> None:
    raw = {(r["track_id"], r["segment_index"]): r for r in _raw(run, "train")}
    for example in _transformed(run):
        segment = raw[(example["track_id"].decode(), int(example["segment_index"]))]
        mixture = dsp.stft(segment["vocals"] + segment["accompaniment"], STFT).numpy()
        remixed = _complex(example, "vocals") + _complex(example, "accompaniment")
        assert np.linalg.norm(remixed - mixture) <= 1e-4 * np.linalg.norm(mixture)
        vocals = dsp.stft(segment["vocals"], STFT).numpy()
        np.testing.assert_allclose(_complex(example, "vocals"), vocals, atol=1e-5)


def test_statistics_are_per_bin_over_all_training_frames(run: Run) -> None:
    examples = _transformed(run)
    magnitudes = np.concatenate(
        [
            np.log1p(np.abs(_complex(e, "vocals") + _complex(e, "accompaniment")))
            .transpose(0, 2, 1)
            .reshape(-1, STFT.num_bins)
            for e in examples
        ]
    )
    mean, scale = preprocessing.read_statistics(str(run.transformed_uri / "Split-train" / "*.gz"))
    assert mean.shape == scale.shape == (STFT.num_bins,)
    assert np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()
    np.testing.assert_allclose(
        mean, magnitudes.mean(axis=0, dtype=np.float64), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        scale, magnitudes.std(axis=0, dtype=np.float64), rtol=1e-3, atol=1e-5
    )
    for example in examples:  # the same constants in every example
        np.testing.assert_array_equal(example[preprocessing.SCALE_FEATURE], scale)


def test_segments_of_another_length_fail_with_a_clear_message() -> None:
    samples = 100
    flat = tf.sparse.from_dense(tf.ones([1, 2 * samples]))
    inputs = {
        "num_samples": tf.constant([samples], tf.int64),
        "vocals": flat,
        "accompaniment": flat,
    }
    vocals, _ = preprocessing._segment_waveforms(inputs, samples)
    assert vocals.shape == (1, samples, 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="must hold 64-sample segments"):
        preprocessing._segment_waveforms(inputs, 64)
