"""Load test of ``vocalsep web`` as a service: concurrent clients, a restart in the middle.

Starts ``vocalsep web`` as its own process on a free 127.0.0.1 port with a work dir of its own
(the shipped model by default; with ``--serve``, ``vocalsep serve`` as a second process and
``vocalsep web --server`` with ``--workers``). ``--clients`` threads, each sending as its own
address (``X-Forwarded-For``, which uvicorn trusts from 127.0.0.1), upload real songs (MUSDB18
train clips, as they are stored: ``.stem.mp4``) through the JSON API for ``--seconds``, one
song at a time each: upload, poll its job until it ends, download the vocals and the
instrumental and decode them. At ``--restart-at`` seconds the server gets SIGTERM, and once it
has exited it is started again on the same port and work dir; clients wait through the gap as
the page does (503 and ``Retry-After`` honoured, refused connections retried). After
``--seconds`` no new songs are sent, and every song the server accepted (202) must end ``done``
with stems that decode within ``--settle-seconds``.

Reports songs per minute, upload-to-done time (p50, p95), API latency under load (job status
requests, p50 and p95), errors, lost jobs, peak RSS of the web server (with its ffmpeg children;
with ``--serve``, of the model server too), peak size of the work dir, and each stop's exit
line and time. Exits 1 if a song was lost, an error occurred or a server wrote to stderr.

    .venv/bin/python scripts/load_test_web.py --clients 4 --seconds 120 --restart-at 60

Nothing leaves 127.0.0.1; every loop is bounded by a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import portpicker
import psutil

from vocalsep.audio import io

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SONGS = REPO_ROOT.parent / "shared" / "data" / "musdb18-7" / "train"
POLL_S = 0.25
START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 120.0
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class UnreachableError(Exception):
    """No answer: the server is stopping or starting."""


def _request(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with _NO_PROXY.open(request, timeout=120) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()
    except (urllib.error.URLError, ConnectionError, http.client.HTTPException) as error:
        raise UnreachableError(str(error)) from None


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = secrets.token_hex(12)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    return head.encode() + data + f"\r\n--{boundary}--\r\n".encode(), (
        f"multipart/form-data; boundary={boundary}"
    )


@dataclasses.dataclass
class Results:
    """What the clients saw, shared between their threads (appends only)."""

    accepted: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> song
    done: dict[str, float] = dataclasses.field(default_factory=dict)  # id -> upload to done, s
    done_at: list[float] = dataclasses.field(default_factory=list)
    status_latency: list[float] = dataclasses.field(default_factory=list)
    upload_latency: list[float] = dataclasses.field(default_factory=list)
    refused: dict[int, int] = dataclasses.field(default_factory=dict)  # status -> count
    unreachable: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def count_refused(self, status: int) -> None:
        with self.lock:
            self.refused[status] = self.refused.get(status, 0) + 1


class Client(threading.Thread):
    """Sends songs one at a time as one address, until ``submit_until``; follows each to done."""

    def __init__(
        self,
        number: int,
        url: str,
        songs: list[Path],
        results: Results,
        submit_until: float,
        give_up: float,
        downloads: Path,
    ) -> None:
        super().__init__(name=f"client-{number}", daemon=True)
        self.address = f"10.0.0.{number + 1}"
        self.url = url
        self.songs = songs[number:] + songs[:number]
        self.results = results
        self.submit_until = submit_until
        self.give_up = give_up
        self.downloads = downloads / self.address
        self.downloads.mkdir()

    def run(self) -> None:
        turn = 0
        while time.monotonic() < self.submit_until:
            song = self.songs[turn % len(self.songs)]
            turn += 1
            try:
                self._separate(song)
            except Exception as error:  # reported, and this client goes on with the next song
                with self.results.lock:
                    self.results.errors.append(f"{self.address} {song.name}: {error!r}")

    def _separate(self, song: Path) -> None:
        body, content_type = _multipart(song.name, song.read_bytes())
        headers = {"Content-Type": content_type, "X-Forwarded-For": self.address}
        while True:
            if time.monotonic() >= self.submit_until:
                return
            sent = time.monotonic()
            try:
                status, answer_headers, payload = _request(f"{self.url}/api/jobs", body, headers)
            except UnreachableError:
                with self.results.lock:
                    self.results.unreachable += 1
                time.sleep(1.0)
                continue
            if status == 202:
                break
            if status in (429, 503, 507):  # a limit or a stop: wait as told, then again
                self.results.count_refused(status)
                wait = float(answer_headers.get("Retry-After") or 5)
                time.sleep(min(wait, max(self.submit_until - time.monotonic(), 0.0)))
                continue
            raise RuntimeError(f"upload answered {status}: {payload[:300]!r}")
        with self.results.lock:
            self.results.upload_latency.append(time.monotonic() - sent)
        job_id = json.loads(payload)["id"]
        with self.results.lock:
            self.results.accepted[job_id] = song.name
        job = self._follow(job_id)
        if job["state"] != "done":
            raise RuntimeError(f"job {job_id} ended {job['state']}: {job['error']}")
        elapsed = time.monotonic() - sent
        frames = []
        for track in ("vocals", "accompaniment"):
            status, audio = self._download(self.url + job["tracks"][track]["wav"])
            if status != 200:
                raise RuntimeError(f"job {job_id}: {track}.wav answered {status}")
            path = self.downloads / f"{job_id}-{track}.wav"
            path.write_bytes(audio)
            frames.append(len(io.read_audio(path, sample_rate=None)))
            path.unlink()
        expected = round(job["seconds_total"] * 44100)
        if len(set(frames)) != 1 or abs(frames[0] - expected) > io.PRIMING_TOLERANCE_FRAMES:
            raise RuntimeError(f"job {job_id}: stems of {frames} frames, the song {expected}")
        with self.results.lock:
            self.results.done[job_id] = elapsed
            self.results.done_at.append(time.monotonic())

    def _download(self, url: str) -> tuple[int, bytes]:
        """A finished song's file; through a restart, once the server answers again."""
        while True:
            try:
                status, _, data = _request(url)
            except UnreachableError:
                if time.monotonic() > self.give_up:
                    raise
                with self.results.lock:
                    self.results.unreachable += 1
                time.sleep(1.0)
                continue
            if status != 503 or time.monotonic() > self.give_up:
                return status, data
            time.sleep(POLL_S)

    def _follow(self, job_id: str) -> dict:
        while time.monotonic() < self.give_up:
            sent = time.monotonic()
            try:
                status, _, payload = _request(f"{self.url}/api/jobs/{job_id}")
            except UnreachableError:
                with self.results.lock:
                    self.results.unreachable += 1
                time.sleep(1.0)
                continue
            if status == 200:
                with self.results.lock:
                    self.results.status_latency.append(time.monotonic() - sent)
                job = json.loads(payload)
                if job["state"] in ("done", "failed"):
                    return job
            elif status != 503:
                raise RuntimeError(f"job {job_id}: status answered {status}: {payload[:300]!r}")
            time.sleep(POLL_S)
        raise RuntimeError(f"job {job_id}: not done by the end of the test (lost)")


