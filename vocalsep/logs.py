"""A terminal that shows vocalsep's own output: library noise silenced where it starts.

Two kinds of noise made ``vocalsep demo`` look as if it had failed, in the command's process
and in every Beam worker process it starts:

* TensorFlow's C++ log lines at import ("Unable to register cuFFT factory", oneDNN notices).
  Its failures reach vocalsep as Python exceptions, which the commands report, so the C++ log
  is turned down to FATAL (``TF_CPP_MIN_LOG_LEVEL=3``) unless the user chose a level. Child
  processes (Beam workers, ``vocalsep serve``) inherit the variable.
* FutureWarnings from Google's client libraries (imported by Beam, TFX and kfp) at import,
  once per library: a future release of theirs will drop this Python version or an old
  dependency. Nothing to act on while the lock pins them. Only FutureWarnings raised in
  ``google.*`` modules are ignored; Beam workers, which warn while importing, before any
  vocalsep code runs in them, ignore the Python-version one (``PYTHONWARNINGS``).
* ``Exception ignored in: AtomicFunction.__del__ ... TypeError`` at interpreter exit:
  TensorFlow 2.16's function finalizer reads module globals that Python has already cleared.
  Only that exception, and only while the interpreter is finalizing, is dropped; every other
  unraisable exception is reported as before.

Beam workers run this module's ``quiet_process`` by importing ``vocalsep.beam_worker`` first
(``BEAM_WORKER_PLUGIN``, added by the local runner).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Callable
from typing import Any

TF_LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
FATAL_ONLY = "3"
BEAM_WORKER_PLUGIN = "--beam_plugin=vocalsep.beam_worker"
PYTHON_SUPPORT_NOTICE = "You are using a Python version"
"""How google.api_core's end-of-support FutureWarning starts."""
_TEARDOWN_FINALIZER = "AtomicFunction.__del__"
_PROGRESS = re.compile(
    r"Component (\w+) is (running|finished)|step \d+/\d+|^BaseModel: |^SdrEvaluator: (NOT )?BLESSED"
)


def quiet_process() -> None:
    """Silences the noise above in this process and in the processes it starts."""
    os.environ.setdefault(TF_LOG_LEVEL_VARIABLE, FATAL_ONLY)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.", append=True)
    ignore_warnings(FutureWarning, PYTHON_SUPPORT_NOTICE)
    if not getattr(sys.unraisablehook, "vocalsep_quiet", False):
        sys.unraisablehook = _unraisable_hook(sys.unraisablehook)


def ignore_warnings(category: type[Warning], message: str = "") -> None:
    """Ignores ``category`` warnings starting with ``message`` here and in child processes.

    Children get it through ``PYTHONWARNINGS`` (a Beam worker warns while importing, before
    any vocalsep code runs in it). Filters the user set, there or with ``-W``, still win.
    """
    warnings.filterwarnings("ignore", re.escape(message), category, append=True)
    entry = f"ignore:{message}:{category.__name__}"
    inherited = [part for part in os.environ.get("PYTHONWARNINGS", "").split(",") if part]
    if entry not in inherited:
        # Later entries take precedence: the user's stay after this one.
        os.environ["PYTHONWARNINGS"] = ",".join([entry, *inherited])


def _unraisable_hook(report: Callable[[Any], None]) -> Callable[[Any], None]:
    # Everything the hook uses is bound here: it runs while module globals are being cleared.
    def hook(
        unraisable: Any,
        report: Callable[[Any], None] = report,
        finalizing: Callable[[], bool] = sys.is_finalizing,
        attribute: Callable[..., str] = getattr,
        skipped: str = _TEARDOWN_FINALIZER,
    ) -> None:
        if finalizing() and attribute(unraisable.object, "__qualname__", "") == skipped:
            return
        report(unraisable)

    hook.vocalsep_quiet = True  # type: ignore[attr-defined]
    return hook


class _ProgressFilter(logging.Filter):
    """Lets through one line per component start/finish, the warm start's source, the
    Trainer's epoch lines, the gate's verdict and errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or bool(_PROGRESS.search(record.getMessage()))


def show_pipeline_progress(prefix: str) -> None:
    """Quiet TFX/Beam's logging on stdout; keep the pipeline's progress lines, ``prefix``ed."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_ProgressFilter())
    handler.setFormatter(logging.Formatter(f"{prefix}%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # TensorFlow gave its logger a stderr handler of its own when it was imported before any
    # was configured: at INFO it would print every export's "Assets written to" line.
    logging.getLogger("tensorflow").handlers.clear()
