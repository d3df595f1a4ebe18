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
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
from vocalsep.web.jobs import (
    JOBS_FOLDER,
    OUTPUT_BYTES_PER_SECOND,
    JobNotFoundError,
    JobQueue,
    Limits,
)
from vocalsep.web.store import WorkDirBusyError

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
    with _serving(held_at_the_gate, work_dir, gate, LIMIT_BYTES) as web:
        yield web


@contextlib.contextmanager
def _serving(
    separator: Callable[[], contextlib.AbstractContextManager[Separator]],
    work_dir: Path,
    gate: threading.Event,
    limit_bytes: int,
    limits: Limits = Limits(),  # noqa: B008 (frozen)
) -> Iterator[Web]:
    """The page over a new job queue, in uvicorn on a thread, on a free loopback port."""
    queue = JobQueue(separator, work_dir, MAX_AGE_S, limits=limits)
    config = uvicorn.Config(
        create_app(queue, limit_bytes), log_config=None, log_level="warning", access_log=False
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


@pytest.fixture
def gated(tiny_model_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Web]]:
    """Starts pages of their own (limits, a drain) over the tiny model, each with its gate."""
    separator = Separator(tiny_model_dir, block_seconds=1.0)
    with contextlib.ExitStack() as stack:

        def start(limit_bytes: int = LIMIT_BYTES, **limits: Any) -> Web:
            gate = threading.Event()
            gate.set()

            @contextlib.contextmanager
            def held_at_the_gate() -> Iterator[Separator]:
                gate.wait()
                yield separator

            work_dir = tmp_path / f"work-{secrets.token_hex(4)}"
            serving = _serving(held_at_the_gate, work_dir, gate, limit_bytes, Limits(**limits))
            return stack.enter_context(serving)

        yield start


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
    # Besides the songs' folders, only the job records (and the lock that keeps them to one).
    stored = {path for path in web.work_dir.rglob("*") if path.is_file()}
    records = {path for path in stored if path.parent == web.work_dir}
    assert {path.name for path in records} <= {
        "jobs.sqlite3",
        "jobs.sqlite3-wal",
        "jobs.sqlite3-shm",
        "jobs.lock",
    }
    assert {path.parent for path in stored - records} <= {
        web.jobs_dir / name / "song" for name in _job_folders(web)
    }


def test_a_song_sent_without_an_extension_is_separated(web: Web, tmp_path: Path) -> None:
    """Stored as ``song.upload``: a bare ``song`` would block the ``song/`` folder of its
    tracks (it did: the stems could not be moved into place)."""
    song = _song(tmp_path / "s.flac", 1.0)
    status, submitted = _upload(web.url, "track", song.read_bytes())
    assert status == 202, submitted
    job = _wait_for(web.url, submitted["id"])
    assert job["state"] == "done", job["error"]
    assert set(job["tracks"]) == TRACKS


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
    # Only its own lines: the address, the model, the work dir, one line per song, the stop.
    lines = (first + second + stdout).splitlines()
    assert all(line.startswith("vocalsep web: ") for line in lines), lines
    assert lines[-2:] == [
        "vocalsep web: song.wav: separated (2.0 s of audio)",
        "vocalsep web: stopped; 0 queued songs kept for the next start",
    ]
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


def _ffmpeg(target: Path, *args: str) -> Path:
    """A file made by ffmpeg (``-f`` and all), streamed to ``target`` as through a pipe."""
    with target.open("wb") as out:
        subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", *args, "pipe:1"], stdout=out, check=True
        )
    return target


def _upload_from(
    web: Web, client: str, name: str, data: bytes
) -> tuple[int, http.client.HTTPMessage, dict]:
    """An upload relayed for ``client``: uvicorn trusts ``X-Forwarded-For`` from 127.0.0.1, as
    it would from an Ingress named in ``FORWARDED_ALLOW_IPS``."""
    body, content_type = _multipart(name, data)
    headers = {"Content-Type": content_type, "X-Forwarded-For": client}
    status, response_headers, payload = _request(f"{web.url}/api/jobs", body, headers)
    return status, response_headers, json.loads(payload)


