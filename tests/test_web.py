"""`vocalsep web`: the page and its JSON API on a real loopback server, in a real browser.

The model is a tiny random-weight export: what the page promises (queueing, limits, errors,
files, the player) does not depend on the weights. Most tests share one server, uvicorn in a
thread over the app and job queue `vocalsep web` builds, so a test can reach the queue (hold
its worker, move its clock); one test runs `vocalsep web --server` against `vocalsep serve`,
both as processes, as a person or the k8s overlay does. The browser is Debian's chromium
driven through chromedriver by Selenium.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import portpicker
import pytest
import soundfile
import test_separate
import uvicorn
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from test_evaluation_report import CHROMIUM, CHROMIUM_FLAGS

from vocalsep import cli
from vocalsep.audio import io, synth
from vocalsep.separator import Separator
from vocalsep.serving.client import ServingClient
from vocalsep.web import server as web_server
from vocalsep.web.app import create_app
from vocalsep.web.jobs import JOBS_FOLDER, JobQueue

RATE = 44100
LIMIT_BYTES = 2**20
MAX_AGE_S = 3600.0
WAIT_S = 300.0
CHROMEDRIVER = "/usr/bin/chromedriver"
TRACKS = {"mix", "vocals", "accompaniment"}
# Where the browser test leaves its screenshots; set it to refresh docs/ (see the README).
SCREENSHOTS_VARIABLE = "VOCALSEP_WEB_SCREENSHOTS"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

tiny_model_dir = test_separate.model_dir
"""A fixture: the tiny random-weight export of tests/test_separate.py."""


@dataclasses.dataclass
class Web:
    url: str
    queue: JobQueue
    work_dir: Path
    gate: threading.Event
    """Cleared, the worker holds each job at its start, as if another song were separating."""

    @property
    def jobs_dir(self) -> Path:
        return self.work_dir / JOBS_FOLDER


@pytest.fixture(scope="module")
def web(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """The page on a free loopback port, its model loaded once as ``vocalsep web`` does."""
    separator = Separator(tiny_model_dir, block_seconds=1.0)
    gate = threading.Event()
    gate.set()

    @contextlib.contextmanager
    def held_at_the_gate() -> Iterator[Separator]:
        gate.wait()
        yield separator

    work_dir = tmp_path_factory.mktemp("web") / "work"
    queue = JobQueue(held_at_the_gate, work_dir, MAX_AGE_S)
    config = uvicorn.Config(
        create_app(queue, LIMIT_BYTES), log_config=None, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    listening = web_server.bind("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    give_up = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < give_up, "the server did not start"
        time.sleep(0.05)
    host, port = listening.getsockname()
    try:
        yield Web(f"http://{host}:{port}", queue, work_dir, gate)
    finally:
        gate.set()
        server.should_exit = True
        thread.join(60)
        listening.close()


def _song(path: Path, seconds: float, seed: int = 0) -> Path:
    """A short synthetic song (vocals, drums, bass, chords) in the format of the extension."""
    stems = synth.generate_track(synth.track_seed(seed, 0), seconds)
    io.write_audio(path, np.clip(sum(stems.values()), -1.0, 1.0).astype(np.float32), RATE)
    return path


def _request(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with _NO_PROXY.open(request, timeout=120) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    """A form body as browsers and ``curl -F file=@...`` send it, and its Content-Type."""
    boundary = secrets.token_hex(12)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _upload(url: str, name: str, data: bytes) -> tuple[int, dict]:
    body, content_type = _multipart(name, data)
    status, _, payload = _request(f"{url}/api/jobs", body, {"Content-Type": content_type})
    return status, json.loads(payload)


def _job(url: str, job_id: str) -> tuple[int, dict]:
    status, _, payload = _request(f"{url}/api/jobs/{job_id}")
    return status, json.loads(payload)


def _wait_for(url: str, job_id: str, states: tuple[str, ...] = ("done", "failed")) -> dict:
    give_up = time.monotonic() + WAIT_S
    while True:
        status, job = _job(url, job_id)
        assert status == 200, job
        if job["state"] in states:
            return job
        assert time.monotonic() < give_up, f"job still {job['state']} after {WAIT_S} s"
        time.sleep(0.1)


def _download(url: str, path: Path) -> tuple[http.client.HTTPMessage, Path]:
    status, headers, payload = _request(url)
    assert status == 200, payload[:300]
    path.write_bytes(payload)
    return headers, path


def _job_folders(web: Web) -> set[str]:
    return {path.name for path in web.jobs_dir.iterdir()}


def test_a_song_is_separated_and_downloads_in_every_format(web: Web, tmp_path: Path) -> None:
    song = _song(tmp_path / "song.mp3", 3.0)
    status, submitted = _upload(web.url, "song.mp3", song.read_bytes())
    assert status == 202, submitted
    assert submitted["name"] == "song.mp3" and submitted["state"] in ("queued", "running")
    job = _wait_for(web.url, submitted["id"])
    assert job["state"] == "done", job["error"]
    assert set(job["tracks"]) == TRACKS
    assert job["seconds_done"] == pytest.approx(job["seconds_total"], abs=0.1)

    decoded = {}
    for track in TRACKS:
        urls = job["tracks"][track]
        for audio_format in ("wav", "flac", "mp3"):
            headers, path = _download(
                web.url + urls[audio_format], tmp_path / f"{track}.{audio_format}"
            )
            assert f"song%20-%20{track}.{audio_format}" in headers["Content-Disposition"]
            info = io.probe(path)
            assert (info.sample_rate, info.channels) == (RATE, 2)
            decoded[track, audio_format] = io.read_audio(path, sample_rate=None)
        # flac is lossless: the same 16-bit samples as the wav.
        np.testing.assert_array_equal(decoded[track, "flac"], decoded[track, "wav"])
        mp3_frames, wav_frames = len(decoded[track, "mp3"]), len(decoded[track, "wav"])
        assert abs(mp3_frames - wav_frames) <= io.PRIMING_TOLERANCE_FRAMES
        _, spectrogram = _download(web.url + urls["spectrogram"], tmp_path / f"{track}.png")
        with Image.open(spectrogram) as image:
            assert image.format == "PNG" and image.size == (960, 160)
    mix = decoded["mix", "wav"]
    assert len(mix) == pytest.approx(3.0 * RATE, abs=io.PRIMING_TOLERANCE_FRAMES)
    # Soft masks split the mix: the stems add back up to it (to 16-bit output precision).
    stems = decoded["vocals", "wav"] + decoded["accompaniment", "wav"]
    np.testing.assert_allclose(stems, mix, atol=2e-3)


def _cli_error(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """What ``vocalsep info`` says of a file, after ``<path>: ``."""
    capsys.readouterr()
    assert cli.main(["info", str(path)]) == cli.EXIT_FAILED
    line = capsys.readouterr().err.strip()
    prefix = f"vocalsep: error: {path}: "
    assert line.startswith(prefix), line
    return line.removeprefix(prefix)


def test_bad_uploads_get_the_clis_one_line_errors_and_leave_nothing(
    web: Web, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_audio = tmp_path / "lyrics.mp3"
    not_audio.write_text("Verse one, a song about songs\n")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(_song(tmp_path / "whole.wav", 1.0).read_bytes()[:20000])
    before = _job_folders(web)
    for path, error_type in (
        (not_audio, "NotAudioError"),
        (empty, "EmptyAudioError"),
        (cut, "TruncatedAudioError"),
    ):
        status, body = _upload(web.url, path.name, path.read_bytes())
        assert status == 422, body
        assert body == {"error": f"{path.name}: {_cli_error(path, capsys)}", "type": error_type}
    # Not a form, and a form without the file: what to send instead.
    no_file = b'--b\r\nContent-Disposition: form-data; name="title"\r\n\r\nhi\r\n--b--\r\n'
    for body_bytes, content_type in (
        (b"ID3", "audio/mpeg"),
        (no_file, "multipart/form-data; boundary=b"),
    ):
        status, _, payload = _request(
            f"{web.url}/api/jobs", body_bytes, {"Content-Type": content_type}
        )
        error = json.loads(payload)
        assert (status, error["type"]) == (400, "UploadError")
        assert "'file'" in error["error"]
    assert _job_folders(web) == before


def test_a_failed_separation_leaves_no_stems(web: Web, tmp_path: Path) -> None:
    """Readable at the upload (the header is fine), broken inside: the job fails, cleanly."""
    audio = np.zeros((2 * RATE, 2), np.float32)
    audio[RATE] = np.nan
    song = tmp_path / "nan.wav"
    soundfile.write(song, audio, RATE, subtype="FLOAT")
    status, submitted = _upload(web.url, song.name, song.read_bytes())
    assert status == 202, submitted
    job = _wait_for(web.url, submitted["id"])
    assert job["state"] == "failed"
    assert job["error"].startswith("nan.wav: ") and "NaN" in job["error"], job["error"]
    assert str(web.work_dir) not in job["error"]
    assert job["tracks"] == {}
    assert submitted["id"] not in _job_folders(web)
    status, _, _ = _request(f"{web.url}/api/jobs/{submitted['id']}/vocals.wav")
    assert status == 404


def _raw_request(web: Web, head: str, body_parts: tuple[bytes, ...] = ()) -> tuple[int, dict]:
    """Sends a request head and some body, never its end, then reads the response."""
    host, port = web.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=120) as connection:
        connection.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        for part in body_parts:
            connection.sendall(part)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response.status, json.loads(response.read())


def test_an_upload_over_the_limit_is_refused_before_its_body_arrives(web: Web) -> None:
    before = _job_folders(web)
    boundary = "limit-test"
    head = f"POST /api/jobs HTTP/1.1\nHost: {web.url[7:]}\n"
    head += f"Content-Type: multipart/form-data; boundary={boundary}\n"
    # A declared length over the limit: refused on the head alone, no body sent at all.
    status, body = _raw_request(web, head + "Content-Length: 52428800\n")
    assert (status, body["type"]) == (413, "UploadTooLargeError")
    assert body["error"] == "the upload: too large: the limit is 1 MB"

    # No length declared: refused once the song passes the limit, the body still unfinished.
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
    ).encode() + bytes(LIMIT_BYTES + 1)
    chunks = tuple(
        b"%x\r\n%b\r\n" % (len(piece), piece)
        for piece in (part[start : start + 65536] for start in range(0, len(part), 65536))
    )
    status, body = _raw_request(web, head + "Transfer-Encoding: chunked\n", chunks)
    assert (status, body["error"]) == (413, "big.wav: too large: the limit is 1 MB")
    assert _job_folders(web) == before


def test_an_uploaded_file_name_never_becomes_a_path(web: Web, tmp_path: Path) -> None:
    outside = web.work_dir.parent
    song = _song(tmp_path / "song.wav", 1.0)
    status, submitted = _upload(web.url, "../../x.wav", song.read_bytes())
    assert status == 202, submitted
    assert submitted["name"] == "x.wav"
    job = _wait_for(web.url, submitted["id"])
    assert job["state"] == "done", job["error"]
    headers, _ = _download(web.url + job["tracks"]["vocals"]["wav"], tmp_path / "vocals.wav")
    assert "x%20-%20vocals.wav" in headers["Content-Disposition"]
    assert not list(outside.rglob("x.wav")) and not (outside.parent / "x.wav").exists()
    folder = web.jobs_dir / job["id"]
    assert sorted(path.name for path in folder.rglob("*")) == sorted(
        ["song", *(f"{track}.{kind}" for track in TRACKS for kind in ("wav", "png"))]
    )
    assert {path.parent for path in web.work_dir.rglob("*") if path.is_file()} <= {
        web.jobs_dir / name / "song" for name in _job_folders(web)
    }


def test_unknown_jobs_and_files_are_404(web: Web, tmp_path: Path) -> None:
    status, submitted = _upload(web.url, "song.wav", _song(tmp_path / "s.wav", 0.5).read_bytes())
    assert status == 202
    assert _wait_for(web.url, submitted["id"])["state"] == "done"
    known = submitted["id"]
    for path in (
        secrets.token_hex(16),
        "not-a-job",
        "%2e%2e%2f%2e%2e%2fjobs",
        f"{known}/drums.wav",
        f"{known}/vocals.ogg",
        f"{known}/vocals",
        f"{known}/%2e%2e%2fsong.wav",
    ):
        status, _, payload = _request(f"{web.url}/api/jobs/{path}")
        assert status == 404 and json.loads(payload)["error"], (path, payload)


def test_songs_wait_their_turn_behind_the_one_being_separated(web: Web, tmp_path: Path) -> None:
    song = _song(tmp_path / "song.flac", 1.0).read_bytes()
    web.gate.clear()
    try:
        ids = [_upload(web.url, f"song {number}.flac", song)[1]["id"] for number in range(3)]
        first = _wait_for(web.url, ids[0], ("running",))
        assert first["ahead"] == 0
        assert [_job(web.url, job_id)[1]["ahead"] for job_id in ids[1:]] == [1, 2]
        assert [_job(web.url, job_id)[1]["state"] for job_id in ids[1:]] == ["queued"] * 2
    finally:
        web.gate.set()
    assert [_wait_for(web.url, job_id)["state"] for job_id in ids] == ["done"] * 3
    jobs = [web.queue.get(job_id) for job_id in ids]
    # One at a time, in the order they came.
    for earlier, later in itertools.pairwise(jobs):
        assert earlier.ended is not None and later.started is not None
        assert earlier.ended <= later.started


def test_old_jobs_and_stray_folders_are_removed(web: Web, tmp_path: Path) -> None:
    status, submitted = _upload(web.url, "old.wav", _song(tmp_path / "old.wav", 0.5).read_bytes())
    assert status == 202
    assert _wait_for(web.url, submitted["id"])["state"] == "done"
    job = web.queue.get(submitted["id"])
    assert job.ended is not None
    # A job folder no job of this process owns (an earlier run's), and a folder that is not one.
    stray = web.jobs_dir / secrets.token_hex(16)
    (stray / "song").mkdir(parents=True)
    os.utime(stray, (job.ended, job.ended))
    other = web.jobs_dir / "notes"
    other.mkdir()
    os.utime(other, (0, 0))

    assert job.id not in web.queue.remove_expired(now=job.ended + MAX_AGE_S - 1)
    assert job.folder.is_dir() and stray.is_dir()
    assert job.id in web.queue.remove_expired(now=job.ended + MAX_AGE_S + 1)
    assert not job.folder.exists() and not stray.exists()
    assert other.is_dir()
    status, body = _job(web.url, job.id)
    assert (status, body["type"]) == (404, "JobNotFoundError")


def _vocalsep(*args: str) -> subprocess.Popen[str]:
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.Popen(
        [sys.executable, "-m", "vocalsep", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    return stdout, stderr


@pytest.mark.slow  # starts vocalsep serve and vocalsep web as processes
def test_vocalsep_web_separates_on_tf_serving_and_keeps_the_terminal_clean(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    shutil.copytree(tiny_model_dir, tmp_path / "models" / "vocalsep" / "1")
    grpc_port = str(portpicker.pick_unused_port())
    serve = _vocalsep("serve", "--model-base", str(tmp_path / "models"), "--port", grpc_port)
    try:
        address = f"127.0.0.1:{grpc_port}"
        ServingClient(address, connect_deadline_s=WAIT_S).close()  # up and serving version 1
        work_dir = str(tmp_path / "work")
        page = _vocalsep("web", "--server", address, "--port", "0", "--work-dir", work_dir)
        try:
            assert page.stdout is not None
            first, second = page.stdout.readline(), page.stdout.readline()
            assert first.startswith("vocalsep web: http://127.0.0.1:"), first
            assert "only this machine can reach it" in first
            assert second.strip() == (
                f"vocalsep web: separating with model vocalsep on TF Serving at {address} "
                "(version 1 now)"
            )
            url = first.split()[2].rstrip("/")
            song = _song(tmp_path / "song.wav", 2.0)
            status, submitted = _upload(url, "song.wav", song.read_bytes())
            assert status == 202, submitted
            job = _wait_for(url, submitted["id"])
            assert job["state"] == "done", job["error"]
            _, vocals = _download(url + job["tracks"]["vocals"]["wav"], tmp_path / "v.wav")
            assert io.probe(vocals).frames == 2 * RATE
        finally:
            stdout, stderr = _stop(page)
    finally:
        _, serve_log = _stop(serve)
    # Only its own lines: the address, the model, the work dir, one line per song.
    lines = (first + second + stdout).splitlines()
    assert all(line.startswith("vocalsep web: ") for line in lines), lines
    assert lines[-1] == "vocalsep web: song.wav: separated (2.0 s of audio)"
    assert stderr == "", stderr[-3000:]
    assert ".cc:" not in serve_log and "Traceback" not in serve_log, serve_log[-3000:]


def _audio_state(driver: webdriver.Chrome) -> dict[str, dict[str, float | bool]]:
    return driver.execute_script(
        "const state = {};"
        "for (const audio of document.querySelectorAll('#players audio'))"
        "  state[audio.dataset.track] = {time: audio.currentTime, paused: audio.paused};"
        "return state;"
    )


def _screenshot(driver: webdriver.Chrome, folder: Path, name: str, width: int) -> Path:
    """The whole page laid out ``width`` CSS pixels wide (a phone's, say), as a 256-colour PNG.

    Nothing may stick out sideways at that width.
    """
    metrics = {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 600}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    assert driver.execute_script("return document.documentElement.scrollWidth") <= width
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": height})
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    with Image.open(path) as image:
        assert image.size == (width, height)
        image.convert("RGB").quantize(256).save(path, optimize=True)
    return path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[tuple[webdriver.Chrome, Path]]:
    """Headless chromium with a fresh profile, downloading into its own folder."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(f"{CHROMIUM} or {CHROMEDRIVER} is absent (scripts/bootstrap.sh installs them)")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        *CHROMIUM_FLAGS,
        f"--user-data-dir={tmp_path / 'profile'}",
        "--autoplay-policy=no-user-gesture-required",
        "--no-proxy-server",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    # The driver named explicitly: Selenium Manager, which would download one, never runs.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver, downloads
    finally:
        driver.quit()


def test_the_page_separates_plays_switches_and_downloads_in_chromium(
    web: Web, browser: tuple[webdriver.Chrome, Path], tmp_path: Path
) -> None:
    driver, downloads = browser
    screenshots = Path(os.environ.get(SCREENSHOTS_VARIABLE) or tmp_path)
    wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.1)
    driver.set_window_size(1200, 900)
    driver.get(web.url + "/")
    song = _song(tmp_path / "demo song.mp3", 8.0, seed=7)
    driver.find_element(By.ID, "file").send_keys(str(song))
    wait.until(lambda _: driver.find_element(By.ID, "result").is_displayed())
    assert driver.find_element(By.ID, "song-name").text == "demo song.mp3"
    assert len(driver.find_elements(By.CSS_SELECTOR, "#tracks figure img")) == 3
    recent = wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, "#recent-list li"))
    assert recent[0].text.startswith("demo song.mp3")

    # Play the mix, then switch to the vocals mid-song: the position carries over.
    driver.find_element(By.ID, "play").click()
    wait.until(lambda _: _audio_state(driver)["mix"]["time"] > 1.5)
    driver.find_element(By.CSS_SELECTOR, "#switch button[data-track='vocals']").click()
    state = _audio_state(driver)
    assert state["mix"]["paused"] and not state["vocals"]["paused"]
    switched_at = state["mix"]["time"]  # where the mix stopped
    assert switched_at > 1.5
    # The vocals went on from there (they have played a moment since), not from the start.
    assert switched_at - 0.05 <= state["vocals"]["time"] < switched_at + 2.0, state
    wait.until(lambda _: _audio_state(driver)["vocals"]["time"] > switched_at + 0.5)
    assert _audio_state(driver)["accompaniment"]["time"] == 0
    pressed = driver.find_element(By.CSS_SELECTOR, "#switch button[aria-pressed='true']")
    assert pressed.get_attribute("data-track") == "vocals"
    _screenshot(driver, screenshots, "web-desktop", 1000)
    _screenshot(driver, screenshots, "web-phone", 390)

    # Download the vocals as mp3: a file that decodes to the song's length.
    driver.find_element(By.CSS_SELECTOR, "figure[data-track='vocals'] a[data-format='mp3']").click()
    target = downloads / "demo song - vocals.mp3"
    wait.until(lambda _: target.exists())
    assert len(io.read_audio(target)) == pytest.approx(8.0 * RATE, abs=io.PRIMING_TOLERANCE_FRAMES)

    # A text file named .mp3: the CLI's one-line error, on the page.
    fake = tmp_path / "fake.mp3"
    fake.write_text("not a song\n")
    driver.find_element(By.ID, "file").send_keys(str(fake))
    error = driver.find_element(By.ID, "error")
    wait.until(lambda _: error.is_displayed())
    assert error.text.startswith("fake.mp3: not a recognised audio file ("), error.text
    _screenshot(driver, screenshots, "web-error", 390)
