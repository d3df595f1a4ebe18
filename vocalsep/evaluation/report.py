"""The evaluation as one self-contained HTML page: verdict, tables, spectrograms, audio.

Everything is embedded (PNG spectrograms and MP3 excerpts as base64 data URIs), so the page is
a single file that can be archived as a pipeline artifact, mailed or opened from a bucket. The
classic "original mix / separated vocal / separated instrumental" demo, made for every run.
"""

from __future__ import annotations

import base64
import datetime
import io
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import jinja2
import numpy as np
import soundfile as sf
from PIL import Image

from vocalsep.evaluation.evaluate import BASELINE, CANDIDATE, EvaluationResult, Excerpt
from vocalsep.evaluation.gate import Decision
from vocalsep.evaluation.metrics import BSSEVAL_METRICS, SOURCES

SPECTROGRAM_SIZE = (380, 130)
SPECTROGRAM_N_FFT = 2048
SPECTROGRAM_HOP = 512
SPECTROGRAM_MAX_HZ = 11025.0
DYNAMIC_RANGE_DB = 80.0
MP3_COMPRESSION = 0.6  # libsndfile's 0 (best) to 1 (smallest); ~120 kb/s for music
# Anchors of a dark-to-bright colour map (black, purple, red, orange, pale yellow).
COLOUR_ANCHORS = np.array(
    [[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]], np.float64
)
ROW_METRICS = (*BSSEVAL_METRICS, "MDX_SDR")

