"""SdrEvaluator in a real LocalDagRunner pipeline with the real ExampleGen and the stock Pusher.

Two honest models: a tiny U-Net trained for a few steps on synthetic songs (good) and the same
network with random weights (bad); the trained one scores about 3 dB higher on the eval tracks.
Run 1 serves nothing yet, so the trained model is judged on the floor alone and pushed. Run 2
offers the random model, which is worse than the served one: not blessed, and the Pusher
writes no new version.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tf_keras as keras
from ml_metadata.metadata_store import metadata_store
from test_trainer import INFERENCE, _config
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tiny_training import feature_spec, segments, statistics, synthetic_track, write_transformed

from vocalsep.audio import synth
from vocalsep.components.evaluator.component import HtmlReport, SdrEvaluator
from vocalsep.components.evaluator.executor import Executor
from vocalsep.components.example_gen.component import multitrack_example_gen
from vocalsep.data import roots
from vocalsep.data.config import IngestConfig
from vocalsep.errors import NoEvalTracksError
from vocalsep.evaluation.gate import EvaluatorConfig
from vocalsep.model import export, trainer, unet
from vocalsep.serving import push

MODEL_NAME = "vocalsep"
EVAL_TRACKS = ("synth_000", "synth_001")


def _train_good_model(work: Path, target: Path) -> tuple[np.ndarray, np.ndarray]:
    """A tiny U-Net trained for 100 steps, exported to ``target``; returns its statistics."""
    train_segments = segments([synthetic_track(10 + index) for index in range(4)])
    mean, scale = statistics(train_segments)
    write_transformed(work / "train.gz", train_segments, mean, scale)
    trainer.train(
        _config(steps=100, steps_per_epoch=50),
        [str(work / "train.gz")],
        feature_spec(),
        mean,
        scale,
        work / "run",
        serving_model_dir=target,
    )
    return mean, scale


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Model artifact folders as the Trainer writes them (the export under Format-Serving)."""
    work = tmp_path_factory.mktemp("models")
    good = work / "good" / "Format-Serving"
    mean, scale = _train_good_model(work, good)
    keras.utils.set_random_seed(0)
    bad = work / "bad" / "Format-Serving"
    tiny = unet.UNetConfig.tiny()
    bins = tiny.model_bins  # the U-Net sees the lowest bins only, as the Trainer exports
    export.export_saved_model(
        unet.build_unet(tiny), mean[:bins], scale[:bins], tiny, INFERENCE, bad
    )
    return {"good": good.parent, "bad": bad.parent}


def _run(tmp_path: Path, model_uri: Path, serving_base: Path) -> None:
    """ExampleGen + model importer -> SdrEvaluator -> Pusher, in one shared pipeline root/MLMD."""
    example_gen = multitrack_example_gen(
        [
            roots.DatasetRoot(
                str(tmp_path / "songs"), split_rule="list", validation_tracks=EVAL_TRACKS
            )
        ],
        IngestConfig(segment_samples=22050),
    )
    model = tfx.dsl.Importer(
        source_uri=str(model_uri), artifact_type=tfx.types.standard_artifacts.Model
    ).with_id("model_importer")
    evaluator = SdrEvaluator(
        examples=example_gen.outputs["examples"],
        model=model.outputs["result"],
        config=EvaluatorConfig(
            serving_base_dir=str(serving_base),
            model_name=MODEL_NAME,
            floor_db=-20.0,
            min_improvement_db=0.0,
            workers=2,
            report_tracks=1,
            excerpt_seconds=1.0,
        ),
    )
    pusher = push.pusher(
        model.outputs["result"], str(serving_base), MODEL_NAME, evaluator.outputs["blessing"]
    )
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="vocalsep-evaluator-test",
        pipeline_root=str(tmp_path / "root"),
        components=[example_gen, model, evaluator, pusher],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "mlmd.sqlite")
        ),
        beam_pipeline_args=["--direct_running_mode=in_memory"],
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)


def _newest(folder: Path) -> Path:
    return max(folder.iterdir(), key=lambda path: int(path.name))


