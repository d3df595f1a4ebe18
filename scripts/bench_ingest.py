"""Benchmark the data stage: minutes of multitrack audio per CPU-second, ExampleGen + Transform.

Runs the real local pipeline (LocalDagRunner, SQLite MLMD) over ../shared/data/musdb18-7 (and
MIR-1K with --mir1k), or over a synthetic catalogue of N songs (--synthetic N), once per Beam
runner and worker count: the DirectRunner in multi_processing mode, and the portable runner
(--runners portable) with its SDK workers in a worker pool container of the image (`make
image`; the embedded job service runs one worker, so its worker count is 1). Each run is a
child process, so for the DirectRunner its CPU time is the child's, its Beam workers' and their
ffmpeg decoders' (all waited for, hence in RUSAGE_CHILDREN); the portable runner's workers run
in the container, and their largest peak RSS comes from the pool's log. Prints one JSON object
per run and a summary table.

    .venv/bin/python scripts/bench_ingest.py --workers 1 2
    .venv/bin/python scripts/bench_ingest.py --runners direct portable --workers 1 2
    .venv/bin/python scripts/bench_ingest.py --runners direct portable --synthetic 200
    .venv/bin/python scripts/bench_ingest.py --mir1k --workers 2 --keep   # the full data run
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"
RESULT_FILE = "bench_result.json"
SYNTHETIC_SECONDS = 6.0
_POOL_PEAK = re.compile(r"reaped (\d+) workers; the largest peak RSS (\d+) MiB")


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _newest(folder: Path) -> Path:
    return max(folder.iterdir(), key=lambda path: int(path.name))


def _component_seconds(metadata_path: Path) -> dict[str, float]:
    """Wall seconds of each component's execution, from the MLMD execution timestamps."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata_path)
    store = metadata_store.MetadataStore(config)
    seconds = {}
    for execution in store.get_executions():
        (execution_type,) = store.get_execution_types_by_id([execution.type_id])
        elapsed = execution.last_update_time_since_epoch - execution.create_time_since_epoch
        seconds[execution_type.name.rsplit(".", 1)[-1]] = elapsed / 1000.0
    return seconds