TEMPLATE = jinja2.Template(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>vocalsep evaluation: {{ verdict }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1300px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th { background: #eee; } td.name, th.name { text-align: left; }
.blessed { color: #0a6b22; } .not_blessed { color: #a31515; }
.better { color: #0a6b22; } .worse { color: #a31515; }
div.row { display: flex; gap: 0.6em; } figure { margin: 0.3em 0; } figcaption { font-size: 0.85em; }
img { display: block; border: 1px solid #888; }
.players div { margin: 0.2em 0; } .players span { display: inline-block; width: 15em; }
.small { font-size: 0.85em; color: #555; }
</style></head><body>
<h1>vocalsep evaluation</h1>
<p class="small">{{ created }} &middot; {{ num_tracks }} tracks scored
{%- if skipped %} &middot; {{ skipped|length }} skipped{% endif %}</p>
<h2 id="verdict" class="{{ verdict_class }}">{{ verdict }}</h2>
<ul>{% for reason in reasons %}<li>{{ reason }}</li>{% endfor %}</ul>
<p class="small">Candidate: <code>{{ paths.candidate }}</code>
{%- if paths.baseline %}<br>Served model (baseline): <code>{{ paths.baseline }}</code>
{%- endif %}</p>

<h2>Candidate versus served model</h2>
<table id="summary">
<tr><th class="name">source</th><th class="name">metric</th><th>candidate (dB)</th>
{%- if has_baseline %}<th>served (dB)</th><th>difference (dB)</th>{% endif %}</tr>
{% for row in summary %}<tr><td class="name">{{ row.source }}</td>
<td class="name">{{ row.metric }}</td>
<td>{{ row.candidate }}</td>{% if has_baseline %}<td>{{ row.baseline }}</td>
<td class="{{ row.direction }}">{{ row.difference }}</td>{% endif %}</tr>
{% endfor %}</table>
<p class="small">{{ conventions.bsseval }}; MDX SDR: {{ conventions.mdx_sdr }}. Only vocals SDR
gates. SIR, SAR and ISR are shown for reference: on band-limited (e.g. AAC-coded) references
museval's interference/artifact split is ill-conditioned and moves by dB with tiny input changes.
</p>

<h2>Per track</h2>
<table id="tracks">
<tr><th class="name">track</th>
{%- for column in track_columns %}<th>{{ column }}</th>{% endfor %}</tr>
{% for row in track_rows %}<tr><td class="name">{{ row.track }}</td>
{%- for value in row["values"] %}<td>{{ value }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% if skipped %}<h3>Skipped tracks</h3><ul id="skipped">
{% for skip in skipped %}<li>{{ skip.track_id }}: {{ skip.reason }}</li>{% endfor %}</ul>{% endif %}

<h2>Listen and look</h2>
{% for example in examples %}<section class="example">
<h3>{{ example.track_id }} <span class="small">({{ example.span }})</span></h3>
{% for row in example.figure_rows %}<div class="row">{% for figure in row %}<figure>
<img alt="{{ figure.caption }}" width="{{ figure.width }}" height="{{ figure.height }}"
 src="data:image/png;base64,{{ figure.png }}">
<figcaption>{{ figure.caption }}</figcaption></figure>{% endfor %}</div>
{% endfor %}
<div class="players">{% for player in example.players %}<div><span>{{ player.caption }}</span>
<audio controls preload="none" src="data:audio/mpeg;base64,{{ player.mp3 }}"></audio></div>
{% endfor %}</div></section>
{% endfor %}

<h2>Cost</h2>
<table id="cost">{% for key, value in cost %}<tr><td class="name">{{ key }}</td>
<td>{{ value }}</td></tr>
{% endfor %}</table>
</body></html>
""",
    autoescape=True,
)


def _decibels(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}"


def colour_map(values: np.ndarray) -> np.ndarray:
    """``[0, 1]`` values to uint8 RGB by linear interpolation between the anchors."""
    positions = np.clip(values, 0.0, 1.0) * (len(COLOUR_ANCHORS) - 1)
    lower = np.floor(positions).astype(int).clip(0, len(COLOUR_ANCHORS) - 2)
    fraction = (positions - lower)[..., np.newaxis]
    rgb = COLOUR_ANCHORS[lower] * (1 - fraction) + COLOUR_ANCHORS[lower + 1] * fraction
    return rgb.round().astype(np.uint8)


def magnitude_db(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Log magnitude ``[bins, frames]`` of the channel mean, up to ``SPECTROGRAM_MAX_HZ``."""
    mono = np.asarray(audio, np.float64).mean(axis=1)
    if len(mono) < SPECTROGRAM_N_FFT:
        mono = np.pad(mono, (0, SPECTROGRAM_N_FFT - len(mono)))
    frames = 1 + (len(mono) - SPECTROGRAM_N_FFT) // SPECTROGRAM_HOP
    index = (
        np.arange(SPECTROGRAM_N_FFT)[np.newaxis, :]
        + SPECTROGRAM_HOP * np.arange(frames)[:, np.newaxis]
    )
    spectrum = np.abs(np.fft.rfft(mono[index] * np.hanning(SPECTROGRAM_N_FFT), axis=1))
    bins = int(SPECTROGRAM_MAX_HZ / sample_rate * SPECTROGRAM_N_FFT) + 1
    return 20.0 * np.log10(spectrum[:, :bins].T + 1e-10)


def spectrogram_png(audio: np.ndarray, sample_rate: int, reference_db: float) -> bytes:
    """A PNG of the spectrogram, ``DYNAMIC_RANGE_DB`` below ``reference_db`` mapped to black.

    One reference level per track (the mixture's peak) keeps a track's images comparable.
    """
    level = (magnitude_db(audio, sample_rate) - reference_db + DYNAMIC_RANGE_DB) / DYNAMIC_RANGE_DB
    image = Image.fromarray(colour_map(level[::-1])).resize(
        SPECTROGRAM_SIZE, Image.Resampling.BILINEAR
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def mp3_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """The excerpt as MP3, peak-limited to 1 so an over-loud estimate does not wrap."""
    audio = np.asarray(audio, np.float32)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 1.0:
        audio = audio / peak
    buffer = io.BytesIO()
    sf.write(
        buffer,
        audio,
        sample_rate,
        format="MP3",
        subtype="MPEG_LAYER_III",
        compression_level=MP3_COMPRESSION,
    )
    return buffer.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _example(excerpt: Excerpt) -> dict[str, object]:
    rate = excerpt.sample_rate
    reference_db = float(np.max(magnitude_db(excerpt.mixture, rate)))
    # One row for the mixture, then one per source: true stem, then each model's estimate.
    panel_rows: list[list[tuple[str, np.ndarray]]] = [[("mixture", excerpt.mixture)]]
    for source in SOURCES:
        panel_rows.append(
            [(f"true {source}", excerpt.references[source])]
            + [(f"{model} {source}", stems[source]) for model, stems in excerpt.estimates.items()]
        )
    players = [("original mix", excerpt.mixture)]
    for model, stems in excerpt.estimates.items():
        players.append((f"separated vocals ({model})", stems["vocals"]))
        players.append((f"separated instrumental ({model})", stems["accompaniment"]))
    players.append(("true vocals", excerpt.references["vocals"]))
    length = len(excerpt.mixture) / rate
    return {
        "track_id": excerpt.track_id,
        "span": f"{excerpt.start_seconds:.1f} s to {excerpt.start_seconds + length:.1f} s",
        "figure_rows": [
            [
                {
                    "caption": caption,
                    "png": _b64(spectrogram_png(audio, rate, reference_db)),
                    "width": SPECTROGRAM_SIZE[0],
                    "height": SPECTROGRAM_SIZE[1],
                }
                for caption, audio in row
            ]
            for row in panel_rows
        ],
        "players": [
            {"caption": caption, "mp3": _b64(mp3_bytes(audio, rate))} for caption, audio in players
        ],
    }


def _summary_rows(aggregates: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[dict]:
    rows = []
    for source in SOURCES:
        for metric in ROW_METRICS:
            candidate = aggregates[CANDIDATE][source][metric]
            baseline = aggregates[BASELINE][source][metric] if BASELINE in aggregates else None
            difference = None if baseline is None else candidate - baseline
            direction = ""
            if difference is not None and not math.isnan(difference):
                direction = "better" if difference > 0 else "worse" if difference < 0 else ""
            rows.append(
                {
                    "source": source,
                    "metric": metric.replace("_", " "),
                    "candidate": _decibels(candidate),
                    "baseline": _decibels(baseline),
                    "difference": "n/a" if difference is None else f"{difference:+.2f}",
                    "direction": direction,
                }
            )
    return rows


def _track_table(result: EvaluationResult) -> tuple[list[str], list[dict]]:
    columns, getters = [], []
    for model in result.models:
        for source in SOURCES:
            columns.append(f"{model} {source} SDR")
            getters.append((model, source, "SDR"))
        columns.append(f"{model} vocals MDX SDR")
        getters.append((model, "vocals", "MDX_SDR"))
    by_track: dict[str, dict[str, object]] = {}
    for name, model in result.models.items():
        for track in model.tracks:
            by_track.setdefault(track.track_id, {})[name] = track
    rows = []
    for track_id in sorted(by_track):
        values = []
        for model, source, metric in getters:
            scores = by_track[track_id].get(model)
            if scores is None:
                values.append("n/a")
            elif metric == "MDX_SDR":
                values.append(_decibels(scores.mdx_sdr[source]))
            else:
                values.append(_decibels(scores.bsseval[source][metric]))
        rows.append({"track": track_id, "values": values})
    return columns, rows


def render_report(result: EvaluationResult, decision: Decision | None) -> str:
    """The report page as a string."""
    as_dict = result.to_dict()
    aggregates = {name: model.aggregate for name, model in result.models.items()}
    columns, rows = _track_table(result)
    if decision is None:
        verdict, verdict_class, reasons = "EVALUATED (no blessing rule applied)", "", []
    else:
        verdict = "BLESSED" if decision.blessed else "NOT BLESSED"
        verdict_class = "blessed" if decision.blessed else "not_blessed"
        reasons = list(decision.reasons)
    cost = [
        (key, f"{value:.3f}" if isinstance(value, float) else value)
        for key, value in as_dict["cost"].items()
        if not isinstance(value, dict)
    ]
    return TEMPLATE.render(
        created=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        num_tracks=as_dict["num_tracks"],
        skipped=result.skipped,
        verdict=verdict,
        verdict_class=verdict_class,
        reasons=reasons,
        paths={name: model.path for name, model in result.models.items()},
        has_baseline=BASELINE in result.models,
        summary=_summary_rows(aggregates),
        conventions=as_dict["conventions"],
        track_columns=columns,
        track_rows=rows,
        examples=[_example(excerpt) for excerpt in result.excerpts],
        cost=cost,
    )


def write_text_atomically(path: str | os.PathLike[str], text: str) -> Path:
    """Writes ``text`` to a hidden temporary file beside ``path`` and renames it into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        Path(temp_name).chmod(0o644)
        Path(temp_name).replace(target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target


def write_report(
    path: str | os.PathLike[str], result: EvaluationResult, decision: Decision | None
) -> Path:
    """Renders and writes the report atomically; returns its path."""
    return write_text_atomically(path, render_report(result, decision))


def text_summary(result: EvaluationResult, decision: Decision | None) -> str:
    """The candidate-versus-baseline table, per-track vocals SDRs and the verdict, as text."""
    aggregates = {name: model.aggregate for name, model in result.models.items()}
    names = list(result.models)
    header = f"{'source':<14}{'metric':<9}" + "".join(f"{name:>12}" for name in names)
    if BASELINE in aggregates:
        header += f"{'difference':>12}"
    lines = [header]
    for row in _summary_rows(aggregates):
        line = f"{row['source']:<14}{row['metric']:<9}{row['candidate']:>12}"
        if BASELINE in aggregates:
            line += f"{row['baseline']:>12}{row['difference']:>12}"
        lines.append(line)
    lines.append("")
    columns, rows = _track_table(result)
    width = max([len("track"), *(len(row["track"]) for row in rows)])
    lines.append(f"{'track':<{width}}" + "".join(f"  {column}" for column in columns))
    for row in rows:
        lines.append(
            f"{row['track']:<{width}}"
            + "".join(
                f"  {value:>{len(column)}}"
                for value, column in zip(row["values"], columns, strict=True)
            )
        )
    for skip in result.skipped:
        lines.append(f"skipped {skip.track_id}: {skip.reason}")
    cost = result.cost()
    lines.append(
        f"\n{cost['museval_scorings']} museval scorings, median "
        f"{cost['museval_seconds_per_track_median']:.2f} s per track, {result.workers} "
        f"worker(s); {result.wall_seconds:.1f} s in all"
    )
    if decision is not None:
        verdict = "BLESSED" if decision.blessed else "NOT BLESSED"
        lines.append(f"verdict: {verdict} ({'; '.join(decision.reasons)})")
    return "\n".join(lines)