def _pushed_flags(tmp_path: Path) -> list[int]:
    """The stock Pusher's own record of each run: its PushedModel's ``pushed`` property."""
    config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(tmp_path / "mlmd.sqlite")
    )
    store = metadata_store.MetadataStore(config)
    pushed = sorted(store.get_artifacts_by_type("PushedModel"), key=lambda artifact: artifact.id)
    return [artifact.custom_properties["pushed"].int_value for artifact in pushed]


@pytest.mark.slow
def test_first_model_is_judged_on_the_floor_and_a_worse_one_is_not_pushed(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    synth.write_dataset(tmp_path / "songs", 3, 2.0, seed=100, layout="generic")
    serving_base = tmp_path / "serving"
    evaluator_dir = tmp_path / "root" / "SdrEvaluator"

    _run(tmp_path, models["good"], serving_base)
    (version,) = (serving_base / MODEL_NAME).iterdir()
    assert (version / "saved_model.pb").exists()
    assert (_newest(evaluator_dir / "blessing") / "BLESSED").exists()
    first = json.loads((_newest(evaluator_dir / "evaluation") / "metrics.json").read_text())
    assert set(first["models"]) == {"candidate"}
    assert first["decision"]["blessed"]
    assert any("floor alone" in reason for reason in first["decision"]["reasons"])
    assert first["num_tracks"] == len(EVAL_TRACKS)
    good_sdr = first["models"]["candidate"]["aggregate"]["vocals"]["SDR"]

    _run(tmp_path, models["bad"], serving_base)
    assert list((serving_base / MODEL_NAME).iterdir()) == [version]
    blessing = _newest(evaluator_dir / "blessing")
    assert (blessing / "NOT_BLESSED").exists() and not (blessing / "BLESSED").exists()
    second = json.loads((_newest(evaluator_dir / "evaluation") / "metrics.json").read_text())
    assert not second["decision"]["blessed"]
    assert second["models"]["baseline"]["path"] == str(version)
    scores = {name: model["aggregate"]["vocals"]["SDR"] for name, model in second["models"].items()}
    print(f"vocals SDR: trained {good_sdr:.2f} dB, random {scores['candidate']:.2f} dB")
    assert scores["baseline"] == pytest.approx(good_sdr, abs=1e-6)  # same model, same tracks
    assert scores["candidate"] < scores["baseline"]
    assert _pushed_flags(tmp_path) == [1, 0]
    report = (_newest(evaluator_dir / "report") / "report.html").read_text()
    assert "NOT BLESSED" in report and report.count("<audio") >= 3


def test_every_setting_is_an_exec_property_with_its_declared_type() -> None:
    examples = tfx.dsl.Importer(
        source_uri="/examples", artifact_type=tfx.types.standard_artifacts.Examples
    ).with_id("examples")
    model = tfx.dsl.Importer(
        source_uri="/model", artifact_type=tfx.types.standard_artifacts.Model
    ).with_id("model")
    evaluator = SdrEvaluator(
        examples=examples.outputs["result"],
        model=model.outputs["result"],
        config=EvaluatorConfig(serving_base_dir="gs://bucket/serving", floor_db=1, workers=4),
    )
    assert evaluator.exec_properties == {
        **EvaluatorConfig().to_dict(),
        "serving_base_dir": "gs://bucket/serving",
        "floor_db": 1.0,
        "workers": 4,
    }
    assert isinstance(evaluator.exec_properties["floor_db"], float)
    assert set(evaluator.outputs) == {"blessing", "evaluation", "report"}


def test_examples_without_an_eval_split_are_a_clear_error(tmp_path: Path) -> None:
    examples = tfx.types.standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = artifact_utils.encode_split_names(["train"])
    model = tfx.types.standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    outputs = {
        name: [artifact_type()]
        for name, artifact_type in (
            ("blessing", tfx.types.standard_artifacts.ModelBlessing),
            ("evaluation", tfx.types.standard_artifacts.ModelEvaluation),
            ("report", HtmlReport),
        )
    }
    with pytest.raises(NoEvalTracksError, match="no 'eval' split"):
        Executor().Do(
            {"examples": [examples], "model": [model]}, outputs, EvaluatorConfig().to_dict()
        )
