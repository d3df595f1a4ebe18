"""``vocalsep demo``: the main job end to end on a built-in dataset, in minutes on a laptop.

Synthesises a small multitrack set (or reads ``--data`` roots), runs the whole pipeline with
the local runner (tiny U-Net), starts ``vocalsep serve`` on the pushed model, separates a demo
mix through it over gRPC, and says where the stems and the Evaluator's report are. Everything
lives under one work folder, so a second run with nothing changed reuses every cached result.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import portpicker

from vocalsep.audio import io, synth
from vocalsep.data.config import IngestConfig, samples_for_frames
from vocalsep.data.roots import DatasetRoot
from vocalsep.errors import DemoError
from vocalsep.evaluation.gate import EvaluatorConfig
from vocalsep.model.trainer import TrainerConfig
from vocalsep.pipeline.config import PipelineConfig, local_beam_args, roots_from_paths
from vocalsep.pipeline.local_runner import run_local

DEMO_TRACKS = 12
DEMO_SECONDS = 8.0
DEMO_SEED = 2017
DEMO_EVAL_TRACKS = ("synth_010", "synth_011")
DEMO_TRAINER = TrainerConfig(
    model_size="tiny",
    steps=600,
    steps_per_epoch=150,
    batch_size=8,
    learning_rate=3e-3,
    seed=0,
    shuffle_buffer=64,
    eval_tracks=2,
    eval_seconds=DEMO_SECONDS,
)
# Separates better than the mixture itself (about 0 dB): a model that learned nothing fails.
DEMO_FLOOR_DB = 3.0
SERVER_START_DEADLINE_S = 120.0


def demo_config(work: Path, data: list[str] | None = None, workers: int = 0) -> PipelineConfig:
    """The demo pipeline: tiny U-Net, a short run, a floor well above the mixture."""
    trainer = DEMO_TRAINER
    if data:
        roots = roots_from_paths(data)
    else:
        roots = (
            DatasetRoot(
                str(work / "data"),
                name="synth",
                split_rule="list",
                validation_tracks=DEMO_EVAL_TRACKS,
            ),
        )
    segment = samples_for_frames(4 * trainer.unet_config().patch_frames, trainer.unet_config().stft)
    return PipelineConfig(
        data_roots=roots,
        pipeline_root=str(work / "pipeline"),
        serving_base_dir=str(work / "serving"),
        pipeline_name="vocalsep-demo",
        ingest=IngestConfig(segment_samples=segment),
        trainer=trainer,
        evaluator=EvaluatorConfig(floor_db=DEMO_FLOOR_DB, report_tracks=2, excerpt_seconds=5.0),
        beam_pipeline_args=local_beam_args(workers),
    )


def _newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda path: path.stat().st_mtime, default=None)


def _start_server(serving_dir: Path, log_path: Path) -> tuple[str, subprocess.Popen]:
    """``vocalsep serve`` on a free port, as its own process, logging to ``log_path``."""
    port = portpicker.pick_unused_port()
    command = [
        sys.executable, "-m", "vocalsep", "serve", "--model-base", str(serving_dir),
        "--port", str(port),
    ]  # fmt: skip
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    return f"localhost:{port}", process


def run_demo(work: Path, data: list[str] | None = None, workers: int = 0) -> dict[str, Path]:
    """Runs the demo under ``work``; returns where its results are."""
    from vocalsep.separator import Separator
    from vocalsep.serving.client import ServingClient
    from vocalsep.serving.push import latest_version_dir

    work = work.resolve()
    config = demo_config(work, data, workers)
    started = time.perf_counter()
    if not data and not (work / "data").is_dir():
        print(f"[demo] writing {DEMO_TRACKS} synthetic songs to {work / 'data'}", flush=True)
        partial = work / ".data.partial"
        shutil.rmtree(partial, ignore_errors=True)
        synth.write_dataset(partial, DEMO_TRACKS, DEMO_SECONDS, seed=DEMO_SEED, layout="hq")
        partial.rename(work / "data")
    print(
        "[demo] running the pipeline (ExampleGen -> Transform -> Trainer -> SdrEvaluator -> "
        f"Pusher) under {config.pipeline_root}",
        flush=True,
    )
    summary = run_local(config)
    if summary.executed:
        print(f"[demo] executed: {', '.join(summary.executed)}", flush=True)
    if summary.cached:
        total = len(summary.cached) + len(summary.executed)
        cached = ", ".join(summary.cached)
        print(f"[demo] reused cached results of {len(summary.cached)} of {total}: {cached}")
    version_dir = latest_version_dir(config.serving_base_dir, config.model_name)
    if version_dir is None:
        raise DemoError(
            f"no model was pushed to {config.serving_base_dir}/{config.model_name}: the "
            f"Evaluator did not bless it (floor {DEMO_FLOOR_DB} dB); see the report"
        )
    report = _newest(list(Path(config.pipeline_root, "SdrEvaluator", "report").glob("*/*.html")))
    print(f"[demo] served model: {version_dir}", flush=True)

    address, server = _start_server(Path(config.serving_base_dir), work / "server.log")
    try:
        print(f"[demo] vocalsep serve listening on {address}", flush=True)
        mix_path = _demo_mix(work)
        with ServingClient(
            address, config.model_name, connect_deadline_s=SERVER_START_DEADLINE_S
        ) as client:
            separator = Separator(client, block_seconds=30.0)
            stems = separator.separate_file(mix_path, work / "stems", overwrite=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    minutes = (time.perf_counter() - started) / 60
    print(f"[demo] done in {minutes:.1f} min", flush=True)
    results = {"mix": mix_path, **stems, "served model": Path(version_dir)}
    if report is not None:
        results["report"] = report
    for name, path in results.items():
        print(f"  {name}: {path}")
    return results


def _demo_mix(work: Path) -> Path:
    """A mix the model never trained on: a synthetic song from a seed no dataset track uses."""
    path = work / "demo_mix.wav"
    if not path.exists():
        seed = synth.track_seed(DEMO_SEED + 1, 0)
        stems = synth.generate_track(seed, DEMO_SECONDS)
        mix = np.clip(sum(stems.values()), -1.0, 1.0).astype(np.float32)
        io.write_audio(path, mix, io.MODEL_SAMPLE_RATE)
    return path
