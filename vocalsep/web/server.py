"""Runs the page with uvicorn: binds first, says where (and who can reach it), then serves.

The socket is bound before anything is printed, so the address printed is one that answers
(with ``--port 0``, the port the system chose). The terminal shows vocalsep's lines only: the
address, where the work dir is, one line per song that ended and one when it stopped; uvicorn's
per-request access log is off, its warnings and errors still show.

SIGTERM (what Kubernetes sends at every rollout) or Ctrl-C drains first: new songs get 503 and
the readiness probe says not ready, the running songs get ``drain_seconds`` to finish and
otherwise go back to the queue, recorded for the next start; then the server stops. A second
signal ends the grace period at once; a third stops the server without waiting for open
connections (songs still running are recorded as running, and run again at the next start).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

import uvicorn

from vocalsep.web.app import create_app
from vocalsep.web.jobs import FAILED, Job, JobQueue, Limits, SeparatorSource

GRACEFUL_SHUTDOWN_S = 5
"""How long open connections (a download, say) get once the songs are drained."""


@dataclasses.dataclass(frozen=True)
class WebConfig:
    """``vocalsep web``'s settings; ``work_dir`` None means a temporary folder, removed at exit."""

    host: str = "127.0.0.1"
    port: int = 8080
    work_dir: Path | None = None
    max_upload_mb: float = 200.0
    keep_hours: float = 24.0
    limits: Limits = Limits()  # noqa: RUF009 (frozen)
    drain_seconds: float = 20.0


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or an OSError that says which address could not be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as error:
        reason = f"cannot listen on {host} port {port}: {os.strerror(error.errno or 0)}"
        raise OSError(error.errno, reason) from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


def serve(separator: SeparatorSource, config: WebConfig, model: str) -> None:
    """Serves until Ctrl-C or SIGTERM; ``model`` says in words what separates the songs."""
    with contextlib.ExitStack() as stack:
        work_dir = config.work_dir
        if work_dir is None:
            temporary = tempfile.TemporaryDirectory(prefix="vocalsep-web-")
            work_dir = Path(stack.enter_context(temporary))
        queue = JobQueue(
            separator, work_dir, config.keep_hours * 3600, limits=config.limits, on_end=_report
        )
        app = create_app(queue, round(config.max_upload_mb * 2**20))
        listening = stack.enter_context(bind(config.host, config.port))
        host, port = listening.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        reach = (
            "only this machine can reach it; --host 0.0.0.0 opens it to the network"
            if is_loopback(host)
            else "anyone who can reach this machine on that port can use it"
        )
        print(f"vocalsep web: http://{shown}:{port}/ ({reach})", flush=True)
        print(f"vocalsep web: separating with {model}", flush=True)
        print(
            f"vocalsep web: songs under {work_dir}, kept {config.keep_hours:g} h after they end;"
            f" uploads up to {config.max_upload_mb:g} MB; Ctrl-C stops",
            flush=True,
        )
        if queue.resumed:
            print(
                f"vocalsep web: {queue.resumed} songs accepted before the last stop are queued"
                " again, in their order",
                flush=True,
            )
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_config=None,
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            )
        )
        returned = _run_until_stopped(server, listening, queue, config.drain_seconds)
        queued = queue.unfinished()  # a second signal leaves songs running: they count too
        kept = (
            f"{queued} queued songs dropped with the temporary work dir (--work-dir keeps them)"
            if config.work_dir is None
            else f"{queued} queued songs kept for the next start"
        )
        unfinished = f", {returned} of them unfinished at the stop" if returned else ""
        print(f"vocalsep web: stopped; {kept}{unfinished}", flush=True)


def _run_until_stopped(
    server: uvicorn.Server, listening: socket.socket, queue: JobQueue, drain_seconds: float
) -> int:
    """Serves on a thread until SIGINT or SIGTERM, drains the queue, then shuts down (a second
    signal cuts the drain short, a third the shutdown). Returns how many running songs went
    back to the queue.

    Run on the main thread, uvicorn raises the signal again once it has shut down, which would
    end the process before the temporary work dir is removed; this returns instead.
    """
    drained: list[int] = []
    draining: list[threading.Thread] = []

    def drain() -> None:
        drained.append(queue.drain(drain_seconds)[0])
        server.should_exit = True

    signals = 0

    def stop(signal_number: int, frame: object) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            draining.append(threading.Thread(target=drain, name="vocalsep-web-drain", daemon=True))
            draining[0].start()
        elif signals == 2:
            queue.hurry()
        else:
            server.force_exit = server.should_exit = True

    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, name="uvicorn")
    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.5)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return drained[0] if drained else 0


def _report(job: Job) -> None:
    if job.state == FAILED:
        print(f"vocalsep web: error: {job.error}", file=sys.stderr, flush=True)
        return
    length = "" if job.seconds_total is None else f" ({job.seconds_total:.1f} s of audio)"
    print(f"vocalsep web: {job.name}: separated{length}", flush=True)
