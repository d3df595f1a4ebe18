"""Load test: concurrent clients separating real songs through ``vocalsep serve`` on loopback.

Serves the default-size U-Net (random weights unless ``--model`` names an export; speed does not
depend on the weights) from a fresh model base, starts ``vocalsep serve`` as its own process,
decodes ``--songs`` MUSDB clips once (so ffmpeg does not compete for the CPU during the run),
then runs ``--clients`` threads, each with its own gRPC channel, separating songs through
``Separator`` + ``ServingClient`` exactly as ``vocalsep separate --server`` does, until
``--max-songs`` songs were started or ``--seconds`` passed. Reports throughput, latency per
request (one request is one block of audio; a 7-second clip is one block), errors, server
memory (RSS) before and after, and how busy the machine was with other processes. Prints a
Markdown table.

    .venv/bin/python scripts/load_test_serving.py --clients 4 --max-songs 400 --seconds 120
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import portpicker
import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SONGS = REPO_ROOT.parent / "shared" / "data" / "musdb18-7" / "train"


def _export_default_model(directory: Path) -> None:
    import tf_keras as keras

    from vocalsep.model import export, unet

    config = unet.UNetConfig()
    keras.utils.set_random_seed(0)
    model = unet.build_unet(config)
    mean = np.zeros(config.model_bins, np.float32)
    scale = np.ones(config.model_bins, np.float32)
    export.export_saved_model(model, mean, scale, config, export.InferenceConfig(), directory)


def _other_cpu_percent(exclude: set[int], seconds: float = 2.0) -> tuple[float, list[str]]:
    """CPU used by processes other than ours (percent of one core) and the busiest of them."""
    processes = [p for p in psutil.process_iter(["pid", "name", "cmdline"]) if p.pid not in exclude]
    for process in processes:
        try:
            process.cpu_percent(None)
        except psutil.Error:
            continue
    time.sleep(seconds)
    usage = []
    for process in processes:
        try:
            usage.append((process.cpu_percent(None), process))
        except psutil.Error:
            continue
    usage.sort(key=lambda item: -item[0])
    busiest = [
        f"{percent:.0f}% {_command(process)}" for percent, process in usage[:3] if percent >= 5
    ]
    return sum(percent for percent, _ in usage), busiest


def _command(process: psutil.Process) -> str:
    words = " ".join(process.info["cmdline"] or [process.info["name"]]).split()
    return " ".join(words)[:80]


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


class _TimedClient:
    """A ServingClient that records each request's latency (StemModel interface)."""

    def __init__(self, client: object, latencies: list[float], lock: threading.Lock) -> None:
        self._client = client
        self._latencies = latencies
        self._lock = lock
        for name in ("sample_rate", "stems", "chunk_length", "overlap_length"):
            setattr(self, name, getattr(client, name))

    def __call__(self, waveform: np.ndarray) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        stems = self._client(waveform)  # type: ignore[operator]
        with self._lock:
            self._latencies.append(time.perf_counter() - start)
        return stems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--max-songs", type=int, default=200, help="stop after starting this many songs"
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="stop after this long")
    parser.add_argument("--tracks", type=int, default=16, help="MUSDB clips to cycle through")
    parser.add_argument("--data", type=Path, default=DEFAULT_SONGS)
    parser.add_argument("--model", type=Path, help="exported model (default: random weights)")
    args = parser.parse_args()

    from vocalsep.audio import io
    from vocalsep.errors import VocalsepError
    from vocalsep.separator import Separator
    from vocalsep.serving.client import ServingClient

    paths = sorted(args.data.glob("*.stem.mp4"))[: args.tracks]
    if not paths:
        print(f"no .stem.mp4 files in {args.data}", file=sys.stderr)
        return 1
    songs = [io.read_audio(path, sample_rate=44100, channels=2) for path in paths]
    audio_seconds = [len(song) / 44100 for song in songs]

    work = Path(tempfile.mkdtemp(prefix="vocalsep-load-"))
    version_dir = work / "models" / "vocalsep" / "1"
    if args.model:
        shutil.copytree(args.model, version_dir)
    else:
        _export_default_model(version_dir)
    port = portpicker.pick_unused_port()
    address = f"localhost:{port}"
    env = {key: value for key, value in os.environ.items() if key != "TF_USE_LEGACY_KERAS"}
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "vocalsep", "serve"),
            *("--model-base", str(work / "models"), "--port", str(port)),
        ],
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"},
        stderr=subprocess.DEVNULL,
    )
    try:
        give_up = time.monotonic() + 300
        while True:
            try:
                ServingClient(address, connect_deadline_s=5).close()
                break
            except VocalsepError:
                if time.monotonic() > give_up or server.poll() is not None:
                    raise
        server_process = psutil.Process(server.pid)
        rss_before = server_process.memory_info().rss
        other_cpu, busiest = _other_cpu_percent({os.getpid(), server.pid})

        latencies: list[float] = []
        errors: list[str] = []
        songs_done = [0]
        sent = [0]
        lock = threading.Lock()
        deadline = time.monotonic() + args.seconds

        def take_song() -> bool:
            with lock:
                if sent[0] >= args.max_songs or time.monotonic() > deadline:
                    return False
                sent[0] += 1
                return True

        def client_loop(index: int) -> None:
            with ServingClient(address) as client:
                separator = Separator(_TimedClient(client, latencies, lock), in_flight=2)
                song = index
                while take_song():
                    mixture = songs[song % len(songs)]
                    try:
                        for _ in separator.separate_blocks(iter([mixture])):
                            pass
                        with lock:
                            songs_done[0] += 1
                    except VocalsepError as error:
                        with lock:
                            errors.append(str(error))
                    song += args.clients

        cpu_start = psutil.cpu_times()
        ours_start = _cpu_seconds(server_process) + _cpu_seconds(psutil.Process())
        start = time.perf_counter()
        threads = [
            threading.Thread(target=client_loop, args=(index,)) for index in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
        cpu_end = psutil.cpu_times()
        ours = _cpu_seconds(server_process) + _cpu_seconds(psutil.Process()) - ours_start
        rss_after = server_process.memory_info().rss
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    busy = sum(getattr(cpu_end, f) - getattr(cpu_start, f) for f in ("user", "system", "nice"))
    total = busy + (cpu_end.idle - cpu_start.idle)
    percentiles = np.percentile(latencies, [50, 95, 99]) if latencies else [float("nan")] * 3
    mean_song = statistics.fmean(audio_seconds)
    print(f"machine: {os.cpu_count()} CPUs, load average before {os.getloadavg()}")
    print(f"other processes before the run: {other_cpu:.0f}% of one core; {busiest}")
    print(f"server: vocalsep serve at {address}, exit status {server.returncode}")
    print("| clients | requests | songs | errors | wall s | songs/s | audio s per s | ", end="")
    print("p50 ms | p95 ms | p99 ms | server RSS before MiB | after MiB | ", end="")
    print("machine CPU busy | of it other processes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.clients} | {len(latencies)} | {songs_done[0]} | {len(errors)} | "
        f"{elapsed:.1f} | {songs_done[0] / elapsed:.2f} | "
        f"{songs_done[0] * mean_song / elapsed:.1f} | "
        + " | ".join(f"{1000 * value:.0f}" for value in percentiles)
        + f" | {rss_before / 2**20:.0f} | {rss_after / 2**20:.0f} | {100 * busy / total:.0f}% | "
        f"{100 * max(busy - ours, 0) / total:.0f}% |"
    )
    for error in errors[:5]:
        print(f"error: {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
