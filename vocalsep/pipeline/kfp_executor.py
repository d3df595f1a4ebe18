"""The container entrypoint ``pipeline.yaml`` names for every TFX step: TFX's own v2 executor
runner, after two repairs of what a KFP v2 orchestrator hands over.

``python -m vocalsep.pipeline.kfp_executor`` takes exactly the arguments of
``tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor`` (the compiler writes them)
and then runs it, so the YAML stays valid for every KFP v2 backend (open-source KFP, Vertex,
``kfp.local``) and nothing inside TFX is patched.

* **Generic input types.** Open-source KFP and ``kfp.local`` pass an upstream artifact typed
  ``system.Artifact`` (tensorflow/tfx#7768), and TFX imports a type's title as its class, so
  Transform fails with ``Could not import system.Artifact``. The component's own inputs spec
  (``--json_serialized_inputs_spec_args``, compiled into every step) carries the real type: a
  generic input is re-typed from it. Inputs that already carry a concrete type are left alone.
* **A quiet terminal.** TensorFlow's C++ log and its teardown traceback are silenced as in
  every vocalsep command (``vocalsep.logs.quiet_process``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from vocalsep import logs

GENERIC_TITLES = frozenset({"system.Artifact", "tfx.Artifact"})
"""Type titles that say nothing about the artifact: re-typed from the inputs spec."""


def _title(artifact_type: dict[str, Any]) -> str:
    """The type title of an ``ArtifactTypeSchema`` as JSON (schemaTitle or instanceSchema's)."""
    if "schemaTitle" in artifact_type:
        return artifact_type["schemaTitle"]
    for line in artifact_type.get("instanceSchema", "").splitlines():
        if line.startswith("title:"):
            return line.split(":", 1)[1].strip()
    return ""


def retype_inputs(invocation: str, inputs_spec: str | None) -> tuple[str, list[str]]:
    """``invocation`` (the ExecutorInput JSON) with each generic input artifact given the
    type its inputs spec declares; also the names of the inputs it re-typed."""
    if not inputs_spec:
        return invocation, []
    declared = json.loads(inputs_spec).get("artifacts", {})
    executor_input = json.loads(invocation)
    retyped = []
    for name, artifact_list in executor_input.get("inputs", {}).get("artifacts", {}).items():
        spec_type = declared.get(name, {}).get("artifactType")
        if not spec_type:
            continue
        for artifact in artifact_list.get("artifacts", []):
            if _title(artifact.get("type", {})) in GENERIC_TITLES | {""}:
                artifact["type"] = spec_type
                retyped.append(name)
    if not retyped:
        return invocation, []
    return json.dumps(executor_input), sorted(set(retyped))


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """TFX's three flags; everything else is Beam's (as in TFX's own entrypoint). absl's
    argparse parser, so that absl's own flags are parsed too, as ``app.run`` requires."""
    from absl.flags import argparse_flags

    parser = argparse_flags.ArgumentParser(prog="python -m vocalsep.pipeline.kfp_executor")
    parser.add_argument("--executor_class_path", required=True)
    parser.add_argument("--json_serialized_invocation_args", required=True)
    parser.add_argument("--json_serialized_inputs_spec_args", default=None)
    return parser.parse_known_args(argv)


def repaired_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """``argv`` (program name first, as absl passes it) parsed, with the inputs re-typed."""
    args, beam_args = parse_args(argv[1:])
    args.json_serialized_invocation_args, retyped = retype_inputs(
        args.json_serialized_invocation_args, args.json_serialized_inputs_spec_args
    )
    if retyped:
        print(f"kfp_executor: typed {', '.join(retyped)} from the inputs spec", flush=True)
    return args, beam_args


def main() -> None:
    """Runs TFX's v2 executor runner, under absl as TFX's own entrypoint does."""
    logs.quiet_process()
    from absl import app
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

    app.run(kubeflow_v2_run_executor.main, flags_parser=repaired_args)


if __name__ == "__main__":
    main()
