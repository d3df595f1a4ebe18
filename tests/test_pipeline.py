"""create_pipeline, its runners, and the committed Kubeflow pipeline.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import json_format
from kfp import components

from vocalsep import cli
from vocalsep.data.roots import DatasetRoot
from vocalsep.errors import ScheduleError
from vocalsep.pipeline import cli as pipeline_cli
from vocalsep.pipeline import config, kubeflow_runner
from vocalsep.pipeline.pipeline import create_pipeline

REPO_ROOT = Path(__file__).resolve().parents[1]
PIPELINE_YAML = REPO_ROOT / "pipeline.yaml"


def _config(tmp_path: Path) -> config.PipelineConfig:
    return config.PipelineConfig(
        data_roots=(DatasetRoot(str(tmp_path / "songs"), name="songs"),),
        pipeline_root=str(tmp_path / "root"),
        serving_base_dir=str(tmp_path / "serving"),
    )


def test_create_pipeline_wires_every_component_in_order(tmp_path: Path) -> None:
    pipeline = create_pipeline(_config(tmp_path))
    assert [node.id for node in pipeline.components] == [
        "FileBasedExampleGen",
        "ImportSchemaGen",
        "Transform",
        "Trainer",
        "SdrEvaluator",
        "Pusher",
    ]
    assert (tmp_path / "root" / "raw_schema" / "schema.pbtxt").is_file()


def test_trainer_validates_on_the_data_roots_eval_split(tmp_path: Path) -> None:
    pipeline_config = config.with_trainer(_config(tmp_path), {"steps": 7, "model_size": "tiny"})
    values = pipeline_config.trainer_custom_config()
    assert values["eval_roots"] == [root.to_dict() for root in pipeline_config.data_roots]
    assert (values["steps"], values["model_size"]) == (7, "tiny")
    with pytest.raises(ValueError, match="stepz"):
        config.with_trainer(pipeline_config, {"stepz": 1})


def test_committed_pipeline_yaml_is_a_fresh_compile(tmp_path: Path) -> None:
    """Fails when code changed the pipeline but `make pipeline.yaml` was not rerun."""
    fresh = kubeflow_runner.compile_pipeline(
        kubeflow_runner.cluster_config(), tmp_path / "pipeline.yaml"
    )
    assert fresh.read_text() == PIPELINE_YAML.read_text(), "run `make pipeline.yaml`"


def test_compile_takes_where_the_import_was_copied(tmp_path: Path) -> None:
    output = tmp_path / "mine.yaml"
    uri = "gs://my-bucket/pretrained/spleeter-2stems"
    assert cli.main(["pipeline", "compile", "-o", str(output), "--imported-model-uri", uri]) == 0
    spec = components.load_component_from_file(str(output)).pipeline_spec
    tasks = json_format.MessageToDict(spec.root)["dag"]["tasks"]
    parameters = tasks["BaseModel"]["inputs"]["parameters"]
    assert parameters["imported_model_uri"]["runtimeValue"]["constant"] == uri


def test_pipeline_yaml_loads_with_kfp_and_only_the_trainer_asks_for_a_gpu() -> None:
    spec = components.load_component_from_file(str(PIPELINE_YAML)).pipeline_spec
    assert spec.schema_version == "2.1.0"
    executors = json_format.MessageToDict(spec.deployment_spec)["executors"]
    # No importer task: its output key differs between KFP backends (BaseModel takes a URI).
    assert all("container" in executor for executor in executors.values())
    commands = {tuple(executor["container"]["command"]) for executor in executors.values()}
    assert commands == {tuple(kubeflow_runner.STEP_COMMAND)}
    accelerators = {
        name: executor["container"].get("resources", {}).get("accelerator")
        for name, executor in executors.items()
    }
    assert accelerators.pop("Trainer_executor") == {"type": "nvidia.com/gpu", "count": "1"}
    assert not any(accelerators.values())
    trainer_resources = executors["Trainer_executor"]["container"]["resources"]
    assert trainer_resources["memoryLimit"] == config.TrainerResources().memory_gb
    images = {executor["container"]["image"] for executor in executors.values()}
    assert images == {config.DEFAULT_IMAGE}
    # Warm start: BaseModel (the newest served model, else the import) feeds base_model.
    tasks = json_format.MessageToDict(spec.root)["dag"]["tasks"]
    trainer_inputs = tasks["Trainer"]["inputs"]["artifacts"]
    assert trainer_inputs["base_model"]["taskOutputArtifact"]["producerTask"] == "BaseModel"
    assert "imported_model_uri" in tasks["BaseModel"]["inputs"]["parameters"]


def test_beam_args_select_the_runner_and_name_what_is_missing() -> None:
    assert "--runner=DataflowRunner" in kubeflow_runner.beam_args(
        "dataflow", project="p", region="europe-west4", temp_location="gs://b/tmp"
    )
    assert "--flink_master=flink:8081" in kubeflow_runner.beam_args(
        "flink", flink_master="flink:8081"
    )
    with pytest.raises(ValueError, match="project, region"):
        kubeflow_runner.beam_args("dataflow", temp_location="gs://b/tmp")
    with pytest.raises(ValueError, match="beam runner"):
        kubeflow_runner.beam_args("spark")


def test_schedule_names_the_missing_package_and_the_unreachable_endpoint(tmp_path: Path) -> None:
    parser_args = ["pipeline", "schedule", "--endpoint", "http://127.0.0.1:9"]

    missing = tmp_path / "nope.yaml"
    with pytest.raises(ScheduleError, match=r"nope\.yaml does not exist"):
        pipeline_cli._cmd_schedule(
            cli.build_parser().parse_args([*parser_args, "--package", str(missing)])
        )
    with pytest.raises(ScheduleError, match=r"127\.0\.0\.1:9"):
        pipeline_cli._cmd_schedule(
            cli.build_parser().parse_args([*parser_args, "--package", str(PIPELINE_YAML)])
        )
