"""Where the shipped default model is, so ``vocalsep separate song.mp3`` needs no flag.

The model lives in the repository's ``models/default`` (the package is installed editable by
``scripts/bootstrap.sh``, so that is beside the package); an image or another install points
``VOCALSEP_MODEL_DIR`` at its copy.
"""

from __future__ import annotations

import os
from pathlib import Path

from vocalsep.errors import ModelNotFoundError

MODEL_DIR_VARIABLE = "VOCALSEP_MODEL_DIR"
REPOSITORY_MODEL = Path(__file__).resolve().parents[2] / "models" / "default"


def default_model_dir() -> Path:
    """``$VOCALSEP_MODEL_DIR`` if set, else the repository's ``models/default``."""
    configured = os.environ.get(MODEL_DIR_VARIABLE)
    model_dir = Path(configured) if configured else REPOSITORY_MODEL
    if not (model_dir / "saved_model.pb").is_file():
        raise ModelNotFoundError(
            f"{model_dir}: no default model there; pass --model DIR, or set "
            f"{MODEL_DIR_VARIABLE} to an exported vocalsep model"
        )
    return model_dir
