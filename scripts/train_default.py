"""Trains the shipped default model with the project's own pipeline (``make train-default``).

Runs ``vocalsep.pipeline.config.default_model`` (MUSDB18-7 train split, validated on the 14
official validation clips) with the local runner: ExampleGen -> Transform -> Trainer ->
SdrEvaluator -> Pusher. Then copies the Trainer's export of the best validation epoch to
``models/default`` (atomically), so ``vocalsep separate`` uses it. Settings live in
``DEFAULT_MODEL_TRAINER``; this script only says where things go.

    .venv/bin/python scripts/train_default.py [--musdb ../shared/data/musdb18-7/train]
        [--root runs/default-model] [--output models/default]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from vocalsep.pipeline import config, local_runner

REPO_ROOT = Path(__file__).resolve().parents[1]


def newest_export(pipeline_root: Path) -> Path:
    """The serving export of the Trainer's newest run in this pipeline root."""
    exports = sorted(
        (pipeline_root / "Trainer" / "model").glob("*/Format-Serving"),
        key=lambda path: int(path.parent.name),
    )
    if not exports:
        raise SystemExit(f"no Trainer export under {pipeline_root}")
    return exports[-1]


def install(export_dir: Path, output: Path) -> None:
    """Copies ``export_dir`` to ``output`` through a temporary sibling and a rename."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    shutil.copytree(export_dir, staging, dirs_exist_ok=True)
    if output.exists():
        shutil.rmtree(output)
    staging.chmod(0o755)
    staging.rename(output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--musdb", default=str(REPO_ROOT.parent / "shared/data/musdb18-7/train"))
    parser.add_argument("--root", default=str(REPO_ROOT / "runs" / "default-model"))
    parser.add_argument("--output", default=str(REPO_ROOT / "models" / "default"))
    args = parser.parse_args(argv)
    # force: an imported library has already given the root logger a handler (at WARNING).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", force=True)
    root = Path(args.root).resolve()
    pipeline_config = config.default_model(
        str(Path(args.musdb).resolve()), str(root / "pipeline"), str(root / "serving")
    )
    summary = local_runner.run_local(pipeline_config)
    print(f"executed: {summary.executed}; cached: {summary.cached}")
    export_dir = newest_export(Path(pipeline_config.pipeline_root))
    install(export_dir, Path(args.output))
    print(f"installed {export_dir} as {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
