"""SdrEvaluator, a class-based TFX component with a plain Python executor.

Inputs: ``examples`` (the ExampleGen's; its ``eval`` split holds whole tracks) and ``model``
(the Trainer's; the export is under ``Format-Serving``). Outputs: ``blessing``
(ModelBlessing, honoured by the stock Pusher), ``evaluation`` (ModelEvaluation holding
``metrics.json``) and ``report`` (HtmlReport holding ``report.html``). Every field of
:class:`~vocalsep.evaluation.gate.EvaluatorConfig` is one exec property, so each shows in the
Kubeflow UI and the dataclass stays the single definition of the settings.

The baseline is not an input: it is read from the Pusher's destination
(``<serving_base_dir>/<model_name>``) at run time, because open-source Kubeflow cannot run the
Resolver node a "latest blessed model" input would need.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from vocalsep.components.evaluator.executor import Executor
from vocalsep.evaluation.gate import EvaluatorConfig

_PARAMETER_TYPES = {"int": int, "float": float, "str": str}


class HtmlReport(types.Artifact):
    """A self-contained HTML page (``report.html`` in the artifact folder) for people to read.

    Its own type, because no standard TFX type means "a document": ModelEvaluation is what
    TFMA tooling loads as evaluation results, and a report stored under it would mislead them.
    """

    # Also this class's import path (``vocalsep.HtmlReport``, a lazy attribute of the package):
    # TFX's Kubeflow v2 entrypoint imports a custom type by its name, and its compiler admits
    # only ``<module>.<Class>`` names with a one-word module.
    TYPE_NAME = "vocalsep.HtmlReport"


class SdrEvaluatorSpec(types.ComponentSpec):
    """Inputs, outputs and one exec property per EvaluatorConfig field."""

    PARAMETERS: ClassVar[dict[str, ExecutionParameter]] = {
        field.name: ExecutionParameter(type=_PARAMETER_TYPES[field.type])
        for field in dataclasses.fields(EvaluatorConfig)
    }
    INPUTS: ClassVar[dict[str, ChannelParameter]] = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "model": ChannelParameter(type=standard_artifacts.Model),
    }
    OUTPUTS: ClassVar[dict[str, ChannelParameter]] = {
        "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "report": ChannelParameter(type=HtmlReport),
    }


class SdrEvaluator(base_component.BaseComponent):
    """Scores the model on every eval track through its serving signature, and gates it."""

    SPEC_CLASS = SdrEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        config: EvaluatorConfig | None = None,
    ) -> None:
        # A round trip through from_dict makes ints given for float settings floats, which the
        # spec's type check (and Kubeflow's parameter types) require.
        config = EvaluatorConfig.from_dict((config or EvaluatorConfig()).to_dict())
        super().__init__(
            spec=SdrEvaluatorSpec(
                examples=examples,
                model=model,
                blessing=types.Channel(type=standard_artifacts.ModelBlessing),
                evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
                report=types.Channel(type=HtmlReport),
                **config.to_dict(),
            )
        )
