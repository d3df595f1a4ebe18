"""Every setting of a pipeline run, in one place, and the named recipes built from them.

``PipelineConfig`` is what ``create_pipeline`` consumes; runners (local, Kubeflow) only add
where the pipeline root and metadata live. Recipes are plain functions so the shipped model's
training run (``default_model``) and the README demo (``demo``) are reviewable code, not
command lines in a notebook.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from vocalsep.data.config import IngestConfig
from vocalsep.data.roots import DatasetRoot, musdb_root
from vocalsep.evaluation.gate import EvaluatorConfig
from vocalsep.model.augment import AugmentConfig
from vocalsep.model.inference import InferenceConfig
from vocalsep.model.trainer import TrainerConfig

DEFAULT_MODEL_NAME = "vocalsep"
# The container image every Kubeflow step runs in (built by `make image`).
DEFAULT_IMAGE = "ghcr.io/vocalsep/vocalsep-pipeline:0.1.0"
_BEAM_SDK_SUFFIX = re.compile(r"(:[^:/]*)?$")


def beam_sdk_image(image: str) -> str:
    """The Beam SDK container of ``image`` (Dockerfile's ``beam-sdk`` target, tagged by
    scripts/build_image.sh with the same rule): ``-beam-sdk`` before the tag."""
    return _BEAM_SDK_SUFFIX.sub(r"-beam-sdk\1", image, count=1)


def local_beam_args(workers: int = 0) -> tuple[str, ...]:
    """Beam's DirectRunner in worker processes (0: one per CPU)."""
    return ("--direct_running_mode=multi_processing", f"--direct_num_workers={workers}")


@dataclasses.dataclass(frozen=True)
class TrainerResources:
    """What the Trainer asks of Kubeflow; the local runner ignores it."""

    gpus: int = 1
    gpu_resource: str = "nvidia.com/gpu"
    cpu: float = 8.0
    memory_gb: float = 32.0


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """One pipeline run. ``serving_base_dir`` is TF Serving's model base path: the Pusher
    writes ``<serving_base_dir>/<model_name>/<version>/`` and the Evaluator's baseline is the
    newest version there (``evaluator``'s own base directory and model name are ignored).

    With ``warm_start`` the Trainer starts from the newest served version, or, before anything
    is served, from the model at ``imported_model_uri`` (what ``vocalsep pretrained import``
    writes; local or ``gs://``)."""

    data_roots: tuple[DatasetRoot, ...]
    pipeline_root: str
    serving_base_dir: str
    pipeline_name: str = "vocalsep"
    model_name: str = DEFAULT_MODEL_NAME
    ingest: IngestConfig = dataclasses.field(default_factory=IngestConfig)
    eval_percent: int = 10
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    evaluator: EvaluatorConfig = dataclasses.field(default_factory=EvaluatorConfig)
    trainer_resources: TrainerResources = dataclasses.field(default_factory=TrainerResources)
    beam_pipeline_args: tuple[str, ...] = local_beam_args()
    enable_cache: bool = True
    schema_dir: str = ""
    """Where ImportSchemaGen reads the raw schema; empty: written under the pipeline root."""
    warm_start: bool = False
    imported_model_uri: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_roots", tuple(self.data_roots))
        if self.imported_model_uri and not self.warm_start:
            raise ValueError("imported_model_uri is only used with warm_start")
        object.__setattr__(self, "beam_pipeline_args", tuple(self.beam_pipeline_args))

    def evaluator_config(self) -> EvaluatorConfig:
        """The gate, comparing against what the Pusher has pushed for this model name."""
        return dataclasses.replace(
            self.evaluator, serving_base_dir=self.serving_base_dir, model_name=self.model_name
        )

    def trainer_custom_config(self) -> dict[str, Any]:
        """The Trainer's ``custom_config``: its settings, validating on the data's eval split."""
        values = trainer_config_dict(self.trainer)
        if not values["eval_roots"]:
            values["eval_roots"] = [root.to_dict() for root in self.data_roots]
        return values


def trainer_config_dict(config: TrainerConfig) -> dict[str, Any]:
    """``TrainerConfig`` as JSON-ready values (``TrainerConfig.from_dict`` reads them back)."""
    values = dataclasses.asdict(config)
    values["eval_roots"] = [dict(root) for root in config.eval_roots]
    return values


# The shipped default model's recipe (models/README.md, BENCHMARKS.md): Spleeter 2stems's
# published weights (`vocalsep pretrained import spleeter-2stems`), with our inference (ratio
# masks with exponent 0.5, one Wiener iteration, the accompaniment as the residual), fine-tuned
# on the MUSDB18-7 train split: every weight but batch norm's moving statistics, gently (a
# constant learning rate of 1e-5, 150 steps of 4 recorded mixes; no dropout), on the separation
# loss of what is served; the best of three epochs by validation SDR on the 14 official clips.
# Only the last two layers at 1e-4 gained a quarter as much on vocals, and lost accompaniment
# (BENCHMARKS.md).
DEFAULT_MODEL_TRAINER = TrainerConfig(
    architecture="spleeter",
    steps=150,
    steps_per_epoch=50,
    batch_size=4,
    patch_frames=256,
    learning_rate=1e-5,
    final_learning_rate_fraction=1.0,
    seed=0,
    shuffle_buffer=200,
    augmentation=AugmentConfig(
        gain_db=0.0, channel_swap_probability=0.0, silence_probability=0.0, remix_probability=0.0
    ),
    eval_tracks=14,
    eval_seconds=30.0,
    trainable="",
    dropout_rate=0.0,
    loss="separation",
    inference=InferenceConfig(mask_power=0.5, wiener_iterations=1, storage_dtype="float16"),
)
# The gate's floor: Spleeter's own published score (museval vocals SDR, 14 validation clips).
DEFAULT_MODEL_FLOOR_DB = 7.01


def default_model(
    musdb_path: str,
    pipeline_root: str,
    serving_base_dir: str,
    imported_model_uri: str,
    **overrides: Any,
) -> PipelineConfig:
    """The recipe of the shipped model (``make train-default``), warm-started from the newest
    served Spleeter-architecture model or else the import at ``imported_model_uri``."""
    return PipelineConfig(
        data_roots=(musdb_root(musdb_path),),
        pipeline_root=pipeline_root,
        serving_base_dir=serving_base_dir,
        pipeline_name="vocalsep-default-model",
        trainer=DEFAULT_MODEL_TRAINER,
        evaluator=EvaluatorConfig(floor_db=DEFAULT_MODEL_FLOOR_DB),
        warm_start=True,
        imported_model_uri=imported_model_uri,
        **overrides,
    )


def with_trainer(config: PipelineConfig, values: Mapping[str, Any]) -> PipelineConfig:
    """``config`` with some Trainer settings replaced (from a command line or a test)."""
    merged = {**trainer_config_dict(config.trainer), **values}
    return dataclasses.replace(config, trainer=TrainerConfig.from_dict(merged))


def roots_from_paths(paths: Sequence[str]) -> tuple[DatasetRoot, ...]:
    """Dataset roots for command-line paths: MUSDB-style folders get the official split."""
    return tuple(DatasetRoot(path) for path in paths)
