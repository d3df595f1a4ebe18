"""The data stage as a runnable TFX pipeline: ExampleGen -> ImportSchemaGen -> Transform.

``data_components`` gives the three components for a larger pipeline; ``data_pipeline`` wraps
them for a local run (LocalDagRunner, SQLite MLMD). Beam settings arrive only through
``beam_pipeline_args``, so the same components run on Dataflow, Flink or Spark.
"""

from __future__ import annotations

from collections.abc import Sequence

from tfx import v1 as tfx
from tfx.dsl.components.base.base_node import BaseNode

from vocalsep.audio import dsp
from vocalsep.components.example_gen.component import multitrack_example_gen
from vocalsep.data.config import IngestConfig
from vocalsep.data.examples import SCHEMA_FILE, write_raw_schema
from vocalsep.data.roots import DatasetRoot, join
from vocalsep.pipeline.config import local_beam_args
from vocalsep.transforms.component import spectrogram_transform
from vocalsep.transforms.preprocessing import SpectrogramConfig


def data_components(
    roots: Sequence[DatasetRoot],
    schema_dir: str,
    ingest: IngestConfig | None = None,
    eval_percent: int = 10,
    stft: dsp.StftConfig | None = None,
    write_schema: bool = True,
) -> list[BaseNode]:
    """ExampleGen, ImportSchemaGen and Transform, wired and sharing one segment length.

    The raw schema is generated from ``vocalsep.data.examples.raw_feature_spec`` into
    ``schema_dir`` now, at pipeline construction, so it need not ship as a package data file.
    With ``write_schema`` off (compiling for a cluster), ``schema_dir`` names where the
    schema already is when the pipeline runs: the container image writes it at build time.
    """
    ingest = ingest or IngestConfig()
    example_gen = multitrack_example_gen(roots, ingest, eval_percent)
    schema_file = (
        write_raw_schema(schema_dir) if write_schema else f"{schema_dir.rstrip('/')}/{SCHEMA_FILE}"
    )
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file)
    transform = spectrogram_transform(
        example_gen.outputs["examples"],
        schema_gen.outputs["schema"],
        SpectrogramConfig(ingest.segment_samples, stft or dsp.StftConfig()),
    )
    return [example_gen, schema_gen, transform]


def data_pipeline(
    roots: Sequence[DatasetRoot],
    pipeline_root: str,
    metadata_path: str,
    *,
    pipeline_name: str = "vocalsep-data",
    ingest: IngestConfig | None = None,
    eval_percent: int = 10,
    beam_pipeline_args: Sequence[str] = local_beam_args(),
) -> tfx.dsl.Pipeline:
    """A pipeline of just the data stage, with SQLite MLMD at ``metadata_path``."""
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=data_components(roots, join(pipeline_root, "raw_schema"), ingest, eval_percent),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path
        ),
        beam_pipeline_args=list(beam_pipeline_args),
    )
