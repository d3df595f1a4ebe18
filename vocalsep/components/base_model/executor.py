"""BaseModel executor: copy the newest served version, or else the imported model, to the output.

The output is a standard Model artifact whose export sits under ``Format-Serving``, which is
where the stock Trainer's ``base_model`` input (``fn_args.base_model``) looks. The choice is
recorded as the artifact's ``source`` (``served`` or ``imported``) and ``source_uri``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from vocalsep.errors import BaseModelError
from vocalsep.model import warm_start
from vocalsep.model.saved import resolve_export_dir
from vocalsep.model.unet import UNetConfig
from vocalsep.serving import push

SERVED = "served"
IMPORTED = "imported"


def choose_base(
    serving_base_dir: str, model_name: str, imported_uri: str | None, config: UNetConfig
) -> tuple[str, str]:
    """``(source, export directory)``: the newest complete served version if it holds the
    Trainer's architecture (``config``), else the import.

    A served model of another architecture (the model in service before a switch of
    architecture) is skipped with a log line: its weights cannot seed the new network.
    """
    served = push.latest_version_dir(serving_base_dir, model_name) if serving_base_dir else None
    if served is not None:
        try:
            served_config, _ = warm_start.export_config(served)
        except BaseModelError as error:
            logging.warning("BaseModel: the served model cannot seed training: %s", error)
        else:
            if warm_start.same_weights(served_config, config):
                return SERVED, served
            logging.warning(
                "BaseModel: the served model %s is a %s network, not the Trainer's %s",
                served,
                served_config.architecture,
                config.architecture,
            )
    if imported_uri is not None:
        return IMPORTED, resolve_export_dir(imported_uri)
    raise BaseModelError(
        f"{serving_base_dir or '(no serving directory)'}: no version of {model_name} with the "
        "Trainer's architecture is served and no imported model was given, so there is "
        "nothing to warm-start from"
    )


class Executor(base_executor.BaseExecutor):
    """See the module docstring."""

    def Do(  # noqa: N802 - the TFX executor interface
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        source, export_dir = choose_base(
            exec_properties["serving_base_dir"],
            exec_properties["model_name"],
            exec_properties.get("imported_model_uri") or None,
            UNetConfig.from_dict(json.loads(exec_properties["unet_config"])),
        )
        model = artifact_utils.get_single_instance(output_dict["model"])
        io_utils.copy_dir(export_dir, path_utils.serving_model_path(model.uri))
        model.set_string_custom_property("source", source)
        model.set_string_custom_property("source_uri", export_dir)
        logging.info("BaseModel: warm start from the %s model %s", source, export_dir)
