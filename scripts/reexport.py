"""Re-exports a ``spleeter``-architecture export's weights with the current export code.

For when the serving graph changes but the networks do not (issue 20's faster layer forms):
the weights are read back from the export (``warm_start``, the stored dtype cast up exactly),
the config and inference settings come from its metadata, and nothing is retrained. The
``spleeter`` architecture takes raw magnitudes, so no Transform statistics are needed; other
architectures are refused (``scripts/export_checkpoint.py`` re-exports those from a run).

    .venv/bin/python scripts/reexport.py --model models/default --output DIR
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from vocalsep.model import export, saved, unet, warm_start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the export whose weights are reused")
    parser.add_argument("--output", required=True, help="a new or empty directory")
    args = parser.parse_args(argv)
    metadata = saved.read_metadata(args.model)
    config = unet.UNetConfig.from_dict(metadata["unet"])
    if config.standardises_input:
        raise SystemExit(f"{args.model}: a {config.architecture} export needs its statistics")
    inference = export.InferenceConfig.from_dict(metadata["inference"])
    model = unet.build_unet(config)
    warm_start.warm_start(model, config, args.model)
    bins = np.zeros(config.model_bins, np.float32)
    written = export.export_saved_model(model, bins, bins + 1.0, config, inference, args.output)
    print(f"wrote {written} ({inference.network_form} network forms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
