"""``create_pipeline``: the one wiring of vocalsep's TFX pipeline, for every orchestrator.

MultitrackExampleGen -> ImportSchemaGen -> Transform -> Trainer -> SdrEvaluator -> Pusher, and
with a warm start BaseModel -> the Trainer's ``base_model``: the newest served model, or before
there is one the converted published weights at ``imported_model_uri``.
Runners (``local_runner``, ``kubeflow_runner``) call this with a ``PipelineConfig`` and add
only what is theirs: the metadata store, or the container image and resources.
"""

from __future__ import annotations

from tfx import v1 as tfx
from tfx.dsl.components.base.base_node import BaseNode
from tfx.proto import trainer_pb2

from vocalsep.components.base_model.component import BaseModel
from vocalsep.components.evaluator.component import SdrEvaluator
from vocalsep.data.roots import join
from vocalsep.pipeline.config import PipelineConfig
from vocalsep.pipeline.data_stage import data_components
from vocalsep.serving.push import pusher

RUN_FN = "vocalsep.model.trainer.run_fn"


def trainer_component(
    config: PipelineConfig, transform: BaseNode, base_model: BaseNode | None = None
) -> tfx.components.Trainer:
    """The stock Trainer on the Transform's output, with ``vocalsep.model.trainer.run_fn``.

    The Transform writes only the train split (eval tracks stay whole and raw for the
    Evaluator), so TFX's eval split is pointed at train and validation tracks reach the
    Trainer through its ``custom_config`` instead.
    """
    return tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        base_model=base_model.outputs["model"] if base_model is not None else None,
        train_args=trainer_pb2.TrainArgs(num_steps=config.trainer.steps),
        eval_args=trainer_pb2.EvalArgs(splits=["train"]),
        custom_config=config.trainer_custom_config(),
    )


def base_model_component(config: PipelineConfig, example_gen: BaseNode) -> BaseModel:
    """BaseModel: the newest served model, else the converted weights at
    ``config.imported_model_uri``, as the Trainer's ``base_model``."""
    return BaseModel(
        examples=example_gen.outputs["examples"],
        serving_base_dir=config.serving_base_dir,
        model_name=config.model_name,
        unet_config=config.trainer.unet_config(),
        imported_model_uri=config.imported_model_uri,
    )


def create_components(config: PipelineConfig) -> list[BaseNode]:
    """The pipeline's nodes, wired, in execution order.

    Without ``config.schema_dir`` the raw schema is written under the pipeline root now;
    with it, the schema must already be there when the pipeline runs (the container image).
    """
    example_gen, schema_gen, transform = data_components(
        config.data_roots,
        config.schema_dir or join(config.pipeline_root, "raw_schema"),
        config.ingest,
        config.eval_percent,
        config.trainer.unet_config().stft,
        write_schema=not config.schema_dir,
    )
    warm_start = [base_model_component(config, example_gen)] if config.warm_start else []
    trainer = trainer_component(config, transform, warm_start[0] if warm_start else None)
    evaluator = SdrEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        config=config.evaluator_config(),
    )
    model_pusher = pusher(
        trainer.outputs["model"],
        config.serving_base_dir,
        config.model_name,
        model_blessing=evaluator.outputs["blessing"],
    )
    return [example_gen, schema_gen, transform, *warm_start, trainer, evaluator, model_pusher]


def create_pipeline(
    config: PipelineConfig, metadata_connection_config: object | None = None
) -> tfx.dsl.Pipeline:
    """The pipeline for ``config``; ``metadata_connection_config`` only for local runs."""
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=create_components(config),
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_pipeline_args),
    )
