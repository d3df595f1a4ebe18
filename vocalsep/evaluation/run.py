"""One evaluation of exported models, shared by the SdrEvaluator executor and the CLI."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import tensorflow as tf

from vocalsep.errors import ModelNotFoundError, NoEvalTracksError
from vocalsep.evaluation import evaluate, gate
from vocalsep.evaluation.evaluate import EvalTrack, EvaluationResult, SkippedTrack
from vocalsep.model import saved


def load_export(export_dir: str) -> saved.Separator:
    """The serving signature of an export, or ModelNotFoundError naming the directory."""
    export_dir = saved.resolve_export_dir(export_dir)
    missing = [
        name
        for name in ("saved_model.pb", str(saved.METADATA_PATH))
        if not tf.io.gfile.exists(f"{export_dir.rstrip('/')}/{name}")
    ]
    if missing:
        raise ModelNotFoundError(
            f"{export_dir}: not a model exported by vocalsep (missing {', '.join(missing)})"
        )
    return saved.load_separator(export_dir)


def evaluate_exports(
    candidate_dir: str,
    tracks: Iterable[EvalTrack | SkippedTrack],
    config: gate.EvaluatorConfig,
    baseline_dir: str | None = None,
    where: str = "",
) -> tuple[EvaluationResult, gate.Decision]:
    """Scores the candidate (and the baseline, on the same tracks) and applies the rule.

    ``where`` names the data in the error raised when no track could be scored.
    """
    models = {evaluate.CANDIDATE: (candidate_dir, load_export(candidate_dir))}
    if baseline_dir is not None:
        models[evaluate.BASELINE] = (baseline_dir, load_export(baseline_dir))
    result = evaluate.evaluate(
        models,
        tracks,
        workers=config.workers,
        report_tracks=config.report_tracks,
        excerpt_seconds=config.excerpt_seconds,
    )
    if not result.models[evaluate.CANDIDATE].tracks:
        skipped = f" ({len(result.skipped)} skipped)" if result.skipped else ""
        raise NoEvalTracksError(f"{where or 'eval data'}: no track could be scored{skipped}")
    aggregates = {name: model.aggregate for name, model in result.models.items()}
    baseline_sdr = (
        aggregates[evaluate.BASELINE][gate.GATE_SOURCE][gate.GATE_METRIC]
        if evaluate.BASELINE in aggregates
        else None
    )
    decision = gate.decide(
        aggregates[evaluate.CANDIDATE][gate.GATE_SOURCE][gate.GATE_METRIC],
        baseline_sdr,
        config.floor_db,
        config.min_improvement_db,
    )
    return result, decision


def metrics_document(
    result: EvaluationResult, decision: gate.Decision, config: gate.EvaluatorConfig
) -> dict[str, Any]:
    """The metrics JSON's content: scores, cost, the verdict and the settings it was made with."""
    document = result.to_dict()
    document["decision"] = {"blessed": decision.blessed, "reasons": list(decision.reasons)}
    document["config"] = config.to_dict()
    return document
