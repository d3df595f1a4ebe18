"""The HTML report: one self-contained file that headless Chromium renders with its tables,
decoded spectrogram images and playable audio.

Two simple, real separators stand in for models: "the mixture as both estimates" (the floor
system of the data README) and a crossover filter (vocals = the band above 300 Hz).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vocalsep.audio import synth
from vocalsep.evaluation import evaluate, gate, report
from vocalsep.evaluation.evaluate import EvalTrack, SkippedTrack

RATE = 44100
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# Appended to a copy of the report: after load, records what the browser decoded.
PROBE = """<script>
window.addEventListener('load', async () => {
  const images = [...document.images].map(i => [i.naturalWidth, i.naturalHeight, i.complete]);
  const audio = await Promise.all([...document.querySelectorAll('audio')].map(a =>
    new Promise(done => {
      a.addEventListener('loadedmetadata', () => done(a.duration));
      a.addEventListener('error', () => done(-1));
      a.preload = 'metadata'; a.load();
    })));
  const probe = document.createElement('pre');
  probe.id = 'probe';
  probe.textContent = JSON.stringify({images, audio,
    tables: [...document.querySelectorAll('table')].map(t => [t.id, t.rows.length])});
  document.body.appendChild(probe);
});
</script>"""


def _mixture_as_estimates(mixture: np.ndarray) -> dict[str, np.ndarray]:
    return {"vocals": mixture, "accompaniment": mixture}


def _crossover(mixture: np.ndarray) -> dict[str, np.ndarray]:
    spectrum = np.fft.rfft(mixture, axis=0)
    low = np.fft.rfftfreq(len(mixture), 1 / RATE) < 300
    accompaniment = np.fft.irfft(spectrum * low[:, np.newaxis], n=len(mixture), axis=0)
    return {"vocals": mixture - accompaniment, "accompaniment": accompaniment}


@pytest.fixture(scope="module")
def evaluation() -> tuple[evaluate.EvaluationResult, gate.Decision]:
    tracks: list[EvalTrack | SkippedTrack] = []
    for seed in range(3):
        stems = synth.generate_track(seed, 3.0)
        accompaniment = stems["drums"] + stems["bass"] + stems["other"]
        tracks.append(EvalTrack(f"synth/{seed}", stems["vocals"], accompaniment, RATE))
    tracks.insert(1, SkippedTrack("synth/broken", "undecodable: truncated file"))
    result = evaluate.evaluate(
        {
            evaluate.CANDIDATE: ("crossover", _crossover),
            evaluate.BASELINE: ("mixture", _mixture_as_estimates),
        },
        tracks,
        workers=2,
        report_tracks=2,
        excerpt_seconds=2.0,
    )
    candidate = result.models[evaluate.CANDIDATE].aggregate["vocals"]["SDR"]
    baseline = result.models[evaluate.BASELINE].aggregate["vocals"]["SDR"]
    return result, gate.decide(candidate, baseline, floor_db=0.0, min_improvement_db=0.0)


def test_result_scores_every_track_with_every_model_and_lists_skips(evaluation) -> None:
    result, _ = evaluation
    for model in result.models.values():
        assert [track.track_id for track in model.tracks] == ["synth/0", "synth/1", "synth/2"]
    assert [skip.track_id for skip in result.skipped] == ["synth/broken"]
    cost = result.cost()
    assert cost["museval_scorings"] == 6 and cost["museval_seconds_per_track_median"] > 0
    assert len(result.excerpts) == 2
    assert len(result.excerpts[0].mixture) == 2 * RATE
    as_json = json.loads(evaluate.json_text(result.to_dict()))
    assert as_json["skipped"] == [
        {"track_id": "synth/broken", "reason": "undecodable: truncated file"}
    ]


def test_report_is_one_file_with_tables_images_and_audio(evaluation, tmp_path: Path) -> None:
    result, decision = evaluation
    path = report.write_report(tmp_path / "report.html", result, decision)
    assert [entry.name for entry in tmp_path.iterdir()] == ["report.html"]  # no temp left over
    page = path.read_text()
    print(f"report size {path.stat().st_size / 1024:.0f} KiB")
    assert not re.search(r'src="(?!data:)', page)  # everything embedded
    # 2 tracks x (mixture + 2 sources x (truth + 2 models)) spectrograms.
    assert page.count("data:image/png;base64,") == 2 * 7
    # 2 tracks x (mix + 2 models x 2 stems + true vocals) players.
    assert page.count("data:audio/mpeg;base64,") == 2 * 6
    assert ("NOT BLESSED" if not decision.blessed else "BLESSED") in page
    assert "synth/broken" in page


@pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"{CHROMIUM} is absent (scripts/bootstrap.sh installs Debian's chromium as root)",
)
def test_report_renders_in_headless_chromium(evaluation, tmp_path: Path) -> None:
    result, decision = evaluation
    page = report.render_report(result, decision)
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(page.replace("</body>", f"{PROBE}</body>"))
    browser = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [*browser, "--virtual-time-budget=15000", "--dump-dom", probe_page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL)
    assert match, "the probe script did not run"
    probe = json.loads(match.group(1).replace("&quot;", '"'))
    assert len(probe["images"]) == 14
    assert all(width > 0 and height > 0 and complete for width, height, complete in probe["images"])
    assert len(probe["audio"]) == 12
    assert all(duration == pytest.approx(2.0, abs=0.1) for duration in probe["audio"])
    tables = dict(probe["tables"])
    assert tables["summary"] == 1 + 2 * 5  # header + (SDR, SIR, SAR, ISR, MDX SDR) per source
    assert tables["tracks"] == 1 + 3

    (tmp_path / "report.html").write_text(page)
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [
            *browser,
            "--window-size=1300,2000",
            f"--screenshot={screenshot}",
            (tmp_path / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert screenshot.stat().st_size > 50_000  # a blank page is a few KiB
