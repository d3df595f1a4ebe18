"""Cross-check `vocalsep evaluate` against an independent museval run on the same files.

1. ``vocalsep evaluate --model DIR --data ROOT --json`` (the command users run);
2. independently: the validation tracks read with the ``musdb`` package (stempeg/ffmpeg, not
   vocalsep's decoder), each track's own mixture (MUSDB's stream 0, which ``eval_mus_track``
   and `vocalsep evaluate` use) written to a float wav, separated to files by ``vocalsep
   separate``, read back and scored by ``museval.eval_mus_track``, aggregated by
   ``museval.EvalStore`` (median over frames, then over tracks), with the MDX SDR computed
   here in numpy;
3. prints both and their difference; exits 1 when an SDR (BSSEval or MDX) differs by more than
   ``--tolerance``.

SIR, SAR and ISR are printed but not gated: on MUSDB18's AAC-coded (band-limited) references
museval's projection onto all delayed references is ill-conditioned, so a -120 dB change of the
references (the two decoders differ by 16-bit rounding and a few trailing samples) moves SIR
and SAR by several dB, while SDR, which needs only each source's own reference, is stable.
``--references vocalsep`` gives museval vocalsep's decoded references instead (everything else
still independent), and then every metric is gated.

    .venv/bin/python scripts/check_evaluate.py --model DIR [--data ../shared/data/musdb18-7]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import musdb
import museval
import numpy as np
import soundfile as sf

SOURCES = ("vocals", "accompaniment")
METRICS = ("SDR", "SIR", "SAR", "ISR")
GATED = ("SDR", "MDX_SDR")


def _vocalsep(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "vocalsep", *args], check=True)


def _mdx_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    error = np.sum((reference - estimate) ** 2) + 1e-7
    return float(10 * np.log10((np.sum(reference**2) + 1e-7) / error))


def _vocalsep_references(database: musdb.DB, data: str) -> dict[str, dict[str, np.ndarray]]:
    """The references and mixtures as vocalsep's data package decodes them (``--references
    vocalsep``)."""
    from vocalsep.evaluation.sources import dataset_root, tracks_from_root

    decoded = {
        track.track_id.split("/", 1)[1]: {
            **{source: track.source(source) for source in SOURCES},
            "mixture": track.mixture,
        }
        for track in tracks_from_root(dataset_root(data))
        if not hasattr(track, "reason")
    }
    for track in database.tracks:  # eval_mus_track reads the references from the track
        for source in SOURCES:
            track.targets[source] = types.SimpleNamespace(audio=decoded[track.name][source])
    return decoded


def independent_scores(
    model: str, data: str, work: Path, reference_decoder: str
) -> dict[str, dict[str, float]]:
    """museval's own scores of `vocalsep separate` output files, aggregated by museval."""
    database = musdb.DB(root=data, subsets="train", split="valid")
    if not database.tracks:
        raise SystemExit(f"{data}: musdb found no validation tracks")
    mixtures = work / "mixtures"
    mixtures.mkdir()
    if reference_decoder == "vocalsep":
        references = _vocalsep_references(database, data)
    else:
        references = {
            track.name: {
                **{source: track.targets[source].audio for source in SOURCES},
                "mixture": track.audio,
            }
            for track in database.tracks
        }
    for track in database.tracks:
        mixture = references[track.name]["mixture"]
        sf.write(mixtures / f"{track.name}.wav", mixture, track.rate, subtype="FLOAT")
    _vocalsep(
        "separate",
        *sorted(str(path) for path in mixtures.iterdir()),
        "-o",
        str(work / "separated"),
        "--model",
        model,
        "--quiet",
    )
    store = museval.EvalStore(frames_agg="median", tracks_agg="median")
    mdx: dict[str, list[float]] = {source: [] for source in SOURCES}
    for track in database.tracks:
        estimates = {
            source: sf.read(work / "separated" / track.name / f"{source}.wav", always_2d=True)[0]
            for source in SOURCES
        }
        store.add_track(museval.eval_mus_track(track, estimates))
        for source in SOURCES:
            length = len(references[track.name][source])
            mdx[source].append(_mdx_sdr(references[track.name][source], estimates[source][:length]))
    aggregated = store.agg_frames_tracks_scores()
    scores = {
        source: {metric: float(aggregated[(source, metric)]) for metric in METRICS}
        for source in SOURCES
    }
    for source in SOURCES:
        scores[source]["MDX_SDR"] = float(np.mean(mdx[source]))
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="exported model directory")
    parser.add_argument("--data", default="../shared/data/musdb18-7", help="MUSDB18 root")
    parser.add_argument("--tolerance", type=float, default=0.05, help="dB (default 0.05)")
    parser.add_argument(
        "--references",
        choices=("musdb", "vocalsep"),
        default="musdb",
        help="decode the references with the musdb package (independent; default) or take "
        "vocalsep's decoded arrays (identical inputs, so SIR/SAR/ISR are gated too)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="check-evaluate-") as folder:
        work = Path(folder)
        _vocalsep(
            "evaluate", "--model", args.model, "--data", args.data, "--json", str(work / "m.json")
        )
        ours = json.loads((work / "m.json").read_text())["models"]["candidate"]["aggregate"]
        theirs = independent_scores(args.model, args.data, work, args.references)
    gated = (*METRICS, "MDX_SDR") if args.references == "vocalsep" else GATED
    print(f"\n{'source':<14}{'metric':<9}{'evaluate':>10}{'museval':>10}{'diff':>9}")
    worst = 0.0
    for source in SOURCES:
        for metric in (*METRICS, "MDX_SDR"):
            difference = ours[source][metric] - theirs[source][metric]
            if metric in gated:
                worst = max(worst, abs(difference))
            print(
                f"{source:<14}{metric:<9}{ours[source][metric]:>10.3f}"
                f"{theirs[source][metric]:>10.3f}{difference:>+9.3f}"
                + ("" if metric in gated else "  (not gated, see the docstring)")
            )
    verdict = "OK" if worst <= args.tolerance else "MISMATCH"
    print(f"largest gated difference {worst:.3f} dB (tolerance {args.tolerance} dB): {verdict}")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
