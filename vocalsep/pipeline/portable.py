"""ExampleGen and Transform on Beam's portable runner, every DoFn in SDK workers of the image.

The pipeline is submitted here (``PortableRunner`` with the job service in-process,
``--job_endpoint=embed``) and its environment is EXTERNAL: a worker pool, the one a Flink
task manager runs as a sidecar, starts an SDK worker (``vocalsep-beam-boot``) for every
worker the runner asks for. ``worker_pool_in_image`` runs that pool in a container of the
project's image on 127.0.0.1 (host network), with the folders the stages read and write
mounted at the same paths and written as this process's user.

The embedded job service runs one SDK worker per stage; Flink runs one per task slot.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vocalsep import logs
from vocalsep.beam_worker import POOL_COMMAND
from vocalsep.errors import BeamWorkerError, OrchestratorError
from vocalsep.pipeline import LOCAL_BEAM_RUNNERS
from vocalsep.pipeline.config import PipelineConfig, beam_sdk_image

WORKER_POOL_PORT = 50000
PORTABLE_UNDER_KFP_LOCAL = (
    "--beam-runner portable runs with --orchestrator local here (kfp.local's step containers "
    "have no host network to reach a worker pool); for a cluster, compile with "
    "`vocalsep pipeline compile --beam-runner portable --worker-pool HOST:PORT`"
)
POOL_START_DEADLINE_S = 60.0
# Everything the stages' DoFns import, checked in the image before a pipeline is submitted.
WORKER_IMPORTS = (
    "import vocalsep.beam_worker, vocalsep.components.example_gen.executor, "
    "vocalsep.transforms.preprocessing"
)


def portable_beam_args(worker_pool: str, image: str) -> tuple[str, ...]:
    """Beam args for the portable runner with its SDK workers from the pool at ``worker_pool``,
    a pool of ``image``. Naming the image's SDK container tells TFX the workers have its code,
    so it builds and stages no package of itself (an EXTERNAL environment starts no container).
    """
    return (
        "--runner=PortableRunner",
        "--job_endpoint=embed",
        "--environment_type=EXTERNAL",
        f"--environment_config={worker_pool}",
        f"--sdk_container_image={beam_sdk_image(image)}",
        logs.BEAM_WORKER_PLUGIN,
    )


def _refused(address: str) -> OSError | None:
    """Why nothing accepts a connection at ``address`` now; None when something does."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise BeamWorkerError(f"a worker pool address is HOST:PORT, got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return None
    except OSError as error:
        return error


def check_worker_pool(address: str, deadline_s: float = 5.0) -> None:
    """Raises ``BeamWorkerError`` unless something accepts connections at ``address``."""
    stop = time.monotonic() + deadline_s
    while (error := _refused(address)) is not None:
        if time.monotonic() > stop:
            raise BeamWorkerError(
                f"no Beam worker pool answers at {address} ({error.strerror or error}): "
                f"start one (`{POOL_COMMAND} --address {address}` in the image) or leave "
                "the address out to have one started"
            )
        time.sleep(0.2)


def stage_folders(config: PipelineConfig) -> tuple[list[str], list[str]]:
    """The local folders ExampleGen and Transform write (the pipeline root) and only read (the
    data, the schema), as ``(writable, read_only)``; buckets need no mount."""

    def local(folders: set[str]) -> list[str]:
        return sorted({str(Path(f).resolve()) for f in folders if "://" not in f})

    read = {root.base_folder for root in config.data_roots}
    if config.schema_dir:
        read.add(config.schema_dir)
    return local({config.pipeline_root}), local(read)


def _check_image_runs_our_code(client: Any, image: str) -> None:
    """Imports what the DoFns import in a throw-away container of ``image`` (no network)."""
    import docker

    container = client.containers.create(
        image, ["python", "-c", WORKER_IMPORTS], network_mode="none"
    )
    try:
        container.start()
        if container.wait(timeout=POOL_START_DEADLINE_S)["StatusCode"] == 0:
            return
        lines = container.logs(stdout=False).decode(errors="replace").strip().splitlines()
        detail = lines[-1] if lines else "no output"
    except docker.errors.APIError as error:  # no `python` to start, for one
        detail = str(error.explanation or error)
    finally:
        container.remove(force=True)
    raise BeamWorkerError(
        f"{image} cannot run vocalsep's Beam workers ({detail}): build the pipeline image "
        "with `make image`"
    )


@contextmanager
def worker_pool_in_image(
    image: str,
    folders: Sequence[str],
    read_only: Sequence[str] = (),
    port: int = WORKER_POOL_PORT,
    log_path: Path | None = None,
) -> Iterator[str]:
    """A worker pool in a container of ``image`` on 127.0.0.1:``port`` for the block; yields
    its address. ``folders`` (writable) and ``read_only`` are mounted at their own paths; the
    pool's log is written to ``log_path`` when it stops."""
    from vocalsep.pipeline.kfp_local_runner import docker_client

    address = f"127.0.0.1:{port}"
    if _refused(address) is None:
        raise BeamWorkerError(
            f"port {port} is taken: pass that pool's address to use it, or stop what listens there"
        )
    try:
        client = docker_client(image)
    except OrchestratorError as error:
        raise BeamWorkerError(str(error)) from None
    _check_image_runs_our_code(client, image)
    for folder in folders:
        Path(folder).mkdir(parents=True, exist_ok=True)
    container = client.containers.run(
        image,
        [POOL_COMMAND, "--address", address],
        detach=True,
        network_mode="host",
        user=f"{os.getuid()}:{os.getgid()}",
        environment={"HOME": "/tmp"},
        volumes={
            **{folder: {"bind": folder, "mode": "ro"} for folder in read_only},
            **{folder: {"bind": folder, "mode": "rw"} for folder in folders},
        },
        labels={"vocalsep.role": "beam-worker-pool"},
    )
    try:
        _wait_until_listening(container, address)
        yield address
    finally:
        container.stop(timeout=10)
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_bytes(container.logs())
        container.remove(force=True)


def _wait_until_listening(container: Any, address: str) -> None:
    stop = time.monotonic() + POOL_START_DEADLINE_S
    while _refused(address) is not None:
        container.reload()
        if container.status == "exited" or time.monotonic() > stop:
            tail = container.logs(tail=10).decode(errors="replace")
            raise BeamWorkerError(f"the Beam worker pool did not start on {address}:\n{tail}")
        time.sleep(0.5)


@contextmanager
def beam_stages_on(
    config: PipelineConfig,
    beam_runner: str,
    image: str,
    worker_pool: str = "",
    log_path: Path | None = None,
) -> Iterator[PipelineConfig]:
    """``config`` with ExampleGen and Transform on ``beam_runner`` (one of
    ``LOCAL_BEAM_RUNNERS``) for the block: ``direct`` as it is; ``portable`` with its SDK
    workers from the pool at ``worker_pool``, or else from a pool in ``image`` started for the
    block (its log at ``log_path``)."""
    if beam_runner not in LOCAL_BEAM_RUNNERS:
        raise BeamWorkerError(
            f"beam runner must be one of {LOCAL_BEAM_RUNNERS}, got {beam_runner!r}"
        )
    if beam_runner == "direct":
        yield config
        return
    if worker_pool:
        check_worker_pool(worker_pool)
        yield dataclasses.replace(config, beam_pipeline_args=portable_beam_args(worker_pool, image))
        return
    writable, read_only = stage_folders(config)
    with worker_pool_in_image(image, writable, read_only, log_path=log_path) as address:
        yield dataclasses.replace(config, beam_pipeline_args=portable_beam_args(address, image))
