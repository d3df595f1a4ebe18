"""The step entrypoint repairs what KFP v2 orchestrators hand over, from the compiled YAML."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
from tfx.utils import import_utils

from vocalsep.pipeline import kfp_executor

PIPELINE_YAML = Path(__file__).resolve().parents[1] / "pipeline.yaml"


def _step_args(executor: str) -> list[str]:
    spec = yaml.safe_load(PIPELINE_YAML.read_text())
    return spec["deploymentSpec"]["executors"][executor]["container"]["args"]


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _generic_input(uri: str) -> dict:
    """An input artifact as kfp.local and open-source KFP hand it over: typed system.Artifact."""
    return {"artifacts": [{"name": "a1", "type": {"schemaTitle": "system.Artifact"}, "uri": uri}]}


def test_generic_inputs_get_the_type_the_components_inputs_spec_declares() -> None:
    args = _step_args("Transform_executor")
    inputs_spec = _flag(args, "--json_serialized_inputs_spec_args")
    invocation = json.dumps(
        {
            "inputs": {
                "artifacts": {
                    "examples": _generic_input("/root/ExampleGen/examples"),
                    "schema": _generic_input("/root/ImportSchemaGen/schema"),
                }
            },
            "outputs": {"outputFile": "/root/Transform/executor_output.json"},
        }
    )
    repaired, retyped = kfp_executor.retype_inputs(invocation, inputs_spec)
    assert retyped == ["examples", "schema"]
    artifacts = json.loads(repaired)["inputs"]["artifacts"]
    parsed = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(
        {name: _as_proto(value) for name, value in artifacts.items()}, {}
    )
    assert parsed["examples"][0].type_name == "Examples"
    assert parsed["schema"][0].type_name == "Schema"
    assert parsed["examples"][0].uri == "/root/ExampleGen/examples"


def _as_proto(value: dict) -> object:
    """An ArtifactList proto, as the entrypoint parses the executor input."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    return json_format.ParseDict(value, pipeline_spec_pb2.ArtifactList())


def test_concretely_typed_inputs_and_steps_without_inputs_are_left_alone() -> None:
    typed = {"artifacts": [{"type": {"schemaTitle": "tfx.Examples"}, "uri": "/x"}]}
    invocation = json.dumps({"inputs": {"artifacts": {"examples": typed}}})
    inputs_spec = _flag(_step_args("Transform_executor"), "--json_serialized_inputs_spec_args")
    assert kfp_executor.retype_inputs(invocation, inputs_spec) == (invocation, [])
    assert kfp_executor.retype_inputs(invocation, None) == (invocation, [])


def test_the_flags_are_tfx_own_and_the_rest_goes_to_beam() -> None:
    # The orchestrator replaces the '{{$}}' placeholder with the executor input.
    args = ["prog", *(arg.replace("{{$}}", "{}") for arg in _step_args("Transform_executor"))]
    parsed, beam_args = kfp_executor.repaired_args(args)
    assert parsed.executor_class_path == "tfx.components.transform.executor.Executor"
    assert beam_args == [
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=0",
        "--beam_plugin=vocalsep.beam_worker",  # the step's Beam workers are quiet too
    ]


def test_every_artifact_type_in_the_yaml_imports_by_its_title() -> None:
    """TFX's v2 entrypoint imports each output's type by its schema title."""
    text = PIPELINE_YAML.read_text()
    titles = set()
    for document in yaml.safe_load(text)["components"].values():
        for section in ("inputDefinitions", "outputDefinitions"):
            for artifact in document.get(section, {}).get("artifacts", {}).values():
                schema = yaml.safe_load(artifact["artifactType"]["instanceSchema"])
                titles.add(schema["title"])
    assert "vocalsep.HtmlReport" in titles
    for title in titles:
        class_path = kubeflow_v2_entrypoint_utils.compiler_utils.TITLE_TO_CLASS_PATH.get(
            title, title
        )
        assert import_utils.import_class_by_path(class_path).TYPE_NAME
