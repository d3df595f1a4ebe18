"""Re-exports a Trainer run's best-epoch weights with the current export code.

For when the serving graph gains something (a signature, warm-up requests) after a model was
trained: the weights and the Transform statistics are reused, nothing is retrained.

    .venv/bin/python scripts/export_checkpoint.py --run-dir PIPELINE_ROOT/Trainer/model_run/N \
        --transformed 'PIPELINE_ROOT/Transform/transformed_examples/M/Split-train/*.gz' \
        --output models/default [--mask-power 1.0]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from vocalsep.model import export, trainer
from vocalsep.model.unet import build_unet
from vocalsep.pipeline.config import DEFAULT_MODEL_TRAINER
from vocalsep.transforms import preprocessing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True, help="the Trainer's model_run folder")
    parser.add_argument("--transformed", required=True, help="glob of transformed train files")
    parser.add_argument("--output", required=True)
    parser.add_argument(
        "--mask-power",
        type=float,
        default=export.InferenceConfig().mask_power,
        help="ratio-mask exponent of the export (to compare inference settings)",
    )
    args = parser.parse_args(argv)
    config = DEFAULT_MODEL_TRAINER.unet_config()
    best = Path(args.run_dir) / trainer.BEST_DIR
    record = json.loads((best / trainer.BEST_RECORD).read_text())
    model = build_unet(config)
    model.load_weights(str(best / "weights")).expect_partial()
    mean, scale = preprocessing.read_statistics(args.transformed)
    output = Path(args.output)
    staging = output.with_name(f".{output.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    export.export_saved_model(
        model,
        mean[: config.model_bins],
        scale[: config.model_bins],
        config,
        export.InferenceConfig(mask_power=args.mask_power),
        staging,
    )
    if output.exists():
        shutil.rmtree(output)
    staging.rename(output)
    print(f"exported step {record['step']} ({record['sdr']:.2f} dB validation) to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
