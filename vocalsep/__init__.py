"""vocalsep: isolate vocals and accompaniment, as a reproducible, gated, served pipeline.

Importing the package stays cheap (no TensorFlow) so `vocalsep --help` answers at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Separator", "__version__"]

if TYPE_CHECKING:
    from vocalsep.separator import Separator


def __getattr__(name: str) -> Any:
    """``vocalsep.Separator`` on first use, so ``import vocalsep`` never loads TensorFlow."""
    if name == "Separator":
        from vocalsep.separator import Separator

        return Separator
    raise AttributeError(f"module 'vocalsep' has no attribute {name!r}")
