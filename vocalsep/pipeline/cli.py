"""``vocalsep pipeline run|compile|schedule``: the thin runners behind one command.

Heavy imports (TFX, kfp) happen inside the handlers so ``vocalsep --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from vocalsep.errors import OrchestratorError, ScheduleError
from vocalsep.pipeline import (
    BEAM_RUNNERS,
    FLINK_ENVIRONMENTS,
    LOCAL_BEAM_RUNNERS,
    ORCHESTRATORS,
)

DEFAULT_CRON = "0 0 3 * * 0"
"""Sundays at 03:00 (KFP cron has a seconds field)."""


def _trainer_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = json.loads(args.trainer_config) if args.trainer_config else {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.model_size is not None:
        overrides["model_size"] = args.model_size
    return overrides


def _cmd_run(args: argparse.Namespace) -> int:
    from vocalsep.pipeline import config

    root = Path(args.root).resolve()
    pipeline_config = config.PipelineConfig(
        data_roots=config.roots_from_paths([str(Path(path).resolve()) for path in args.data]),
        pipeline_root=str(root / "pipeline") if args.orchestrator == "local" else str(root),
        serving_base_dir=str(
            Path(args.serving_dir).resolve() if args.serving_dir else root / "serving"
        ),
        pipeline_name=args.name,
        beam_pipeline_args=config.local_beam_args(args.workers),
        warm_start=bool(args.imported_model_uri),
        imported_model_uri=str(Path(args.imported_model_uri).resolve())
        if args.imported_model_uri
        else "",
    )
    pipeline_config = config.with_trainer(pipeline_config, _trainer_overrides(args))
    image = args.image or config.DEFAULT_IMAGE
    if args.orchestrator == "kfp-local":
        from vocalsep.pipeline import kfp_local_runner

        if args.beam_runner != "direct":
            from vocalsep.pipeline.portable import PORTABLE_UNDER_KFP_LOCAL

            raise OrchestratorError(PORTABLE_UNDER_KFP_LOCAL)
        run = kfp_local_runner.run_kfp_local(pipeline_config, image, prefix="[kfp-local] ")
        for step in run.steps:
            print(f"{step.name}: {step.status} in {step.seconds:.0f} s")
        print(f"log: {run.log_path}")
    else:
        from vocalsep.pipeline import local_runner
        from vocalsep.pipeline.portable import beam_stages_on

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        with beam_stages_on(
            pipeline_config, args.beam_runner, image, args.worker_pool, root / "beam-workers.log"
        ) as staged:
            local_runner.run_local(staged)
    print(f"pipeline root: {pipeline_config.pipeline_root}")
    print(f"served models: {pipeline_config.serving_base_dir}/{pipeline_config.model_name}")
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    from vocalsep.pipeline import config, kubeflow_runner

    image = args.image or config.DEFAULT_IMAGE
    beam = kubeflow_runner.beam_args(
        args.beam_runner,
        project=args.project,
        region=args.region,
        temp_location=args.temp_location,
        flink_master=args.flink_master,
        flink_environment=args.flink_environment,
        worker_pool=args.worker_pool,
        image=image,
    )
    pipeline_config = kubeflow_runner.cluster_config(
        pipeline_root=args.pipeline_root,
        data_root=args.data_root,
        serving_base_dir=args.serving_dir,
        imported_model_uri=args.imported_model_uri,
        beam_pipeline_args=beam,
    )
    output = kubeflow_runner.compile_pipeline(pipeline_config, args.output, image)
    print(f"wrote {output}")
    return 0


def _cmd_schedule(args: argparse.Namespace) -> int:
    import kfp

    package = Path(args.package)
    if not package.is_file():
        raise ScheduleError(args.endpoint, f"pipeline package {package} does not exist")
    try:
        client = kfp.Client(host=args.endpoint)
        experiment = client.create_experiment(args.experiment)
        run = client.create_recurring_run(
            experiment_id=experiment.experiment_id,
            job_name=args.job_name,
            cron_expression=args.cron,
            pipeline_package_path=str(package),
            params={},
            enabled=True,
        )
    except Exception as error:  # kfp raises urllib3, ApiException or ValueError alike
        raise ScheduleError(args.endpoint, f"{type(error).__name__}: {error}") from error
    print(f"recurring run {run.recurring_run_id} ({args.cron}) in experiment {args.experiment}")
    return 0


def add_orchestrator_arguments(
    parser: argparse.ArgumentParser, local: str, in_containers: str
) -> None:
    """``--orchestrator`` and ``--image``, as every command that runs the pipeline takes them;
    ``local`` and ``in_containers`` say what each choice means for that command."""
    parser.add_argument(
        "--orchestrator",
        choices=ORCHESTRATORS,
        default="local",
        help=f"local: {local}; kfp-local: {in_containers} (default: %(default)s)",
    )
    parser.add_argument(
        "--image",
        default=None,
        help="pipeline image with kfp-local (default: the one `make image` builds)",
    )


def add_beam_arguments(parser: argparse.ArgumentParser) -> None:
    """``--beam-runner`` and ``--worker-pool`` for ExampleGen and Transform in a run here."""
    parser.add_argument(
        "--beam-runner",
        choices=LOCAL_BEAM_RUNNERS,
        default="direct",
        help="direct: Beam's DirectRunner in local processes; portable: Beam's portable runner "
        "with every DoFn in SDK workers of --image (a worker pool container on 127.0.0.1, or "
        "--worker-pool) (default: %(default)s)",
    )
    parser.add_argument(
        "--worker-pool",
        default="",
        metavar="HOST:PORT",
        help="with --beam-runner portable: a running worker pool (vocalsep-beam-worker-pool) to "
        "use instead of starting one",
    )


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``pipeline`` and its subcommands to the top-level parser."""
    pipeline = commands.add_parser(
        "pipeline", help="run the TFX pipeline locally, compile it for Kubeflow, schedule it"
    )
    actions = pipeline.add_subparsers(dest="pipeline_command", metavar="ACTION", required=True)

    run = actions.add_parser(
        "run",
        help="run ExampleGen -> Transform -> Trainer -> SdrEvaluator -> Pusher on this machine",
        description="Runs the whole pipeline here: with LocalDagRunner, SQLite MLMD and Beam's "
        "DirectRunner (unchanged inputs and settings reuse cached results), or as Kubeflow "
        "runs it, the compiled IR under kfp.local with every step in a container.",
    )
    run.add_argument("--local", action="store_true", help="run on this machine (the default)")
    add_orchestrator_arguments(
        run,
        "LocalDagRunner, SQLite MLMD, cached",
        "the compiled IR under kfp.local, every step in a container of --image, ROOT as the "
        "pipeline root (data, serving folder and import must lie under it)",
    )
    run.add_argument(
        "--imported-model-uri",
        default="",
        help="warm start: the newest served model of the Trainer's architecture, else this "
        "import (`vocalsep pretrained import`)",
    )
    run.add_argument("--data", nargs="+", required=True, metavar="ROOT", help="dataset roots")
    run.add_argument(
        "--root", default="vocalsep-run", help="pipeline root and MLMD (default: %(default)s)"
    )
    run.add_argument("--serving-dir", help="TF Serving model base path (default: ROOT/serving)")
    run.add_argument("--name", default="vocalsep", help="pipeline name")
    run.add_argument("--steps", type=int, help="training steps")
    run.add_argument("--model-size", choices=("default", "tiny"))
    run.add_argument("--trainer-config", help="JSON object of Trainer settings")
    run.add_argument("--workers", type=int, default=0, help="Beam workers (0: one per CPU)")
    add_beam_arguments(run)
    run.set_defaults(handler=_cmd_run)

    compile_ = actions.add_parser("compile", help="write the Kubeflow Pipelines v2 YAML")
    compile_.add_argument("-o", "--output", default="pipeline.yaml")
    compile_.add_argument("--image", default=None, help="container image for every step")
    compile_.add_argument("--pipeline-root", default="gs://vocalsep/pipeline-root")
    compile_.add_argument("--data-root", default="gs://vocalsep/data/musdb/span-{SPAN}")
    compile_.add_argument("--serving-dir", default="gs://vocalsep/serving")
    compile_.add_argument(
        "--imported-model-uri",
        default="gs://vocalsep/pretrained/spleeter-2stems",
        help="where `vocalsep pretrained import spleeter-2stems --out` was copied: the first "
        "run's warm start",
    )
    compile_.add_argument(
        "--beam-runner",
        choices=BEAM_RUNNERS,
        default="direct",
        help="where ExampleGen and Transform run: in the step's container (direct), on SDK "
        "workers of a worker pool (portable, --worker-pool), on Flink or on Dataflow",
    )
    compile_.add_argument("--project", default="", help="Dataflow")
    compile_.add_argument("--region", default="", help="Dataflow")
    compile_.add_argument("--temp-location", default="", help="Dataflow")
    compile_.add_argument("--flink-master", default="", help="Flink's job manager, HOST:PORT")
    compile_.add_argument(
        "--flink-environment",
        choices=FLINK_ENVIRONMENTS,
        default="external",
        help="external: each task manager's worker-pool sidecar (k8s/flink), at --worker-pool "
        "or localhost:50000; docker: the image's Beam SDK container (default: %(default)s)",
    )
    compile_.add_argument(
        "--worker-pool", default="", metavar="HOST:PORT", help="portable, Flink external"
    )
    compile_.set_defaults(handler=_cmd_compile)

    schedule = actions.add_parser("schedule", help="create a KFP recurring run of pipeline.yaml")
    schedule.add_argument("--endpoint", required=True, metavar="URL", help="KFP API endpoint")
    schedule.add_argument(
        "--cron", default=DEFAULT_CRON, help="6-field cron (default: %(default)s)"
    )
    schedule.add_argument("--experiment", default="vocalsep")
    schedule.add_argument("--job-name", default="vocalsep-retrain")
    schedule.add_argument("--package", default="pipeline.yaml", help="compiled pipeline")
    schedule.set_defaults(handler=_cmd_schedule)
