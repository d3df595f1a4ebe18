"""SdrEvaluator executor: evaluate the candidate and the served model, bless, report.

Writes what the stock Pusher and Evaluator consumers read from a ModelBlessing: the int custom
property ``blessed`` (1 or 0), ``current_model`` (URI) and ``current_model_id``,
``baseline_model`` (the served version folder, when there is one) and a ``BLESSED`` or
``NOT_BLESSED`` file. The vocals SDRs are stored as float properties for the UI.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

import tensorflow as tf
from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from vocalsep.data import splits
from vocalsep.errors import NoEvalTracksError
from vocalsep.evaluation import gate, report
from vocalsep.evaluation.evaluate import json_text
from vocalsep.evaluation.run import evaluate_exports, metrics_document
from vocalsep.evaluation.sources import tracks_from_examples
from vocalsep.serving import push

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"


def write_atomically(path: str, text: str) -> None:
    """Writes through tf.io.gfile (local or bucket) to a temporary name, then renames.

    Creates the folder first: KFP hands over artifact URIs without creating them."""
    folder = path.rsplit("/", 1)[0]
    tf.io.gfile.makedirs(folder)
    temp_path = f"{folder}/.{uuid.uuid4().hex}.tmp"
    with tf.io.gfile.GFile(temp_path, "w") as handle:
        handle.write(text)
    tf.io.gfile.rename(temp_path, path, overwrite=True)


class Executor(base_executor.BaseExecutor):
    """See the module docstring."""

    def Do(  # noqa: N802 - the TFX executor interface
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        config = gate.EvaluatorConfig.from_dict(
            {key: exec_properties[key] for key in gate.EvaluatorConfig().to_dict()}
        )
        model = artifact_utils.get_single_instance(input_dict["model"])
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        candidate_dir = path_utils.serving_model_path(model.uri)
        baseline_dir = (
            push.latest_version_dir(config.serving_base_dir, config.model_name)
            if config.serving_base_dir
            else None
        )
        split_names = artifact_utils.decode_split_names(examples.split_names)
        if splits.EVAL not in split_names:
            raise NoEvalTracksError(
                f"{examples.uri}: the examples have no '{splits.EVAL}' split (splits: "
                f"{', '.join(split_names) or 'none'}); the SdrEvaluator needs the ExampleGen's "
                "whole eval tracks"
            )
        split_dir = artifact_utils.get_split_uri([examples], splits.EVAL)
        logging.info("SdrEvaluator: candidate %s, served model %s", candidate_dir, baseline_dir)
        result, decision = evaluate_exports(
            candidate_dir, tracks_from_examples(split_dir), config, baseline_dir, where=split_dir
        )

        metrics = metrics_document(result, decision, config)
        evaluation = artifact_utils.get_single_instance(output_dict["evaluation"])
        write_atomically(f"{evaluation.uri}/{METRICS_FILE}", json_text(metrics))
        report_artifact = artifact_utils.get_single_instance(output_dict["report"])
        write_atomically(
            f"{report_artifact.uri}/{REPORT_FILE}", report.render_report(result, decision)
        )

        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        blessing.set_string_custom_property(
            constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri
        )
        blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
        if baseline_dir is not None:
            blessing.set_string_custom_property(
                constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, baseline_dir
            )
        for name, model_result in result.models.items():
            sdr = model_result.aggregate[gate.GATE_SOURCE][gate.GATE_METRIC]
            if not math.isnan(sdr):
                blessing.set_float_custom_property(f"{name}_vocals_sdr", sdr)
        file_name = (
            constants.BLESSED_FILE_NAME if decision.blessed else constants.NOT_BLESSED_FILE_NAME
        )
        write_atomically(f"{blessing.uri}/{file_name}", "\n".join(decision.reasons) + "\n")
        blessing.set_int_custom_property(
            constants.ARTIFACT_PROPERTY_BLESSED_KEY,
            constants.BLESSED_VALUE if decision.blessed else constants.NOT_BLESSED_VALUE,
        )
        # The verdict on a line of its own: `vocalsep demo` and `make train-default` show it.
        logging.info(
            "SdrEvaluator: %s (%s)",
            "BLESSED" if decision.blessed else "NOT BLESSED",
            "; ".join(decision.reasons),
        )
        logging.info("SdrEvaluator cost: %s", result.cost())
