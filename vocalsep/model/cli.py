"""``vocalsep pretrained list|import``: published weights, verified and converted.

Heavy imports (TensorFlow) happen inside the handlers so ``vocalsep --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

INFERENCE_CHOICES = ("vocalsep", "spleeter")


def _cmd_list(args: argparse.Namespace) -> int:
    from vocalsep.model import pretrained

    for model in pretrained.PUBLISHED.values():
        print(f"{model.name}: {model.origin}; pip package {model.requirement}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from vocalsep.errors import PretrainedError
    from vocalsep.model import pretrained
    from vocalsep.model.inference import InferenceConfig

    model = pretrained.PUBLISHED.get(args.name)
    if model is None:
        raise PretrainedError(
            f"{args.name}: no such published model (known: {', '.join(pretrained.PUBLISHED)})"
        )
    inference = InferenceConfig.spleeter() if args.inference == "spleeter" else InferenceConfig()
    export_dir = pretrained.import_published(
        model,
        Path(args.out),
        inference,
        wheel=Path(args.wheel) if args.wheel else None,
        checkpoint_folder=Path(args.checkpoints) if args.checkpoints else None,
        cache=Path(args.cache) if args.cache else None,
    )
    print(f"imported {model.name} ({model.origin}) as {export_dir}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``pretrained`` and its subcommands to the top-level parser."""
    pretrained = commands.add_parser(
        "pretrained",
        help="import published weights of vocalsep's architectures (warm starts)",
        description="Published weights, fetched with pip from PyPI into a cache (or given as a "
        "file), checked against pinned sha256 hashes, read without unpickling anything but "
        "numpy arrays, and converted into a vocalsep export: evaluate or serve it as it is, "
        "or give it to the pipeline as the model to warm-start from.",
    )
    actions = pretrained.add_subparsers(dest="pretrained_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the published models vocalsep can import")
    listing.set_defaults(handler=_cmd_list)
    importing = actions.add_parser(
        "import",
        help="verify and convert published weights into OUT/Format-Serving",
        description="Writes OUT/Format-Serving, a vocalsep export of the unmodified published "
        "network (OUT is laid out as a TFX Model artifact, for the pipeline's Importer).",
    )
    importing.add_argument("name", metavar="NAME", help="e.g. spleeter-2stems")
    importing.add_argument("--out", required=True, metavar="OUT", help="new or empty folder")
    source = importing.add_mutually_exclusive_group()
    source.add_argument("--wheel", metavar="FILE", help="a downloaded copy of the wheel")
    source.add_argument(
        "--checkpoints", metavar="DIR", help="a folder holding the checkpoint files"
    )
    importing.add_argument(
        "--cache",
        metavar="DIR",
        help="where pip downloads are kept (default: $VOCALSEP_CACHE_DIR or ~/.cache/vocalsep)",
    )
    importing.add_argument(
        "--inference",
        choices=INFERENCE_CHOICES,
        default="vocalsep",
        help="inference settings of the export: vocalsep's defaults, or Spleeter's own "
        "(squared ratio masks, nothing above 11 kHz)",
    )
    importing.set_defaults(handler=_cmd_import)
