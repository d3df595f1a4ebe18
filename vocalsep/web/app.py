"""The page and its JSON API (Starlette): submit a song, follow its job, fetch its tracks.

Everything the page uses is served from ``static/`` here (no build step, nothing from other
sites; the Content-Security-Policy says so to the browser). Errors are JSON
``{"error": "<one line>", "type": "<vocalsep error class>"}`` with the message the CLI prints.
The API is described in the README ("The web page").
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vocalsep.errors import VocalsepError
from vocalsep.separator import AUDIO_FORMATS
from vocalsep.web import upload
from vocalsep.web.jobs import Job, JobNotFoundError, JobQueue, RefusedError, describe_error

STATIC = Path(__file__).parent / "static"
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "png": "image/png"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(queue: JobQueue, max_upload_bytes: int) -> ASGIApp:
    """The web app around ``queue``, which it starts and stops with the server."""

    async def info(request: Request) -> Response:
        limits = queue.limits
        return JSONResponse(
            {
                "max_upload_bytes": max_upload_bytes,
                "formats": AUDIO_FORMATS,
                "max_minutes": limits.max_minutes,
                "max_queue": limits.max_queue,
                "max_per_client": limits.max_per_client,
            }
        )

    async def ready(request: Request) -> Response:
        """The readiness probe: not ready while draining for a stop, so no new songs come."""
        if queue.draining:
            return JSONResponse({"ready": False, "reason": "stopping"}, status_code=503)
        return JSONResponse({"ready": True})

    async def submit(request: Request) -> Response:
        client = request.client.host if request.client else ""
        declared = request.headers.get("content-length", "")
        upload_bytes = int(declared) if declared.isdigit() else max_upload_bytes
        try:
            job_id, folder = await run_in_threadpool(
                queue.reserve, client, min(upload_bytes, max_upload_bytes + upload.ENVELOPE_BYTES)
            )
        except RefusedError as error:
            return _refused(str(error), error)
        try:
            song = await upload.receive(
                request.headers.get("content-type"),
                request.headers.get("content-length"),
                request.stream(),
                folder,
                max_upload_bytes,
            )
        except upload.UploadError as error:
            queue.release(job_id)
            return _error(str(error), error, error.status)
        except ClientDisconnect:
            queue.release(job_id)
            return Response(status_code=400)
        except BaseException:
            queue.release(job_id)
            raise
        try:
            job = await run_in_threadpool(queue.submit, job_id, song.name, song.path)
        except RefusedError as error:
            return _refused(describe_error(error, song.path, song.name), error)
        except VocalsepError as error:
            return _error(describe_error(error, song.path, song.name), error, 422)
        headers = {"Location": f"/api/jobs/{job.id}"}
        return JSONResponse(_describe(queue, job), status_code=202, headers=headers)

    async def status(request: Request) -> Response:
        return JSONResponse(_describe(queue, queue.get(request.path_params["job_id"])))

    async def track_file(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        filename = PurePosixPath(request.path_params["filename"])
        track, extension = filename.stem, filename.suffix.lstrip(".")
        if extension == "png":
            path = queue.spectrogram_file(job_id, track)
            return FileResponse(path, media_type=MEDIA_TYPES["png"])
        path = await run_in_threadpool(queue.track_file, job_id, track, extension)
        download = f"{PurePosixPath(queue.get(job_id).name).stem} - {track}.{extension}"
        return FileResponse(path, media_type=MEDIA_TYPES[extension], filename=download)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        queue.start()
        try:
            yield
        finally:
            queue.stop()

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api", info),
            Route("/api/ready", ready),
            Route("/api/jobs", submit, methods=["POST"]),
            Route("/api/jobs/{job_id}", status),
            Route("/api/jobs/{job_id}/{filename}", track_file),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={
            JobNotFoundError: _not_found,
            VocalsepError: _failed,
            HTTPException: _http_error,
        },
        lifespan=lifespan,
    )
    return _SecurityHeaders(app)


def _describe(queue: JobQueue, job: Job) -> dict[str, Any]:
    """A job as the API shows it; ``tracks`` (mix and each stem) once it is done."""
    base = f"/api/jobs/{job.id}"
    return {
        "id": job.id,
        "name": job.name,
        "state": job.state,
        "ahead": queue.ahead(job),
        "seconds_done": round(job.seconds_done, 3),
        "seconds_total": job.seconds_total,
        "error": job.error,
        "tracks": {
            track: {
                "spectrogram": f"{base}/{track}.png",
                **{name: f"{base}/{track}.{name}" for name in AUDIO_FORMATS},
            }
            for track in job.tracks
        },
    }


def _error(message: str, error: Exception, status: int) -> JSONResponse:
    return JSONResponse({"error": message, "type": type(error).__name__}, status_code=status)


def _refused(message: str, error: RefusedError) -> JSONResponse:
    """A limit's answer; ``Retry-After`` where waiting helps."""
    retry = error.retry_after_s
    headers = None if retry is None else {"Retry-After": str(retry)}
    body: dict[str, Any] = {"error": message, "type": type(error).__name__}
    if retry is not None:
        body["retry_after_s"] = retry
    return JSONResponse(body, status_code=error.status, headers=headers)


async def _not_found(request: Request, error: Exception) -> Response:
    return _error(str(error), error, 404)


async def _failed(request: Request, error: Exception) -> Response:
    """An encoder failing on a download, say: the CLI's message, as a server error."""
    return _error(str(error), error, 500)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return _error(f"{request.url.path}: {error.detail}", error, error.status_code)


class _SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
