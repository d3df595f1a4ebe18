"""The blessing rule and the evaluator's one configuration.

A candidate is blessed when its vocals SDR (museval, median over tracks) is at least an
absolute floor and, when a model is being served, at least ``min_improvement_db`` above that
model's vocals SDR on the same tracks in the same run. The served model is the newest complete
integer version under ``<serving_base_dir>/<model_name>`` (the Pusher's destination, found by
``vocalsep.serving.push.latest_version_dir``), read directly because open-source Kubeflow
cannot run TFX Resolver nodes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from vocalsep.configs import from_plain_values

GATE_SOURCE = "vocals"
GATE_METRIC = "SDR"


@dataclasses.dataclass(frozen=True)
class EvaluatorConfig:
    """Everything the SdrEvaluator and ``vocalsep evaluate`` are configured with.

    ``serving_base_dir`` and ``model_name`` are the ones the Pusher gets (it pushes to
    ``<serving_base_dir>/<model_name>/<version>``); an empty ``serving_base_dir`` means no
    baseline. ``workers`` museval threads score tracks in parallel. The report shows
    ``report_tracks`` tracks as spectrograms and ``excerpt_seconds`` audio players.
    """

    serving_base_dir: str = ""
    model_name: str = "vocalsep"
    floor_db: float = 0.0
    min_improvement_db: float = 0.0
    workers: int = 2
    report_tracks: int = 3
    excerpt_seconds: float = 10.0

    def __post_init__(self) -> None:
        if not self.model_name or "/" in self.model_name:
            raise ValueError(f"model_name must be a plain name, got {self.model_name!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.report_tracks < 0:
            raise ValueError(f"report_tracks must be >= 0, got {self.report_tracks}")
        if self.excerpt_seconds <= 0:
            raise ValueError(f"excerpt_seconds must be positive, got {self.excerpt_seconds}")
        for name in ("floor_db", "min_improvement_db"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EvaluatorConfig:
        """Inverse of to_dict; JSON numbers of int fields are restored to ints."""
        return from_plain_values(cls, values, "evaluator")


@dataclasses.dataclass(frozen=True)
class Decision:
    """Blessed or not, and the plain-language reasons written to the report and the JSON."""

    blessed: bool
    reasons: tuple[str, ...]


def decide(
    candidate_sdr: float, baseline_sdr: float | None, floor_db: float, min_improvement_db: float
) -> Decision:
    """The blessing rule on vocals SDR values (NaN, i.e. nothing scored, is never blessed)."""
    reasons = []
    blessed = True
    if math.isnan(candidate_sdr):
        return Decision(False, ("the candidate has no vocals SDR (no track could be scored)",))
    if candidate_sdr >= floor_db:
        reasons.append(f"vocals SDR {candidate_sdr:.2f} dB >= floor {floor_db:.2f} dB")
    else:
        blessed = False
        reasons.append(f"vocals SDR {candidate_sdr:.2f} dB < floor {floor_db:.2f} dB")
    if baseline_sdr is None:
        reasons.append("no model is being served: judged against the floor alone")
    elif math.isnan(baseline_sdr):
        reasons.append("the served model has no vocals SDR: judged against the floor alone")
    else:
        needed = baseline_sdr + min_improvement_db
        relation = ">=" if candidate_sdr >= needed else "<"
        reasons.append(
            f"vocals SDR {candidate_sdr:.2f} dB {relation} served model {baseline_sdr:.2f} dB "
            f"+ {min_improvement_db:.2f} dB"
        )
        blessed = blessed and candidate_sdr >= needed
    return Decision(blessed, tuple(reasons))
