"""Warm start: a Trainer's model begins from the weights of an existing vocalsep export.

Any export will do (the imported published weights, or the model in service for scheduled
retraining), as long as it holds the same architecture. Weights are read from the export's
checkpoint by name (``weights`` in its metadata), without loading its graph, and cast from
their storage dtype (float16 in the shipped model) to the training model's float32.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from vocalsep.errors import BaseModelError
from vocalsep.model.saved import read_metadata, resolve_export_dir
from vocalsep.model.unet import UNetConfig

CHECKPOINT_KEY = "network_weights/{}/.ATTRIBUTES/VARIABLE_VALUE"
# Fields that only shape training (patch size, dropout) may differ; the rest decides the weights.
TRAINING_ONLY_FIELDS = ("patch_frames", "dropout_rate")


def same_weights(first: UNetConfig, second: UNetConfig) -> bool:
    """Whether two configs describe networks with the same weights (training-only fields aside)."""
    values = [dataclasses.asdict(config) for config in (first, second)]
    for name in TRAINING_ONLY_FIELDS:
        for value in values:
            value.pop(name)
    return values[0] == values[1]


def export_config(export_dir: str | Path) -> tuple[UNetConfig, list[str]]:
    """An export's network config and the names of its stored weights."""
    directory = resolve_export_dir(export_dir)
    try:
        meta = read_metadata(directory)
        return UNetConfig.from_dict(meta["unet"]), list(meta["weights"])
    except (OSError, tf.errors.OpError, KeyError, ValueError, TypeError) as error:
        raise BaseModelError(
            f"{directory}: not a vocalsep export that can be warm-started from ({error!r}); "
            "exports written before warm starting existed lack the weight names"
        ) from error


def base_weights(export_dir: str | Path, config: UNetConfig) -> dict[str, np.ndarray]:
    """The export's network weights by name, after checking it is ``config``'s architecture."""
    directory = resolve_export_dir(export_dir)
    base_config, names = export_config(directory)
    if not same_weights(base_config, config):
        raise BaseModelError(
            f"{directory}: the base model is a {base_config.architecture} network "
            f"({base_config.model_bins} bins, stems {base_config.stems}, encoder "
            f"{base_config.encoder_channels}); the Trainer builds a {config.architecture} "
            f"network ({config.model_bins} bins, stems {config.stems}, encoder "
            f"{config.encoder_channels})"
        )
    try:
        reader = tf.train.load_checkpoint(f"{directory}/variables/variables")
        return {
            name: reader.get_tensor(CHECKPOINT_KEY.format(index)).astype(np.float32)
            for index, name in enumerate(names)
        }
    except (tf.errors.OpError, ValueError) as error:
        raise BaseModelError(f"{directory}: unreadable weights ({error})") from error


def warm_start(model: keras.Model, config: UNetConfig, export_dir: str | Path) -> int:
    """Overwrites every weight of ``model`` (a ``build_unet`` model) with the export's.

    Returns how many weights were set. Names are matched as the export recorded them, so a
    model missing any of them, or holding others, is refused rather than half loaded.
    """
    values = base_weights(export_dir, config)
    targets = _named_variables(model, config)
    if set(targets) != set(values):
        missing = sorted(set(targets) - set(values))[:3]
        unexpected = sorted(set(values) - set(targets))[:3]
        raise BaseModelError(
            f"{export_dir}: its weights do not match the model (missing {missing}, "
            f"unexpected {unexpected})"
        )
    for name, variable in targets.items():
        if tuple(variable.shape) != values[name].shape:
            raise BaseModelError(
                f"{export_dir}: {name} is {values[name].shape}, the model's is "
                f"{tuple(variable.shape)}"
            )
        variable.assign(values[name])
    return len(targets)


def _named_variables(model: keras.Model, config: UNetConfig) -> dict[str, tf.Variable]:
    """The model's variables under the names ``export.SeparationModule`` records."""
    if config.architecture == "spleeter":
        return {
            f"{stem}_unet/{name}": variable
            for stem in config.stems
            for name, variable in model.get_layer(f"{stem}_unet").named_weights.items()
        }
    return {weight.name: weight for weight in model.weights}