def run_once(
    data: Path, work_dir: Path, workers: int, mir1k: bool, worker_pool: str, synthetic: bool
) -> dict[str, Any]:
    """One pipeline run in this process; returns counts, sizes and component wall times."""
    from tfx import v1 as tfx

    from vocalsep.data import roots
    from vocalsep.data.config import IngestConfig
    from vocalsep.pipeline.config import DEFAULT_IMAGE, local_beam_args
    from vocalsep.pipeline.data_stage import data_pipeline
    from vocalsep.pipeline.portable import portable_beam_args

    if synthetic:
        dataset_roots = [
            roots.DatasetRoot(
                str(data), name="synth", split_rule="list", validation_tracks=("synth_000",)
            )
        ]
    else:
        dataset_roots = [roots.musdb_root(str(data / "musdb18-7" / "train"), name="musdb18-7")]
        if mir1k:
            dataset_roots.append(roots.mir1k_root(str(data / "mir1k")))
    ingest = IngestConfig()
    pipeline = data_pipeline(
        dataset_roots,
        str(work_dir / "root"),
        str(work_dir / "mlmd.sqlite"),
        ingest=ingest,
        beam_pipeline_args=portable_beam_args(worker_pool, DEFAULT_IMAGE)
        if worker_pool
        else local_beam_args(workers),
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    examples = _newest(work_dir / "root" / "FileBasedExampleGen" / "examples")
    transformed = _newest(work_dir / "root" / "Transform" / "transformed_examples")
    summary = json.loads((examples / "summary.json").read_text())
    train_segment_seconds = summary["examples"]["train"] * ingest.segment_samples / 44100
    transformed_bytes = _folder_bytes(transformed)
    return {
        "summary": summary,
        "rejects": (examples / "rejects.jsonl").read_text().splitlines(),
        "bytes": {
            "examples_train": _folder_bytes(examples / "Split-train"),
            "examples_eval": _folder_bytes(examples / "Split-eval"),
            "transformed_train": transformed_bytes,
        },
        "transformed_bytes_per_audio_second": transformed_bytes / train_segment_seconds,
        "component_seconds": _component_seconds(work_dir / "mlmd.sqlite"),
        "examples_uri": str(examples),
        "transformed_uri": str(transformed),
    }


def measure(
    data: Path, workers: int, mir1k: bool, work_dir: Path, runner: str, synthetic: bool
) -> dict[str, Any]:
    """Runs run_once in a child process (with a worker pool in the image for ``portable``)
    and adds its wall and CPU seconds and the largest worker's peak memory."""
    from vocalsep.pipeline.config import DEFAULT_IMAGE
    from vocalsep.pipeline.portable import worker_pool_in_image

    command = [sys.executable, __file__, "--child", "--data", str(data), "--work-dir"]
    command += [str(work_dir), "--workers", str(workers), *(["--mir1k"] if mir1k else [])]
    command += [*(["--synthetic", "1"] if synthetic else [])]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if runner == "portable":
        log = work_dir / "beam-workers.log"
        with worker_pool_in_image(
            DEFAULT_IMAGE, [str(work_dir)], [str(data)], log_path=log
        ) as pool:
            start = time.perf_counter()
            subprocess.run([*command, "--worker-pool", pool], check=True)
            wall = time.perf_counter() - start
        started, peak = _POOL_PEAK.search(log.read_text()).groups()
        worker_peak_mib: float | None = float(peak)
        pool_workers: int | None = int(started)  # one per Beam job: ExampleGen's, Transform's
    else:
        start = time.perf_counter()
        subprocess.run(command, check=True)
        wall = time.perf_counter() - start
        worker_peak_mib = None
        pool_workers = None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = json.loads((work_dir / RESULT_FILE).read_text())
    seconds = result["summary"]["seconds"]
    tracks = result["summary"]["tracks"]
    audio_minutes = (seconds["train"] + seconds["eval"]) / 60
    result.update(
        runner=runner,
        workers=workers,
        wall_seconds=wall,
        # The portable runner's workers run in the container: not this process's children.
        cpu_seconds=cpu if runner == "direct" else None,
        audio_minutes=audio_minutes,
        audio_minutes_per_cpu_second=audio_minutes / cpu if runner == "direct" else None,
        audio_minutes_per_wall_second=audio_minutes / wall,
        songs_per_minute=(tracks["train"] + tracks["eval"]) / (wall / 60),
        # ru_maxrss is KiB on Linux: the largest single descendant (the TFX process or a Beam
        # worker) for the DirectRunner; the pool's largest SDK worker for portable.
        max_rss_mib=after.ru_maxrss / 1024,
        worker_peak_rss_mib=worker_peak_mib,
        pool_workers_started=pool_workers,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runners", nargs="+", choices=("direct", "portable"), default=["direct"])
    parser.add_argument("--mir1k", action="store_true", help="also ingest ../shared/data/mir1k")
    parser.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="N",
        help=f"ingest N synthetic songs of {SYNTHETIC_SECONDS:.0f} s instead of --data",
    )
    parser.add_argument("--work-dir", type=Path, help="where runs write (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the pipeline outputs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-pool", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = run_once(
            args.data,
            args.work_dir,
            args.workers[0],
            args.mir1k,
            args.worker_pool,
            bool(args.synthetic),
        )
        (args.work_dir / RESULT_FILE).write_text(json.dumps(result, indent=2))
        return
    base = (args.work_dir or Path(tempfile.mkdtemp(prefix="vocalsep-bench-"))).resolve()
    data = args.data.resolve()
    if args.synthetic:
        from vocalsep.audio import synth

        data = base / f"synthetic-{args.synthetic}"
        if not data.is_dir():
            synth.write_dataset(data, args.synthetic, SYNTHETIC_SECONDS, seed=5, layout="hq")
    runs = [
        (runner, workers)
        for runner in args.runners
        for workers in (args.workers if runner == "direct" else [1])
    ]
    rows = []
    for runner, workers in runs:
        work_dir = base / f"{runner}-{workers}"
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
        result = measure(data, workers, args.mir1k, work_dir, runner, bool(args.synthetic))
        print(json.dumps(result, indent=2), flush=True)
        rows.append(result)
        if not args.keep:
            shutil.rmtree(work_dir)
    print(
        "\nrunner    workers  songs  audio_min  wall_s  songs/min  audio_min/wall_s  "
        "peak_rss_mib (largest process | largest pool worker)"
    )
    for row in rows:
        tracks = row["summary"]["tracks"]
        peak = row["worker_peak_rss_mib"] or row["max_rss_mib"]
        print(
            f"{row['runner']:<8}  {row['workers']:>7}  {tracks['train'] + tracks['eval']:>5}  "
            f"{row['audio_minutes']:>9.2f}  {row['wall_seconds']:>6.1f}  "
            f"{row['songs_per_minute']:>9.1f}  {row['audio_minutes_per_wall_second']:>16.4f}  "
            f"{peak:>12.0f}"
        )
    if not args.keep and not args.work_dir:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
