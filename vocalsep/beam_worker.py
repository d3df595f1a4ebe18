"""What runs on a Beam worker of ours, in the project's image or in a local worker process.

Importing this module quiets the process (``--beam_plugin=vocalsep.beam_worker``, see
``vocalsep.logs``). It also holds the two programs a cluster starts in the image:

- ``vocalsep-beam-boot``: Beam's SDK container contract (what ``/opt/apache/beam/boot`` does in
  Beam's own SDK images, which cannot be pulled here): asks the runner's provision service for
  the pipeline options, then becomes ``sdk_worker_main``. Flink's DOCKER environment and
  Dataflow start the image with exactly these flags.
- ``vocalsep-beam-worker-pool``: the worker pool an EXTERNAL environment names (Flink's
  sidecar, or ``vocalsep demo --beam-runner portable``): it starts one boot per worker the
  runner asks for. Unlike Beam's ``worker_pool_main`` it binds only the address it is given.

The project's code is in the image, so staged artifacts are not installed; the boot names any
it is handed, since a pipeline that needs them was built for another environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import signal
import sys
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path

from vocalsep import logs

logs.quiet_process()

_LOGGER = logging.getLogger("vocalsep.beam_worker")
DEFAULT_POOL_ADDRESS = "127.0.0.1:50000"
"""Flink's worker-pool sidecar listens on port 50000 of its pod by convention."""
BOOT_COMMAND = "vocalsep-beam-boot"
POOL_COMMAND = "vocalsep-beam-worker-pool"
SUBMISSION_REPORT = "submission_environment_dependencies.txt"
"""Beam stages the submitting environment's package list with every job: a report, not code."""
POOL_STOPPED = "Beam worker pool stopped, reaped"
BOOT_PATH = "/opt/apache/beam/boot"
"""Where runners expect the boot in an SDK container image (Dockerfile links it there)."""


def boot_environment(
    worker_id: str,
    provision_endpoint: str,
    logging_endpoint: str,
    control_endpoint: str,
    semi_persistent_directory: str,
) -> dict[str, str]:
    """The environment ``sdk_worker_main`` reads, from the runner's provision info."""
    import grpc
    from apache_beam.portability import common_urns
    from apache_beam.portability.api import (
        beam_provision_api_pb2,
        beam_provision_api_pb2_grpc,
        beam_runner_api_pb2,
        endpoints_pb2,
    )
    from google.protobuf import json_format, text_format

    with grpc.insecure_channel(provision_endpoint) as channel:
        info = (
            beam_provision_api_pb2_grpc.ProvisionServiceStub(channel)
            .GetProvisionInfo(
                beam_provision_api_pb2.GetProvisionInfoRequest(),
                metadata=[("worker_id", worker_id)],
                timeout=60,
            )
            .info
        )
    staged = sorted(
        beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(
            dependency.role_payload
        ).staged_name
        for dependency in info.dependencies
        if dependency.role_urn == common_urns.artifact_roles.STAGING_TO.urn
    )
    staged = [name for name in staged if name != SUBMISSION_REPORT]
    if staged:
        _LOGGER.warning("not installing staged artifacts, the image has the code: %s", staged)

    def descriptor(url: str) -> str:
        return text_format.MessageToString(endpoints_pb2.ApiServiceDescriptor(url=url))

    environment = {
        "WORKER_ID": worker_id,
        "PIPELINE_OPTIONS": json_format.MessageToJson(info.pipeline_options),
        "SEMI_PERSISTENT_DIRECTORY": semi_persistent_directory,
        "LOGGING_API_SERVICE_DESCRIPTOR": descriptor(info.logging_endpoint.url or logging_endpoint),
        "CONTROL_API_SERVICE_DESCRIPTOR": descriptor(info.control_endpoint.url or control_endpoint),
        "RUNNER_CAPABILITIES": " ".join(info.runner_capabilities),
    }
    if info.retrieval_token:
        environment["RETRIEVAL_TOKEN"] = info.retrieval_token
    return environment


def boot_main(argv: Sequence[str] | None = None) -> None:
    """``vocalsep-beam-boot --id=… --provision_endpoint=… --control_endpoint=…``."""
    parser = argparse.ArgumentParser(prog=BOOT_COMMAND, description=boot_main.__doc__)
    parser.add_argument("--id", required=True, dest="worker_id")
    parser.add_argument("--provision_endpoint", required=True)
    parser.add_argument("--control_endpoint", default="")
    parser.add_argument("--logging_endpoint", default="")
    parser.add_argument("--artifact_endpoint", default="")
    parser.add_argument("--semi_persistent_directory", default="/tmp")
    args, _ = parser.parse_known_args(argv)
    environment = boot_environment(
        args.worker_id,
        args.provision_endpoint,
        args.logging_endpoint,
        args.control_endpoint,
        args.semi_persistent_directory,
    )
    command = [sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"]
    os.execve(sys.executable, command, {**os.environ, **environment})


def pool_main(argv: Sequence[str] | None = None) -> None:
    """``vocalsep-beam-worker-pool [--address HOST:PORT]``: serves until SIGTERM or SIGINT."""
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

    parser = argparse.ArgumentParser(prog=POOL_COMMAND, description=pool_main.__doc__)
    parser.add_argument("--address", default=DEFAULT_POOL_ADDRESS, help="default: %(default)s")
    parser.add_argument(
        "--boot",
        default=str(Path(sys.executable).with_name(BOOT_COMMAND)),
        help="the program started per worker with the SDK container contract's flags "
        "(default: %(default)s)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    if not server.add_insecure_port(args.address):
        raise SystemExit(f"{POOL_COMMAND}: cannot listen on {args.address}")
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(
        BeamFnExternalWorkerPoolServicer(use_process=True, container_executable=args.boot), server
    )
    # As a container's first process, SIGTERM would otherwise be ignored until SIGKILL.
    signal.signal(signal.SIGTERM, lambda *_: server.stop(grace=5))
    server.start()
    _LOGGER.info(
        "Beam worker pool listening on %s, starting %s per worker", args.address, args.boot
    )
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(grace=5)
    _log_finished_workers()


def _log_finished_workers() -> None:
    """Reaps the workers that have exited and logs the largest one's peak memory (what to
    size a worker's memory by; scripts/bench_ingest.py reads it)."""
    reaped = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        reaped += 1
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    _LOGGER.info("%s %d workers; the largest peak RSS %.0f MiB", POOL_STOPPED, reaped, peak_mib)
