"""Compiles the pipeline for Kubeflow Pipelines v2 (``pipeline.yaml``) and schedules it.

Every step runs in the project's own image (``Dockerfile``: Python 3.11, ffmpeg, the lock
file, the package), so dotted ``run_fn``/``preprocessing_fn`` paths resolve inside it and no
wheel is packaged at compile time; its command is ``STEP_COMMAND``, TFX's executor runner
behind ``vocalsep.pipeline.kfp_executor``. The Trainer alone asks for a GPU. Beam-heavy steps run on
the Beam runner named by ``beam_args`` (Dataflow or Flink in a cluster).
"""

from __future__ import annotations

from pathlib import Path

from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

from vocalsep import logs
from vocalsep.data.roots import DatasetRoot
from vocalsep.evaluation.gate import EvaluatorConfig
from vocalsep.pipeline import BEAM_RUNNERS, FLINK_ENVIRONMENTS
from vocalsep.pipeline.config import (
    DEFAULT_IMAGE,
    DEFAULT_MODEL_FLOOR_DB,
    DEFAULT_MODEL_TRAINER,
    PipelineConfig,
    beam_sdk_image,
    local_beam_args,
)
from vocalsep.pipeline.pipeline import create_pipeline
from vocalsep.pipeline.portable import portable_beam_args

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec

# Where the Dockerfile writes the raw schema (``vocalsep.data.examples.write_raw_schema``).
IMAGE_SCHEMA_DIR = "/opt/vocalsep/schema"
# Every step's container command: TFX's v2 executor runner behind our repairs of what KFP v2
# orchestrators hand over (vocalsep.pipeline.kfp_executor).
STEP_COMMAND = ["python", "-m", "vocalsep.pipeline.kfp_executor"]
# A Flink task manager's worker-pool sidecar, as k8s/flink runs it: same pod, so localhost.
FLINK_SIDECAR_POOL = "localhost:50000"
FLINK_VERSION = "1.18"
"""The Flink of k8s/flink (flink:1.18.1), one Beam 2.59 publishes a runner for."""


def beam_args(
    runner: str,
    *,
    project: str = "",
    region: str = "",
    temp_location: str = "",
    flink_master: str = "",
    flink_environment: str = "external",
    worker_pool: str = "",
    image: str = DEFAULT_IMAGE,
    workers: int = 0,
) -> tuple[str, ...]:
    """Beam pipeline args for ExampleGen and Transform on one of ``BEAM_RUNNERS``.

    ``portable`` and Flink's ``external`` environment run the SDK workers of the pool at
    ``worker_pool``; Flink's ``docker`` environment and Dataflow start ``image``'s Beam SDK
    container (``beam_sdk_image``), so no code is staged at submission: it is in the image.
    """
    if runner == "direct":
        # The workers are processes of the step's container: quiet them as the step itself.
        return (*local_beam_args(workers), logs.BEAM_WORKER_PLUGIN)
    if runner == "portable":
        if not worker_pool:
            raise ValueError("the portable runner needs worker_pool (host:port)")
        return portable_beam_args(worker_pool, image)
    if runner == "dataflow":
        missing = [
            name
            for name, value in (
                ("project", project),
                ("region", region),
                ("temp_location", temp_location),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"the Dataflow runner needs {', '.join(missing)}")
        args = [
            "--runner=DataflowRunner",
            f"--project={project}",
            f"--region={region}",
            f"--temp_location={temp_location}",
            "--experiments=use_runner_v2",
            f"--sdk_container_image={beam_sdk_image(image)}",
            "--sdk_location=container",
            logs.BEAM_WORKER_PLUGIN,
        ]
        if workers:
            args.append(f"--max_num_workers={workers}")
        return tuple(args)
    if runner == "flink":
        if not flink_master:
            raise ValueError("the Flink runner needs flink_master (host:port)")
        if flink_environment == "external":
            environment = [
                "--environment_type=EXTERNAL",
                f"--environment_config={worker_pool or FLINK_SIDECAR_POOL}",
            ]
        elif flink_environment == "docker":
            environment = [
                "--environment_type=DOCKER",
                f"--environment_config={beam_sdk_image(image)}",
            ]
        else:
            raise ValueError(
                f"the Flink environment must be one of {FLINK_ENVIRONMENTS}, "
                f"got {flink_environment!r}"
            )
        args = [
            "--runner=FlinkRunner",
            f"--flink_master={flink_master}",
            # Submitted over Flink's REST API as a jar Beam builds (it fetches Beam's Flink job
            # server jar from Maven Central): the step's container needs no Java.
            "--flink_submit_uber_jar",
            f"--flink_version={FLINK_VERSION}",
            *environment,
            # The workers run this image (a sidecar of it, or it): TFX stages no copy of itself.
            f"--sdk_container_image={beam_sdk_image(image)}",
            logs.BEAM_WORKER_PLUGIN,
        ]
        if workers:
            args.append(f"--parallelism={workers}")
        return tuple(args)
    raise ValueError(f"beam runner must be one of {BEAM_RUNNERS}, got {runner!r}")


def cluster_config(
    pipeline_root: str = "gs://vocalsep/pipeline-root",
    data_root: str = "gs://vocalsep/data/musdb/span-{SPAN}",
    serving_base_dir: str = "gs://vocalsep/serving",
    imported_model_uri: str = "gs://vocalsep/pretrained/spleeter-2stems",
    **overrides: object,
) -> PipelineConfig:
    """The configuration ``pipeline.yaml`` is compiled from: the shipped model's recipe.

    The data root's ``{SPAN}`` makes every scheduled run train on the newest drop. Each run
    fine-tunes the newest served model; the very first one the import at
    ``imported_model_uri`` (``vocalsep pretrained import spleeter-2stems --out`` there).
    """
    values: dict[str, object] = {
        "data_roots": (DatasetRoot(data_root, name="musdb"),),
        "pipeline_root": pipeline_root,
        "serving_base_dir": serving_base_dir,
        "schema_dir": IMAGE_SCHEMA_DIR,
        "beam_pipeline_args": beam_args("direct"),
        "trainer": DEFAULT_MODEL_TRAINER,
        "evaluator": EvaluatorConfig(floor_db=DEFAULT_MODEL_FLOOR_DB),
        "warm_start": True,
        "imported_model_uri": imported_model_uri,
        **overrides,
    }
    return PipelineConfig(**values)  # type: ignore[arg-type]


def _trainer_resources(config: PipelineConfig) -> ResourceSpec:
    resources = config.trainer_resources
    return ResourceSpec(
        cpu_request=resources.cpu,
        cpu_limit=resources.cpu,
        memory_request=resources.memory_gb,
        memory_limit=resources.memory_gb,
        accelerator=ResourceSpec.AcceleratorConfig(
            type=resources.gpu_resource, count=resources.gpus
        ),
    )


def compile_pipeline(
    config: PipelineConfig, output: str | Path, image: str = DEFAULT_IMAGE
) -> Path:
    """Writes KFP v2 IR YAML (pipeline spec 2.1) for ``config`` to ``output``."""
    output = Path(output)
    pipeline = create_pipeline(config)
    (trainer,) = [node for node in pipeline.components if node.id == "Trainer"]
    trainer.with_platform_config(_trainer_resources(config))
    runner_config = kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
        default_image=image, default_commands=STEP_COMMAND, use_pipeline_spec_2_1=True
    )
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=runner_config, output_dir=str(output.parent), output_filename=output.name
    )
    runner.run(pipeline, write_out=True)
    return output