class Watcher(threading.Thread):
    """Samples the servers' RSS (with their children) and the work dir's size, keeping peaks."""

    def __init__(self, work_dir: Path) -> None:
        super().__init__(name="watcher", daemon=True)
        self.work_dir = work_dir
        self.pids: dict[str, int] = {}
        self.peak_rss: dict[str, int] = {}
        self.peak_disk = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            for name, pid in list(self.pids.items()):
                with contextlib.suppress(psutil.Error):
                    process = psutil.Process(pid)
                    rss = process.memory_info().rss + sum(
                        child.memory_info().rss for child in process.children(recursive=True)
                    )
                    self.peak_rss[name] = max(self.peak_rss.get(name, 0), rss)
            disk = 0
            for root, _, files in os.walk(self.work_dir):
                for file_name in files:
                    with contextlib.suppress(FileNotFoundError):
                        disk += (Path(root) / file_name).lstat().st_size
            self.peak_disk = max(self.peak_disk, disk)


def _vocalsep(*args: str, log: Path) -> subprocess.Popen[str]:
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.Popen(
        [sys.executable, "-m", "vocalsep", *args],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        env=environment,
    )


@dataclasses.dataclass
class Page:
    """A ``vocalsep web`` process and the lines it printed, read as they come."""

    process: subprocess.Popen[str]
    lines: list[str]
    reader: threading.Thread


