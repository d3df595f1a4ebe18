"""Runs the pipeline on this machine: LocalDagRunner, SQLite MLMD, Beam's DirectRunner.

MLMD lives beside the pipeline root, so a second run over unchanged inputs and settings
finds every component's earlier execution and reuses its outputs (TFX caching).
"""

from __future__ import annotations

from pathlib import Path

from tfx import v1 as tfx

from vocalsep.pipeline.config import PipelineConfig
from vocalsep.pipeline.pipeline import create_pipeline

METADATA_FILE = "metadata.sqlite"


def metadata_path(config: PipelineConfig) -> Path:
    """Where the run's SQLite MLMD lives: beside, not inside, the artifacts it records."""
    return Path(config.pipeline_root) / METADATA_FILE


def run_local(config: PipelineConfig) -> None:
    """Runs every component in order, reusing cached results where nothing changed."""
    Path(config.pipeline_root).mkdir(parents=True, exist_ok=True)
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(metadata_path(config))
    )
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config, connection))