def test_a_two_hour_low_bitrate_mp3_is_refused_by_its_header_before_it_queues(
    gated: Callable[..., Web], tmp_path: Path
) -> None:
    """7 MB at 8 kbit/s holds two hours: it would occupy the worker for all of them."""
    song = _ffmpeg(
        tmp_path / "two hours.mp3",
        *("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "7200"),
        *("-c:a", "libmp3lame", "-b:a", "8k", "-f", "mp3"),
    )
    assert song.stat().st_size > 6 * 2**20
    web = gated(limit_bytes=16 * 2**20, max_minutes=20.0)
    status, body = _upload(web.url, song.name, song.read_bytes())
    assert (status, body) == (
        422,
        {
            "error": "two hours.mp3: too long: 120.0 minutes, the limit is 20 minutes",
            "type": "SongTooLongError",
        },
    )
    assert _job_folders(web) == set()
    status, info = _request(f"{web.url}/api")[::2]
    assert status == 200 and json.loads(info)["max_minutes"] == 20.0


def test_a_song_whose_header_hides_its_length_is_held_to_the_limit_as_it_decodes(
    gated: Callable[..., Web], tmp_path: Path
) -> None:
    """Matroska written to a pipe has no duration: accepted, then failed alone at the limit."""
    song = _ffmpeg(
        tmp_path / "stream.mkv",
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000:duration=150"),
        *("-c:a", "flac", "-f", "matroska"),
    )
    assert io.probe(song).duration_seconds is None
    web = gated(limit_bytes=16 * 2**20, max_minutes=2.0)
    status, submitted = _upload(web.url, song.name, song.read_bytes())
    assert status == 202, submitted
    assert submitted["seconds_total"] is None
    short = _song(tmp_path / "short.flac", 1.0)
    status, after = _upload(web.url, short.name, short.read_bytes())
    assert status == 202, after
    job = _wait_for(web.url, submitted["id"])
    assert (job["state"], job["error"]) == (
        "failed",
        "stream.mkv: too long: over the limit of 2 minutes",
    )
    assert job["seconds_done"] <= 120.0 + 1.0  # stopped at the limit, not at the end
    assert submitted["id"] not in _job_folders(web)
    # That song's failure alone: the next one is separated.
    assert _wait_for(web.url, after["id"])["state"] == "done"


def test_a_full_queue_gets_429_with_retry_after_and_one_sender_only_its_share(
    gated: Callable[..., Web], tmp_path: Path
) -> None:
    web = gated(max_queue=3, max_per_client=2)
    song = _song(tmp_path / "song.flac", 1.0).read_bytes()
    web.gate.clear()
    try:
        mine = [_upload_from(web, "192.0.2.1", f"mine {n}.flac", song) for n in range(2)]
        assert [status for status, _, _ in mine] == [202, 202]
        status, headers, refused = _upload_from(web, "192.0.2.1", "one more.flac", song)
        assert (status, refused["type"]) == (429, "ClientShareError")
        assert refused["error"] == (
            "you already have 2 songs in the queue, the most one sender may have: "
            "send this one when one of them is done"
        )
        assert int(headers["Retry-After"]) == refused["retry_after_s"] >= 1
        status, _, theirs = _upload_from(web, "192.0.2.2", "theirs.flac", song)
        assert status == 202, theirs
        status, headers, refused = _upload_from(web, "192.0.2.3", "late.flac", song)
        assert (status, refused["type"]) == (429, "QueueFullError")
        assert refused["error"] == "the queue is full (3 songs): try again later"
        assert int(headers["Retry-After"]) >= 1
        assert len(_job_folders(web)) == 3
    finally:
        web.gate.set()
    for job_id in [body["id"] for _, _, body in mine] + [theirs["id"]]:
        assert _wait_for(web.url, job_id)["state"] == "done"
    # Places free as songs end: the same sender is served again.
    status, _, again = _upload_from(web, "192.0.2.1", "one more.flac", song)
    assert status == 202, again


def test_a_full_disk_budget_removes_the_oldest_finished_songs_then_answers_507(
    gated: Callable[..., Web], tmp_path: Path
) -> None:
    web = gated()
    song = _song(tmp_path / "song.wav", 3.0).read_bytes()
    finished = []
    for number in range(2):
        status, body = _upload(web.url, f"old {number}.wav", song)
        assert status == 202, body
        assert _wait_for(web.url, body["id"])["state"] == "done"
        finished.append(body["id"])
    on_disk = web.queue.disk_bytes()
    budgeted = len(song) + 3.0 * OUTPUT_BYTES_PER_SECOND  # what a waiting 3 s song reserves
    # Room for one more song once the older finished song is removed, not with both kept.
    budget = round(on_disk + budgeted - on_disk / 4)
    web.queue.limits = dataclasses.replace(web.queue.limits, disk_budget_bytes=budget)
    web.gate.clear()
    try:
        status, accepted = _upload(web.url, "new.wav", song)
        assert status == 202, accepted
        assert _job(web.url, finished[0])[0] == 404
        assert _job(web.url, finished[1])[1]["state"] == "done"
        # Another: even with every finished song gone, the waiting songs' results leave no room.
        status, refused = _upload(web.url, "too many.wav", song)
        assert (status, refused["type"]) == (507, "DiskBudgetError")
        assert refused["error"].startswith(
            f"no room for another song: the server's disk budget of {budget / 2**30:g} GB"
        )
        assert _job(web.url, finished[1])[0] == 404
        assert _job_folders(web) == {accepted["id"]}
    finally:
        web.gate.set()
    assert _wait_for(web.url, accepted["id"])["state"] == "done"
    assert web.queue.disk_bytes() <= budget


def test_a_stop_drains_new_songs_get_503_and_the_running_one_finishes_in_its_grace(
    gated: Callable[..., Web], tmp_path: Path
) -> None:
    web = gated()
    song = _song(tmp_path / "song.flac", 1.0).read_bytes()
    assert _request(f"{web.url}/api/ready")[0] == 200
    web.gate.clear()
    drained: list[tuple[int, int]] = []
    try:
        running = _upload(web.url, "running.flac", song)[1]
        _wait_for(web.url, running["id"], ("running",))
        queued = _upload(web.url, "queued.flac", song)[1]
        drain = threading.Thread(target=lambda: drained.append(web.queue.drain(WAIT_S)))
        drain.start()
        give_up = time.monotonic() + WAIT_S
        while not web.queue.draining:
            assert time.monotonic() < give_up
            time.sleep(0.01)
        status, _, payload = _request(f"{web.url}/api/ready")
        assert (status, json.loads(payload)) == (503, {"ready": False, "reason": "stopping"})
        body, content_type = _multipart("late.flac", song)
        status, headers, payload = _request(
            f"{web.url}/api/jobs", body, {"Content-Type": content_type}
        )
        refused = json.loads(payload)
        assert (status, refused["type"]) == (503, "ShuttingDownError")
        assert int(headers["Retry-After"]) > 0
    finally:
        web.gate.set()
    drain.join(WAIT_S)
    # The running song finished within its grace; the queued one waits for the next start.
    assert drained == [(0, 1)]
    assert _job(web.url, running["id"])[1]["state"] == "done"
    assert _job(web.url, queued["id"])[1]["state"] == "queued"


def test_workers_above_one_need_a_model_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["web", "--workers", "2"]) == cli.EXIT_USAGE
    assert "--workers above 1 needs --server" in capsys.readouterr().err


