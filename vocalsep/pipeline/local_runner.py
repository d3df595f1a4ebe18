"""Runs the pipeline on this machine: LocalDagRunner, SQLite MLMD, Beam's DirectRunner.

MLMD lives beside the pipeline root, so a second run over unchanged inputs and settings
finds every component's earlier execution and reuses its outputs (TFX caching).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from vocalsep import logs
from vocalsep.pipeline.config import PipelineConfig
from vocalsep.pipeline.pipeline import create_pipeline

METADATA_FILE = "metadata.sqlite"


def metadata_path(config: PipelineConfig) -> Path:
    """Where the run's SQLite MLMD lives: beside, not inside, the artifacts it records."""
    return Path(config.pipeline_root) / METADATA_FILE


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What one local run did: components executed, and those that reused cached results."""

    executed: tuple[str, ...]
    cached: tuple[str, ...]


def run_local(config: PipelineConfig) -> RunSummary:
    """Runs every component in order, reusing cached results where nothing changed.

    Beam's worker processes quiet their terminal output first, as vocalsep's commands do.
    """
    config = dataclasses.replace(
        config, beam_pipeline_args=(*config.beam_pipeline_args, logs.BEAM_WORKER_PLUGIN)
    )
    Path(config.pipeline_root).mkdir(parents=True, exist_ok=True)
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(metadata_path(config))
    )
    started_ms = int(time.time() * 1000)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config, connection))
    return _summary(connection, started_ms)


def _summary(connection: metadata_store_pb2.ConnectionConfig, since_ms: int) -> RunSummary:
    """Executions recorded in MLMD since ``since_ms``, by final state."""
    store = metadata_store.MetadataStore(connection)
    executed, cached = [], []
    for execution in store.get_executions():
        if execution.create_time_since_epoch < since_ms:
            continue
        (execution_type,) = store.get_execution_types_by_id([execution.type_id])
        node = execution_type.name.rsplit(".", 1)[-1]
        if execution.last_known_state == metadata_store_pb2.Execution.CACHED:
            cached.append(node)
        elif execution.last_known_state == metadata_store_pb2.Execution.COMPLETE:
            executed.append(node)
    return RunSummary(tuple(executed), tuple(cached))
