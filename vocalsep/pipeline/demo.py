"""``vocalsep demo``: the main job end to end on a built-in dataset, in minutes on a laptop.

Synthesises a small multitrack set (or reads ``--data`` roots), runs the whole pipeline (tiny
U-Net), starts ``vocalsep serve`` on the pushed model, separates a demo mix through it over
gRPC, and says where the stems and the Evaluator's report are. Everything lives under one work
folder.

Two orchestrators: ``local`` (TFX's LocalDagRunner in this process; a second run with nothing
changed reuses every cached result) and ``kfp-local`` (the compiled ``pipeline.yaml`` IR under
KFP's own local orchestrator, every step in a container of the image ``make image`` built, and
the pushed model served from a container of the same image).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import portpicker

from vocalsep.audio import io, synth
from vocalsep.data.config import IngestConfig, samples_for_frames
from vocalsep.data.roots import DatasetRoot
from vocalsep.errors import DemoError
from vocalsep.evaluation.gate import EvaluatorConfig
from vocalsep.model.trainer import TrainerConfig
from vocalsep.pipeline import ORCHESTRATORS
from vocalsep.pipeline.config import (
    DEFAULT_IMAGE,
    PipelineConfig,
    local_beam_args,
    roots_from_paths,
)
from vocalsep.pipeline.local_runner import run_local
from vocalsep.pipeline.portable import PORTABLE_UNDER_KFP_LOCAL, beam_stages_on

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


def default_work_folder(orchestrator: str, beam_runner: str) -> str:
    """The demo's work folder when none is named: one per way of running, so each keeps its
    own cached results."""
    if orchestrator == "kfp-local":
        return "vocalsep-demo-kfp"
    return "vocalsep-demo-portable" if beam_runner == "portable" else "vocalsep-demo"


def _newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda path: path.stat().st_mtime, default=None)


def run_demo(
    work: Path,
    data: list[str] | None = None,
    workers: int = 0,
    orchestrator: str = "local",
    image: str | None = None,
    *,
    beam_runner: str = "direct",
    worker_pool: str = "",
) -> dict[str, Path]:
    """Runs the demo under ``work`` with ``orchestrator``, its Beam stages on ``beam_runner``
    (``portable``: SDK workers in ``image``, or of the pool at ``worker_pool``); returns where
    its results are."""
    from vocalsep.separator import Separator
    from vocalsep.serving.client import ServingClient
    from vocalsep.serving.push import latest_version_dir

    if orchestrator not in ORCHESTRATORS:
        raise DemoError(f"orchestrator must be one of {ORCHESTRATORS}, got {orchestrator!r}")
    if orchestrator == "kfp-local" and beam_runner != "direct":
        raise DemoError(PORTABLE_UNDER_KFP_LOCAL)
    work = work.resolve()
    config = demo_config(work, data, workers)
    started = time.perf_counter()
    if not data and not (work / "data").is_dir():
        print(f"[demo] writing {DEMO_TRACKS} synthetic songs to {work / 'data'}", flush=True)
        partial = work / ".data.partial"
        shutil.rmtree(partial, ignore_errors=True)
        synth.write_dataset(partial, DEMO_TRACKS, DEMO_SECONDS, seed=DEMO_SEED, layout="hq")
        partial.rename(work / "data")
    image = image or DEFAULT_IMAGE
    if orchestrator == "kfp-local":
        reports = _run_in_containers(config, work, image)
    else:
        print(
            "[demo] running the pipeline (ExampleGen -> Transform -> Trainer -> SdrEvaluator "
            f"-> Pusher) under {config.pipeline_root}",
            flush=True,
        )
        if beam_runner == "portable":
            pool = worker_pool or f"a worker pool in a container of {image}"
            print(
                f"[demo] ExampleGen and Transform on Beam's portable runner, every DoFn in SDK "
                f"workers of {pool} (log: {work / 'beam-workers.log'})",
                flush=True,
            )
        with beam_stages_on(
            config, beam_runner, image, worker_pool, work / "beam-workers.log"
        ) as staged:
            summary = run_local(staged)
        if summary.executed:
            print(f"[demo] executed: {', '.join(summary.executed)}", flush=True)
        if summary.cached:
            total = len(summary.cached) + len(summary.executed)
            cached = ", ".join(summary.cached)
            print(f"[demo] reused cached results of {len(summary.cached)} of {total}: {cached}")
        reports = list(Path(config.pipeline_root, "SdrEvaluator", "report").glob("*/report.html"))
    version_dir = latest_version_dir(config.serving_base_dir, config.model_name)
    if version_dir is None:
        raise DemoError(
            f"no model was pushed to {config.serving_base_dir}/{config.model_name}: the "
            f"Evaluator did not bless it (floor {DEMO_FLOOR_DB} dB); see the report"
        )
    report = _newest(reports)
    print(f"[demo] served model: {version_dir}", flush=True)

    with _server(orchestrator, image, Path(config.serving_base_dir), work) as address:
        mix_path = _demo_mix(work)
        with ServingClient(
            address, config.model_name, connect_deadline_s=SERVER_START_DEADLINE_S
        ) as client:
            separator = Separator(client, block_seconds=30.0)
            stems = separator.separate_file(mix_path, work / "stems", overwrite=True)
    minutes = (time.perf_counter() - started) / 60
    print(f"[demo] done in {minutes:.1f} min", flush=True)
    results = {"mix": mix_path, **stems, "served model": Path(version_dir)}
    if report is not None:
        results["report"] = report
    for name, path in results.items():
        print(f"  {name}: {path}")
    return results


def _run_in_containers(config: PipelineConfig, work: Path, image: str) -> list[Path]:
    """The pipeline under kfp.local, the work folder as its root; returns the Evaluator's
    reports (kfp.local writes each run under ``<pipeline name>-<time>/``)."""
    from vocalsep.pipeline.kfp_local_runner import run_kfp_local, stage_under_root

    roots = []
    for root in config.data_roots:
        if not Path(root.path).resolve().is_relative_to(work):
            staged = stage_under_root(Path(root.path), work, Path(root.path).name)
            print(f"[demo] {root.path} staged under the pipeline root: {staged}", flush=True)
            root = dataclasses.replace(root, path=str(staged))
        roots.append(root)
    config = dataclasses.replace(config, data_roots=tuple(roots), pipeline_root=str(work))
    print(
        f"[demo] running pipeline.yaml under kfp.local (DockerRunner), every step in {image}, "
        f"pipeline root {work}",
        flush=True,
    )
    run = run_kfp_local(config, image, prefix="[demo] ")
    total = sum(step.seconds for step in run.steps)
    print(f"[demo] {len(run.steps)} steps in {total / 60:.1f} min; log: {run.log_path}", flush=True)
    return list(work.glob(f"{config.pipeline_name}-*/*/report/report.html"))


@contextmanager
def _server(orchestrator: str, image: str, serving_dir: Path, work: Path) -> Iterator[str]:
    """``vocalsep serve`` on the serving folder: a process here, or a container of the image
    under kfp-local. Yields its address."""
    port = portpicker.pick_unused_port()
    if orchestrator == "kfp-local":
        from vocalsep.pipeline.kfp_local_runner import served_from_image

        with served_from_image(image, serving_dir, port) as address:
            print(f"[demo] vocalsep serve in a container of {image} on {address}", flush=True)
            yield address
        return
    command = [
        sys.executable, "-m", "vocalsep", "serve", "--model-base", str(serving_dir),
        "--port", str(port),
    ]  # fmt: skip
    with (work / "server.log").open("w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        print(f"[demo] vocalsep serve listening on localhost:{port}", flush=True)
        yield f"localhost:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _demo_mix(work: Path) -> Path:
    """A mix the model never trained on: a synthetic song from a seed no dataset track uses."""
    path = work / "demo_mix.wav"
    if not path.exists():
        seed = synth.track_seed(DEMO_SEED + 1, 0)
        stems = synth.generate_track(seed, DEMO_SECONDS)
        mix = np.clip(sum(stems.values()), -1.0, 1.0).astype(np.float32)
        io.write_audio(path, mix, io.MODEL_SAMPLE_RATE)
    return path
