"""BaseModel, a class-based TFX component that works on every orchestrator.

Scheduled retraining should start from the model in service, which TFX would find with a
Resolver node (latest blessed model); open-source Kubeflow cannot run Resolvers, so this
component reads the Pusher's destination (``<serving_base_dir>/<model_name>``) at run time,
as the SdrEvaluator does for its baseline. Before anything of the Trainer's architecture is
served (the first training, or the first after a change of architecture), it hands on the
model at ``imported_model_uri`` instead: the published weights converted by ``vocalsep
pretrained import``. That URI is a parameter, not an Importer node's output: an Importer
compiles to a KFP importer task whose output key differs between KFP backends (TFX declares
``result``, ``kfp.local`` names it ``artifact``), and a parameter runs the same everywhere.

``examples`` is an input only so that new data re-runs the choice: with the cache on, a run
over unchanged data reuses every result, this choice included, while a new data drop (a new
``{SPAN}``) makes the choice again and so starts from whatever is served at that time.
"""

from __future__ import annotations

import json
from typing import ClassVar

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from vocalsep.components.base_model.executor import Executor
from vocalsep.model.unet import UNetConfig


class BaseModelSpec(types.ComponentSpec):
    """The serving directory, model name, the Trainer's network (``UNetConfig`` as JSON) and
    the imported model's URI (empty: none) as exec properties."""

    PARAMETERS: ClassVar[dict[str, ExecutionParameter]] = {
        "serving_base_dir": ExecutionParameter(type=str),
        "model_name": ExecutionParameter(type=str),
        "unet_config": ExecutionParameter(type=str),
        "imported_model_uri": ExecutionParameter(type=str),
    }
    INPUTS: ClassVar[dict[str, ChannelParameter]] = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS: ClassVar[dict[str, ChannelParameter]] = {
        "model": ChannelParameter(type=standard_artifacts.Model),
    }


class BaseModel(base_component.BaseComponent):
    """Outputs the model to warm-start from: the newest served version, else the import."""

    SPEC_CLASS = BaseModelSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        serving_base_dir: str,
        model_name: str,
        unet_config: UNetConfig,
        imported_model_uri: str = "",
    ) -> None:
        super().__init__(
            spec=BaseModelSpec(
                examples=examples,
                imported_model_uri=imported_model_uri,
                serving_base_dir=serving_base_dir,
                model_name=model_name,
                unet_config=json.dumps(unet_config.to_dict(), sort_keys=True),
                model=types.Channel(type=standard_artifacts.Model),
            )
        )