def _start_web(arguments: list[str], log: Path) -> Page:
    process = _vocalsep("web", *arguments, log=log)
    stdout = process.stdout
    assert stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.strip() for line in stdout))
    reader.start()
    give_up = time.monotonic() + START_TIMEOUT_S
    while not lines:
        if process.poll() is not None or time.monotonic() > give_up:
            process.kill()
            raise SystemExit(f"vocalsep web did not start; see {log}")
        time.sleep(0.1)
    if not lines[0].startswith("vocalsep web: http://"):
        process.kill()
        raise SystemExit(f"vocalsep web did not start: {lines[0]!r}; see {log}")
    return Page(process, lines, reader)


def _stop(page: Page) -> tuple[float, list[str]]:
    """SIGTERM; how long it took to exit, and every line it printed."""
    started = time.monotonic()
    page.process.send_signal(signal.SIGTERM)
    page.process.wait(STOP_TIMEOUT_S)
    elapsed = time.monotonic() - started
    page.reader.join(STOP_TIMEOUT_S)
    if page.process.returncode != 0:
        raise SystemExit(f"the server exited with {page.process.returncode}")
    return elapsed, page.lines


def _wait_ready(url: str) -> None:
    give_up = time.monotonic() + START_TIMEOUT_S
    while True:
        with contextlib.suppress(UnreachableError):
            if _request(f"{url}/api/ready")[0] == 200:
                return
        if time.monotonic() > give_up:
            raise SystemExit("the page never became ready")
        time.sleep(0.2)


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs-dir", type=Path, default=DEFAULT_SONGS)
    parser.add_argument("--songs", type=int, default=16, help="distinct clips sent (%(default)s)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=120.0, help="time songs are sent")
    parser.add_argument("--restart-at", type=float, default=60.0, help="SIGTERM after this")
    parser.add_argument("--settle-seconds", type=float, default=300.0)
    parser.add_argument("--model", type=Path, help="exported model (default: the shipped one)")
    parser.add_argument("--serve", action="store_true", help="separate on vocalsep serve")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--drain-seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    songs = sorted(args.songs_dir.glob("*.stem.mp4"))[: args.songs]
    if len(songs) < args.clients:
        raise SystemExit(f"{args.songs_dir}: {len(songs)} clips, fewer than --clients")

    with tempfile.TemporaryDirectory(prefix="vocalsep-load-web-") as scratch_name:
        scratch = Path(scratch_name)
        work_dir = scratch / "work"
        port = portpicker.pick_unused_port()
        url = f"http://127.0.0.1:{port}"
        arguments = ["--port", str(port), "--work-dir", str(work_dir)]
        arguments += ["--drain-seconds", str(args.drain_seconds)]
        arguments += ["--max-per-client", "4", "--workers", str(args.workers)]
        watcher = Watcher(work_dir)
        serve = None
        if args.serve:
            model = args.model or REPO_ROOT / "models" / "default"
            shutil.copytree(model, scratch / "models" / "vocalsep" / "1")
            grpc_port = portpicker.pick_unused_port()
            serve = _vocalsep(
                *("serve", "--model-base", str(scratch / "models"), "--port", str(grpc_port)),
                log=scratch / "serve.log",
            )
            watcher.pids["serve"] = serve.pid
            arguments += ["--server", f"127.0.0.1:{grpc_port}", "--deadline", "120"]
        elif args.model:
            arguments += ["--model", str(args.model)]
        logs = [scratch / "web-1.log", scratch / "web-2.log"]
        page = None
        try:
            page = _start_web(arguments, logs[0])
            watcher.pids["web"] = page.process.pid
            _wait_ready(url)
            watcher.start()
            results = Results()
            started = time.monotonic()
            submit_until = started + args.seconds
            settle_until = submit_until + args.settle_seconds
            downloads = scratch / "downloads"
            downloads.mkdir()
            clients = [
                Client(number, url, songs, results, submit_until, settle_until, downloads)
                for number in range(args.clients)
            ]
            for client in clients:
                client.start()
            time.sleep(max(started + args.restart_at - time.monotonic(), 0.0))
            with results.lock:
                waiting = len(results.accepted) - len(results.done)
            sigterm_at = time.monotonic()
            stop_s, stop_lines = _stop(page)
            page = _start_web(arguments, logs[1])
            watcher.pids["web"] = page.process.pid
            _wait_ready(url)
            unavailable_s = time.monotonic() - sigterm_at
            for client in clients:
                client.join(max(settle_until - time.monotonic(), 0.0) + 5)
            ended = time.monotonic()
            final_stop_s, final_lines = _stop(page)
        finally:
            watcher.stopping.set()
            for process in (page and page.process, serve):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(STOP_TIMEOUT_S)
        noise = {
            log.name: log.read_text() for log in logs if log.exists() and log.read_text().strip()
        }

    lost = sorted(set(results.accepted) - set(results.done))
    minutes = (max(results.done_at, default=ended) - started) / 60
    figures = {
        "clients": args.clients,
        "workers": args.workers,
        "model": "TF Serving (vocalsep serve)" if args.serve else "local",
        "seconds_sending": args.seconds,
        "accepted": len(results.accepted),
        "done": len(results.done),
        "lost": len(lost),
        "errors": len(results.errors),
        "songs_per_minute": round(len(results.done) / minutes, 2) if minutes else 0.0,
        "upload_to_done_p50_s": round(_percentile(list(results.done.values()), 0.5), 2),
        "upload_to_done_p95_s": round(_percentile(list(results.done.values()), 0.95), 2),
        "status_latency_p50_ms": round(1000 * _percentile(results.status_latency, 0.5), 1),
        "status_latency_p95_ms": round(1000 * _percentile(results.status_latency, 0.95), 1),
        "upload_latency_p50_ms": round(1000 * _percentile(results.upload_latency, 0.5), 1),
        "refused": {str(status): count for status, count in sorted(results.refused.items())},
        "unanswered_requests_during_restart": results.unreachable,
        "accepted_not_done_at_sigterm": waiting,
        "sigterm_to_exit_s": round(stop_s, 1),
        "sigterm_to_ready_again_s": round(unavailable_s, 1),
        "stop_line": stop_lines[-1],
        "resumed_line": next((line for line in final_lines if "before the last stop" in line), ""),
        "final_stop_line": final_lines[-1],
        "final_sigterm_to_exit_s": round(final_stop_s, 1),
        "peak_rss_mib": {name: round(rss / 2**20) for name, rss in watcher.peak_rss.items()},
        "peak_work_dir_mib": round(watcher.peak_disk / 2**20, 1),
        "server_stderr": noise,
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(figures, indent=2))
    for error in results.errors:
        print(f"error: {error}", file=sys.stderr)
    for job_id in lost:
        print(f"lost: {job_id} ({results.accepted[job_id]})", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if lost or results.errors or noise else 0


if __name__ == "__main__":
    sys.exit(main())
