"""vocalsep: isolate vocals and accompaniment, as a reproducible, gated, served pipeline.

Importing the package stays cheap (no TensorFlow) so `vocalsep --help` answers at once.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# vocalsep builds its models with Keras 2 (tf_keras), as tensorflow-transform requires (it sets
# this too, once imported). Left unset before TensorFlow's import, that import loads Keras 3,
# with pandas and IPython, instead of the lighter tf_keras: about 0.25 s of start-up for
# nothing (scripts/bench_startup.py). A value the user set is kept.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"
__all__ = ["HtmlReport", "Separator", "__version__"]

if TYPE_CHECKING:
    from vocalsep.components.evaluator.component import HtmlReport
    from vocalsep.separator import Separator


def __getattr__(name: str) -> Any:
    """``vocalsep.Separator`` on first use, so ``import vocalsep`` never loads TensorFlow;
    ``vocalsep.HtmlReport`` too, the import path its artifact type name must be."""
    if name == "Separator":
        from vocalsep.separator import Separator

        return Separator
    if name == "HtmlReport":
        from vocalsep.components.evaluator.component import HtmlReport

        return HtmlReport
    raise AttributeError(f"module 'vocalsep' has no attribute {name!r}")