def _stored_jobs(work_dir: Path) -> list[tuple[str, str, float | None]]:
    """(id, state, started) of each job record, in order of arrival, as the server left them."""
    with contextlib.closing(sqlite3.connect(work_dir / "jobs.sqlite3")) as database:
        return database.execute("SELECT id, state, started FROM jobs ORDER BY seq").fetchall()


@pytest.mark.slow  # starts vocalsep web as a process, twice
def test_a_restart_resumes_the_queue_in_order_and_separates_the_interrupted_song_again(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """SIGTERM while one song runs and three wait, and a second SIGTERM that ends the grace
    period (10 minutes) at once: the running song goes back to the queue. The next start
    separates all four, the interrupted one first, and says so."""
    work_dir = tmp_path / "work"
    songs = [_song(tmp_path / f"song {number}.flac", 40.0, seed=number) for number in range(4)]

    def start() -> tuple[subprocess.Popen[str], str]:
        page = _vocalsep(
            "web",
            *("--model", str(tiny_model_dir), "--port", "0", "--work-dir", str(work_dir)),
            *("--drain-seconds", "600"),
        )
        assert page.stdout is not None
        lines = [page.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("vocalsep web: http://127.0.0.1:"), lines
        return page, lines[0].split()[2].rstrip("/")

    page, url = start()
    try:
        ids = []
        for song in songs:
            status, submitted = _upload(url, song.name, song.read_bytes())
            assert status == 202, submitted
            ids.append(submitted["id"])
        running = _wait_for(url, ids[0], ("running",))
        page.send_signal(signal.SIGTERM)
        give_up = time.monotonic() + WAIT_S
        while _request(f"{url}/api/ready")[0] != 503:  # draining (signals do not queue up)
            assert time.monotonic() < give_up, "SIGTERM did not start a drain"
            time.sleep(0.01)
    finally:
        stdout, stderr = _stop(page)  # the second
    assert running["seconds_done"] < 40.0
    assert stderr == "", stderr[-3000:]
    assert stdout.splitlines()[-1] == (
        "vocalsep web: stopped; 4 queued songs kept for the next start, 1 of them unfinished "
        "at the stop"
    )
    assert [(job_id, state) for job_id, state, _ in _stored_jobs(work_dir)] == [
        (job_id, "queued") for job_id in ids
    ]

    page, url = start()
    try:
        assert page.stdout is not None
        assert page.stdout.readline() == (
            "vocalsep web: 4 songs accepted before the last stop are queued again, in their order\n"
        )
        for job_id in ids:
            job = _wait_for(url, job_id)
            assert job["state"] == "done", job["error"]
            _, vocals = _download(url + job["tracks"]["vocals"]["wav"], tmp_path / "v.wav")
            assert io.probe(vocals).frames == 40 * RATE
    finally:
        stdout, stderr = _stop(page)
    assert stderr == "", stderr[-3000:]
    assert (
        stdout.splitlines()[-1] == "vocalsep web: stopped; 0 queued songs kept for the next start"
    )
    stored = _stored_jobs(work_dir)
    assert [(job_id, state) for job_id, state, _ in stored] == [(i, "done") for i in ids]
    started = [when for _, _, when in stored]
    assert started == sorted(started), "separated out of their order"


def test_job_records_are_checked_before_they_are_trusted_and_kept_to_one_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows another program (or a bad disk) wrote are skipped, not followed as paths; a
    second server on the same work dir is refused."""
    work_dir = tmp_path / "work"
    unused = contextlib.nullcontext
    queue = JobQueue(unused, work_dir, MAX_AGE_S)
    good = secrets.token_hex(16)
    (work_dir / JOBS_FOLDER / good / "song").mkdir(parents=True)
    with pytest.raises(WorkDirBusyError, match="another vocalsep web is using this work dir"):
        JobQueue(unused, work_dir, MAX_AGE_S)
    queue.stop()
    with contextlib.closing(sqlite3.connect(work_dir / "jobs.sqlite3")) as database, database:
        rows = [
            (good, "song.mp3", "song.mp3", "done", '["mix", "vocals"]'),
            ("../../etc", "x.mp3", "song.mp3", "done", "[]"),
            (secrets.token_hex(16), "y.mp3", "../../../etc/passwd", "queued", "[]"),
            (secrets.token_hex(16), "z.mp3", "song.mp3", "exploded", "[]"),
            (secrets.token_hex(16), "w.mp3", "song.mp3", "done", '["../../x"]'),
        ]
        database.executemany(
            "INSERT INTO jobs (id, name, client, song, state, created, ended, tracks) "
            "VALUES (?, ?, '', ?, ?, 0, 1, ?)",
            rows,
        )
    queue = JobQueue(unused, work_dir, MAX_AGE_S)
    try:
        assert queue.get(good).tracks == ("mix", "vocals")
        for job_id, *_ in rows[1:]:
            with pytest.raises(JobNotFoundError):
                queue.get(job_id)
        skipped = [record.getMessage() for record in caplog.records]
        assert len(skipped) == 4 and all("row skipped" in line for line in skipped), skipped
    finally:
        queue.stop()
