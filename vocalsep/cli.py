"""The `vocalsep` command line.

Subcommands import their heavy modules lazily so `vocalsep --help` and `--version` answer
without loading TensorFlow. A failure on one input is reported on one line and the other
inputs still run; the exit status says whether everything succeeded.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vocalsep import __version__, logs
from vocalsep.errors import VocalsepError
from vocalsep.model import cli as model_cli
from vocalsep.pipeline import cli as pipeline_cli

if TYPE_CHECKING:
    from vocalsep.separator import Separator
    from vocalsep.serving.client import ServingClient
    from vocalsep.web.jobs import SeparatorSource

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
UNUSED_BY_SEPARATE = ("keras", "tf_keras", "googleapiclient")
"""Modules TensorFlow's import loads that separating never uses (Keras for ``tf.keras``, the
Google API client for GCE cluster discovery): about 1 s of start-up (scripts/bench_startup.py)."""
REMOTE_BLOCK_SECONDS = 60.0
"""Audio per request with --server: long enough to waste little on block overlaps."""


def _report_error(error: VocalsepError) -> None:
    print(f"vocalsep: error: {error}", file=sys.stderr)


def _run_each(paths: Sequence[str], action: Callable[[str], None]) -> int:
    """Applies action to every path, so one bad file does not stop the rest."""
    failures = 0
    for path in paths:
        try:
            action(path)
        except VocalsepError as error:
            _report_error(error)
            failures += 1
    return EXIT_FAILED if failures else EXIT_OK


def _cmd_info(args: argparse.Namespace) -> int:
    from vocalsep.audio import io

    def show(path: str) -> None:
        info = io.probe(path)
        frames = "unknown length" if info.frames is None else f"{info.frames} frames"
        duration = "?" if info.duration_seconds is None else f"{info.duration_seconds:.3f}"
        print(
            f"{path}: {info.codec} in {info.container}, {info.sample_rate} Hz, "
            f"{info.channels} ch, {duration} s ({frames}), {info.num_streams} audio stream(s)"
        )

    return _run_each(args.inputs, show)


def _cmd_convert(args: argparse.Namespace) -> int:
    from vocalsep.audio import io

    output = Path(args.output)
    if output.exists() and not args.overwrite:
        print(f"vocalsep: error: {output}: exists (use --overwrite)", file=sys.stderr)
        return EXIT_FAILED

    def convert(path: str) -> None:
        sample_rate = args.sample_rate or io.probe(path, stream=args.stream).sample_rate
        blocks = io.iter_blocks(
            path, sample_rate=sample_rate, channels=args.channels, stream=args.stream
        )
        with io.open_writer(output, sample_rate, args.channels, subtype=args.subtype) as writer:
            for block in blocks:
                writer.write(block)
        print(f"{path} -> {output}")

    return _run_each([args.input], convert)


def _remote_separator(args: argparse.Namespace, client: ServingClient | None = None) -> Separator:
    """A Separator calling TF Serving, with blocks that fit the gRPC message limit."""
    from vocalsep.separator import Separator
    from vocalsep.serving.client import ServingClient

    if client is None:
        client = ServingClient(args.server, args.model_name, deadline_s=args.deadline)
    block_seconds = min(REMOTE_BLOCK_SECONDS, 0.9 * client.max_block_samples() / client.sample_rate)
    return Separator(client, block_seconds=block_seconds, in_flight=args.in_flight)


def _cmd_separate(args: argparse.Namespace) -> int:
    if args.model is not None and args.server is not None:
        print("vocalsep: error: give --model or --server, not both", file=sys.stderr)
        return EXIT_USAGE
    if "tensorflow" not in sys.modules:
        # This process only separates: make those imports fail fast (TensorFlow catches the
        # ImportError). Once TensorFlow is in, as when main() runs inside tests, it is too late
        # and nothing is changed.
        for name in UNUSED_BY_SEPARATE:
            sys.modules.setdefault(name, None)
    from vocalsep.model import saved

    with saved.compute_precision("float32" if args.server else args.precision):
        return _separate_all(args)


def _separate_all(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from vocalsep.separator import Separator

    if args.server is not None:
        separator = _remote_separator(args)
    else:
        from vocalsep.model.default import default_model_dir

        separator = Separator(args.model or default_model_dir())
    show_progress = not args.quiet and sys.stderr.isatty()
    failures = 0
    for path in args.inputs:
        with tqdm(
            desc=Path(path).name, unit="s", disable=not show_progress, file=sys.stderr, leave=False
        ) as bar:

            def report(done: float, total: float | None, bar: tqdm = bar) -> None:
                bar.total = None if total is None else max(round(total), 1)
                bar.update(round(done) - bar.n)

            try:
                outputs = separator.separate_file(
                    path,
                    args.output_dir,
                    audio_format=args.format,
                    overwrite=args.overwrite,
                    progress=report,
                )
            except VocalsepError as error:
                message = str(error)
                if not message.startswith(f"{path}: "):
                    message = f"{path}: {message}"
                print(f"vocalsep: error: {message}", file=sys.stderr)
                failures += 1
                continue
        print(f"{path} -> {next(iter(outputs.values())).parent}")
    return EXIT_FAILED if failures else EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from vocalsep.serving import server

    logging.basicConfig(format="%(asctime)s %(message)s", level=logging.WARNING)
    try:
        server.serve(
            args.model_base,
            args.port,
            host=args.host,
            poll_seconds=args.poll_seconds,
            num_versions=args.num_versions,
        )
    except OSError as error:
        print(f"vocalsep: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _cmd_synth(args: argparse.Namespace) -> int:
    from vocalsep.audio import synth

    folders = synth.write_dataset(
        args.output, args.tracks, args.seconds, seed=args.seed, layout=args.layout
    )
    print(f"wrote {len(folders)} synthetic tracks ({args.layout} layout) under {args.output}")
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from vocalsep.evaluation import report
    from vocalsep.evaluation.evaluate import MIXTURE_CONVENTION, json_text
    from vocalsep.evaluation.gate import EvaluatorConfig
    from vocalsep.evaluation.run import evaluate_exports, metrics_document
    from vocalsep.evaluation.sources import dataset_root, tracks_from_root

    config = EvaluatorConfig(
        floor_db=args.floor_db,
        min_improvement_db=args.min_improvement_db,
        workers=args.workers,
        report_tracks=args.report_tracks,
    )
    root = dataset_root(args.data)
    print(
        f"scoring the {args.split} split of {root.path} ({root.split_rule} split rule), "
        f"separating {MIXTURE_CONVENTION}"
    )
    result, decision = evaluate_exports(
        args.model,
        tracks_from_root(root, args.split),
        config,
        args.baseline,
        where=f"{root.path} ({args.split} split)",
    )
    print(report.text_summary(result, decision))
    if args.json:
        metrics = json_text(metrics_document(result, decision, config))
        print(f"wrote {report.write_text_atomically(args.json, metrics)}")
    if args.report:
        print(f"wrote {report.write_report(args.report, result, decision)}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    # Library deprecation notices would bury the demo's progress lines.
    logs.ignore_warnings(FutureWarning)
    logs.ignore_warnings(UserWarning)
    from vocalsep.pipeline import demo

    logs.show_pipeline_progress("[demo] ")
    root = args.root or demo.default_work_folder(args.orchestrator, args.beam_runner)
    demo.run_demo(
        Path(root),
        args.data,
        args.workers,
        args.orchestrator,
        args.image,
        beam_runner=args.beam_runner,
        worker_pool=args.worker_pool,
    )
    return EXIT_OK


def _add_served_model_arguments(parser: argparse.ArgumentParser) -> None:
    """How to use the model behind --server (``_remote_separator`` reads these)."""
    parser.add_argument(
        "--model-name", default="vocalsep", help="served model name (with --server)"
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="give up on a request after this long, retries included (with --server)",
    )
    parser.add_argument(
        "--in-flight", type=int, default=4, help="requests sent at once (with --server)"
    )


def _cmd_web(args: argparse.Namespace) -> int:
    if args.model is not None and args.server is not None:
        print("vocalsep: error: give --model or --server, not both", file=sys.stderr)
        return EXIT_USAGE
    if args.server is None and args.workers > 1:
        print(
            "vocalsep: error: --workers above 1 needs --server (one local model uses every core)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from vocalsep.model import saved
    from vocalsep.web import server
    from vocalsep.web.jobs import Limits

    config = server.WebConfig(
        host=args.host,
        port=args.port,
        work_dir=None if args.work_dir is None else Path(args.work_dir).resolve(),
        max_upload_mb=args.max_upload_mb,
        keep_hours=args.keep_hours,
        limits=Limits(
            max_minutes=args.max_minutes or None,
            max_queue=args.max_queue,
            max_per_client=args.max_per_client,
            disk_budget_bytes=round(args.max_disk_gb * 2**30),
            workers=args.workers,
        ),
        drain_seconds=args.drain_seconds,
    )
    with saved.compute_precision("float32" if args.server else "auto"):
        if args.server is None:
            separator, model = _local_web_model(args)
        else:
            separator, model = _served_web_model(args)
        try:
            server.serve(separator, config, model)
        except OSError as error:  # the port is taken, say, or the work dir is not writable
            where = f"{error.filename}: " if error.filename else ""
            print(f"vocalsep: error: {where}{error.strerror or error}", file=sys.stderr)
            return EXIT_FAILED
    return EXIT_OK


def _local_web_model(args: argparse.Namespace) -> tuple[SeparatorSource, str]:
    """The model loaded once, before the page is served, and used for every song."""
    from vocalsep.model.default import default_model_dir
    from vocalsep.separator import Separator

    model_dir = Path(args.model) if args.model else default_model_dir()
    separator = Separator(model_dir)
    return lambda: contextlib.nullcontext(separator), f"the model in {model_dir}"


def _served_web_model(args: argparse.Namespace) -> tuple[SeparatorSource, str]:
    """A connection to TF Serving per song, so each song gets the newest version served."""
    from vocalsep.serving.client import ServingClient

    @contextlib.contextmanager
    def connected() -> Iterator[Separator]:
        with ServingClient(args.server, args.model_name, deadline_s=args.deadline) as client:
            yield _remote_separator(args, client)

    model = f"model {args.model_name} on TF Serving at {args.server}"
    try:
        with ServingClient(args.server, args.model_name, deadline_s=args.deadline) as client:
            model += f" (version {client.version} now)"
    except VocalsepError as error:
        print(f"vocalsep web: warning: {error}; songs fail until it answers", file=sys.stderr)
    return connected, model


def _positive_or_zero(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text}: give 0 or more")
    return value


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: give 1 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vocalsep",
        description="Separate songs into vocals and accompaniment; train, gate and serve models.",
    )
    parser.add_argument("--version", action="version", version=f"vocalsep {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = commands.add_parser("info", help="show format, rate, channels and length of audio")
    info.add_argument("inputs", nargs="+", metavar="INPUT")
    info.set_defaults(handler=_cmd_info)

    convert = commands.add_parser(
        "convert", help="decode any supported audio and write wav/flac/mp3, streaming"
    )
    convert.add_argument("input", metavar="INPUT")
    convert.add_argument("output", metavar="OUTPUT", help="format from the extension")
    convert.add_argument("--sample-rate", type=int, help="resample to this rate (default: keep)")
    convert.add_argument("--channels", type=int, choices=(1, 2), default=2)
    convert.add_argument("--stream", type=int, default=0, help="audio stream (stem) index")
    convert.add_argument(
        "--subtype", choices=("PCM_16", "PCM_24", "FLOAT"), default="PCM_16", help="wav/flac"
    )
    convert.add_argument("--overwrite", action="store_true")
    convert.set_defaults(handler=_cmd_convert)

    separate = commands.add_parser(
        "separate",
        help="split songs into OUTDIR/<song>/vocals and accompaniment files",
        description="Split each INPUT into OUTDIR/<input name>/vocals.<format> and "
        "accompaniment.<format>, at the input's sample rate (mono inputs give mono stems). "
        "The model is loaded once for all inputs; a failed input is reported and the others "
        "still run.",
    )
    separate.add_argument("inputs", nargs="+", metavar="INPUT")
    separate.add_argument("-o", "--output-dir", required=True, metavar="OUTDIR")
    separate.add_argument(
        "--model",
        metavar="DIR",
        help="exported model directory (default: the shipped model, models/default, or "
        "$VOCALSEP_MODEL_DIR)",
    )
    separate.add_argument(
        "--server", metavar="HOST:PORT", help="separate on a TF Serving gRPC server instead"
    )
    _add_served_model_arguments(separate)
    separate.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="compute precision of a local model: bfloat16 (oneDNN mixed precision) is faster "
        "on CPUs with native bfloat16 (AVX512-BF16, AMX) and changes SDR by a few hundredths "
        "of a dB; auto (the default) uses it there",
    )
    separate.add_argument("--format", choices=("wav", "flac", "mp3"), default="wav")
    separate.add_argument("--overwrite", action="store_true", help="replace existing stems")
    separate.add_argument("--quiet", action="store_true", help="no progress bars")
    separate.set_defaults(handler=_cmd_separate)

    serve = commands.add_parser(
        "serve",
        help="serve pushed models over TF Serving's gRPC API (for development and CI)",
        description="Serve every model under MODEL_BASE (<model name>/<integer version>/) with "
        "TF Serving's gRPC PredictionService and ModelService, loading new versions as they "
        "are pushed. Production uses the tensorflow/serving image; this is for machines "
        "where it cannot run.",
    )
    serve.add_argument("--model-base", required=True, metavar="DIR")
    serve.add_argument("--port", type=int, default=8500)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--poll-seconds", type=float, default=2.0, help="how often to look")
    serve.add_argument(
        "--num-versions", type=int, default=2, help="newest versions kept loaded per model"
    )
    serve.set_defaults(handler=_cmd_serve)

    synth = commands.add_parser("synth", help="write a deterministic synthetic multitrack set")
    synth.add_argument("output", metavar="OUTDIR")
    synth.add_argument("--tracks", type=int, default=8)
    synth.add_argument("--seconds", type=float, default=10.0)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--layout", choices=("hq", "generic", "stems"), default="hq")
    synth.set_defaults(handler=_cmd_synth)

    evaluate = commands.add_parser(
        "evaluate",
        help="score a model with museval SDR on a dataset's eval split (as the pipeline does)",
        description="Separate every track of the chosen split of ROOT in full through the "
        "model's serving signature and score vocals and accompaniment: museval BSSEval v4 "
        "(win = hop = 1 s, both sources jointly; median over frames, then over tracks) and the "
        "MDX global SDR (mean over tracks). ROOT is any dataset folder the pipeline's "
        "ExampleGen reads (MUSDB .stem.mp4 or HQ folders, stem folders, channel-pair files), "
        "split as the ExampleGen splits it: a MUSDB-style root holding the official validation "
        "tracks uses exactly those 14 as eval, any other root a stable hash of the track name "
        "(10% eval). A MUSDB18 folder with train/ and test/ subsets is read from train/, so "
        "'--data musdb18' scores the official validation tracks. Unreadable tracks are listed "
        "and skipped. With --baseline, that model is scored on the same tracks and the "
        "blessing rule (floor and improvement) is applied; "
        "the verdict is printed, and the exit status is 0 whenever the evaluation ran.",
    )
    evaluate.add_argument("--model", required=True, metavar="DIR", help="exported model dir")
    evaluate.add_argument("--data", required=True, metavar="ROOT", help="dataset folder")
    evaluate.add_argument("--baseline", metavar="DIR", help="exported model to compare against")
    evaluate.add_argument(
        "--split",
        choices=("eval", "train", "all"),
        default="eval",
        help="which tracks of ROOT to score (default: eval, as the pipeline does)",
    )
    evaluate.add_argument("--json", metavar="OUT", help="write the metrics JSON here")
    evaluate.add_argument("--report", metavar="OUT.html", help="write the HTML report here")
    evaluate.add_argument("--workers", type=int, default=2, help="museval threads (default 2)")
    evaluate.add_argument(
        "--floor-db", type=float, default=0.0, help="vocals SDR needed to bless (default 0)"
    )
    evaluate.add_argument(
        "--min-improvement-db",
        type=float,
        default=0.0,
        help="vocals SDR gain over --baseline needed to bless (default 0)",
    )
    evaluate.add_argument(
        "--report-tracks", type=int, default=3, help="tracks shown with audio in the report"
    )
    evaluate.set_defaults(handler=_cmd_evaluate)

    demo = commands.add_parser(
        "demo",
        help="run the whole pipeline on a built-in dataset, serve the model, separate a song",
        description="Synthesises a small multitrack set (or reads --data roots), runs "
        "ExampleGen -> Transform -> Trainer -> SdrEvaluator -> Pusher locally with a tiny "
        "U-Net, starts `vocalsep serve` on the pushed model and separates a demo mix through it "
        "over gRPC. A second run with nothing changed reuses the cached pipeline results.",
    )
    demo.add_argument(
        "--root",
        default=None,
        help="work folder (default: vocalsep-demo; vocalsep-demo-kfp with kfp-local, "
        "vocalsep-demo-portable with the portable Beam runner)",
    )
    demo.add_argument(
        "--data", nargs="+", metavar="ROOT", help="dataset roots instead of synthetic songs"
    )
    demo.add_argument("--workers", type=int, default=0, help="Beam workers (0: one per CPU)")
    pipeline_cli.add_orchestrator_arguments(
        demo,
        "TFX's LocalDagRunner here (cached)",
        "the compiled pipeline.yaml under KFP's local orchestrator, every step in a container "
        "of the image `make image` built, and the model served from it",
    )
    pipeline_cli.add_beam_arguments(demo)
    demo.set_defaults(handler=_cmd_demo)

    web = commands.add_parser(
        "web",
        help="serve a page to separate songs, compare the stems and download them",
        description="Serves a page (and its JSON API, see the README) where people upload a "
        "song in any format separate reads, follow its separation, listen to the mix, the "
        "vocals and the instrumental from the same position, and download them as wav, flac "
        "or mp3. One song is separated at a time (--workers with --server); the others wait in a "
        "queue, recorded in the work dir so a restart loses none. Listens on 127.0.0.1 (this "
        "machine only) unless --host says otherwise.",
    )
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    web.add_argument("--port", type=int, default=8080, help="port (%(default)s; 0: any free)")
    web.add_argument("--model", metavar="DIR", help="exported model directory (as separate)")
    web.add_argument("--server", metavar="HOST:PORT", help="separate on a TF Serving gRPC server")
    _add_served_model_arguments(web)
    web.add_argument(
        "--work-dir",
        metavar="DIR",
        help="where uploads and stems are kept (default: a temporary folder, removed at exit)",
    )
    web.add_argument(
        "--max-upload-mb", type=float, default=200.0, help="largest upload (%(default)g MB)"
    )
    web.add_argument(
        "--keep-hours",
        type=float,
        default=24.0,
        help="remove a song's files this long after it was separated (%(default)g h)",
    )
    limits = web.add_argument_group("limits that keep the page usable for everyone")
    limits.add_argument(
        "--max-minutes",
        type=_positive_or_zero,
        default=20.0,
        help="longest song, from its header, else while decoding (%(default)g; 0: any)",
    )
    limits.add_argument(
        "--max-queue",
        type=_at_least_one,
        default=20,
        help="songs waiting, separating or uploading at once; more get 429 (%(default)s)",
    )
    limits.add_argument(
        "--max-per-client",
        type=_at_least_one,
        default=4,
        help="of those, the most one client address may have (%(default)s)",
    )
    limits.add_argument(
        "--max-disk-gb",
        type=float,
        default=10.0,
        help="work dir budget; the oldest finished songs make room, else 507 (%(default)g GB)",
    )
    limits.add_argument(
        "--workers",
        type=_at_least_one,
        default=1,
        help="songs separated at once; above 1 only with --server (%(default)s)",
    )
    limits.add_argument(
        "--drain-seconds",
        type=_positive_or_zero,
        default=20.0,
        help="at SIGTERM, time the running songs get to finish before they are queued again "
        "for the next start (%(default)g)",
    )
    web.set_defaults(handler=_cmd_web)
    pipeline_cli.add_parser(commands)
    model_cli.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.quiet_process()
    try:
        return args.handler(args)
    except VocalsepError as error:
        _report_error(error)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("vocalsep: interrupted", file=sys.stderr)
        return 130
