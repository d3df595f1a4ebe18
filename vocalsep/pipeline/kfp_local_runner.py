"""Runs ``pipeline.yaml``'s IR the way Kubeflow runs it, on one machine: KFP's own local
orchestrator (``kfp.local`` with ``DockerRunner``), every step in a container of the project's
image (``make image``).

The pipeline is compiled exactly as for a cluster (``kubeflow_runner.compile_pipeline``), then
loaded as a component and run; kfp.local builds each step's executor input, starts the image
with the compiled command (``python -m vocalsep.pipeline.kfp_executor``) and mounts one folder,
the pipeline root, at the same path. So the data, the imported weights and the serving folder
must live under the pipeline root, which the image's user (uid 1000) must be able to write.
kfp.local has no cache: every run executes every step, as a scheduled run on a new data drop
would. It leaves each step's exited container behind; those this run created are removed.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from vocalsep.errors import OrchestratorError
from vocalsep.pipeline.config import PipelineConfig
from vocalsep.pipeline.kubeflow_runner import compile_pipeline

IMAGE_UID = 1000
"""The image's user (Dockerfile ``USER 1000``): it writes every artifact."""
DOCKERD_HINT = "dockerd --bridge=none --iptables=false --ip-forward=false &"
LOG_TAIL_LINES = 20
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TASK_START = re.compile(r"Executing task '([^']+)'")
_TASK_END = re.compile(r"Task '([^']+)' finished with status (\w+)")
_STEP_PROGRESS = re.compile(r"(BaseModel: warm start.*|SdrEvaluator: (NOT )?BLESSED.*)$")


@dataclasses.dataclass(frozen=True)
class StepResult:
    """One step of a run: its task name, final status and wall time."""

    name: str
    status: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class KfpLocalRun:
    """What one run did, and where its full log (every step's container output) is."""

    steps: tuple[StepResult, ...]
    log_path: Path
    pipeline_yaml: Path


def docker_client(image: str) -> Any:
    """A client of a running Docker daemon that has ``image``; never pulls."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        raise OrchestratorError(
            f"no Docker daemon answers ({error}); start one, e.g. `{DOCKERD_HINT}`"
        ) from error
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise OrchestratorError(
            f"the image {image} is not built on this machine: run `make image` (nothing is "
            "pulled from a registry)"
        ) from None
    return client


def paths_outside(config: PipelineConfig, root: Path) -> list[str]:
    """The local paths ``config``'s steps read or write that a container would not see."""
    paths = [dataset.base_folder for dataset in config.data_roots]
    paths.append(config.serving_base_dir)
    if config.imported_model_uri:
        paths.append(config.imported_model_uri)
    return [
        path
        for path in paths
        if "://" not in path and not Path(path).resolve().is_relative_to(root)
    ]


def make_writable_for_image(folders: list[Path]) -> None:
    """Gives the image's user the folders its steps write into.

    As root, they and the folders under them are handed to uid 1000; their files are not
    (steps only add new entries, and a staged dataset's files are hard links whose owner is
    the original's). Otherwise they must already be writable by it, which a folder owned by
    another user and not world-writable is not.
    """
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            for path in [folder, *folder.rglob("*")]:
                if path.is_dir() and not path.is_symlink():
                    os.chown(path, IMAGE_UID, IMAGE_UID)
            continue
        mode = folder.stat()
        if mode.st_uid != IMAGE_UID and not mode.st_mode & 0o002:
            raise OrchestratorError(
                f"{folder} is not writable by the image's user (uid {IMAGE_UID}), which writes "
                f"every artifact: `sudo chown -R {IMAGE_UID} {folder}`, or run as root"
            )


class _StepLog(io.TextIOBase):
    """Stands in for stdout while kfp.local runs: every line to the run's log file, one
    progress line per step to ``echo``, and each step's last lines kept for its error."""

    def __init__(self, log: io.TextIOBase, echo: Any, prefix: str, task_names: list[str]) -> None:
        self._log, self._echo, self._prefix = log, echo, prefix
        # kfp 2.8 logs a task as its component name less a "comp-" prefix that TFX's IR
        # names lack ('FileBasedExampleGen' shows as 'asedExampleGen'): map back.
        self._names = {**{name[5:]: name for name in task_names}, **{n: n for n in task_names}}
        self._partial = ""
        self.current: str | None = None
        self.started = 0.0
        self.tail: list[str] = []
        self.steps: list[StepResult] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._log.write(text)
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._line(_ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        self._log.flush()

    def _say(self, text: str) -> None:
        self._echo.write(f"{self._prefix}{text}\n")
        self._echo.flush()

    def _line(self, line: str) -> None:
        if start := _TASK_START.search(line):
            self.current = self._names.get(start.group(1), start.group(1))
            self.started, self.tail = time.perf_counter(), []
            self._say(f"{self.current}: running in a container")
        elif end := _TASK_END.search(line):
            seconds = time.perf_counter() - self.started
            name = self._names.get(end.group(1), end.group(1))
            self.steps.append(StepResult(name, end.group(2), seconds))
            self._say(f"{name}: {end.group(2).lower()} in {seconds:.0f} s")
        elif self.current is not None:
            self.tail = [*self.tail[-(LOG_TAIL_LINES - 1) :], line.strip()]
            if progress := _STEP_PROGRESS.search(line):
                self._say(progress.group(1))


@contextmanager
def _removing_new_containers(client: Any, image: str) -> Iterator[None]:
    """Removes the exited containers of ``image`` created inside the block."""
    before = {container.id for container in client.containers.list(all=True)}
    try:
        yield
    finally:
        for container in client.containers.list(all=True, filters={"ancestor": image}):
            if container.id not in before and container.status != "running":
                container.remove(force=True)


def run_kfp_local(config: PipelineConfig, image: str, *, prefix: str = "") -> KfpLocalRun:
    """Compiles ``config`` and runs it under ``kfp.local`` with ``DockerRunner``.

    ``config.pipeline_root`` is kfp.local's pipeline root, the one folder the containers see:
    everything else the steps touch must lie under it. Raises ``OrchestratorError`` naming a
    failed step and the last lines of its log.
    """
    root = Path(config.pipeline_root).resolve()
    if outside := paths_outside(config, root):
        raise OrchestratorError(
            f"{', '.join(outside)}: outside {root}, the pipeline root and the one folder "
            "kfp.local mounts into the step containers; put the data, the imported model and "
            "the serving folder under it"
        )
    client = docker_client(image)
    make_writable_for_image([root])

    from kfp import components, local

    pipeline_yaml = compile_pipeline(config, root / "pipeline.yaml", image)
    log_path = root / "logs" / f"kfp-local-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log_path.parent.mkdir(exist_ok=True)
    local.init(runner=local.DockerRunner(), pipeline_root=str(root))
    pipeline = components.load_component_from_file(str(pipeline_yaml))
    echo = sys.stdout
    with log_path.open("w") as log, _removing_new_containers(client, image):
        tasks = list(yaml.safe_load(pipeline_yaml.read_text())["root"]["dag"]["tasks"])
        step_log = _StepLog(log, echo, prefix, tasks)
        sys.stdout = step_log
        try:
            pipeline()
        except RuntimeError as error:
            step = step_log.current or "the pipeline"
            tail = "\n".join(f"    {line}" for line in step_log.tail if line)
            raise OrchestratorError(
                f"step {step} failed ({_ANSI.sub('', str(error))}); last lines of its log "
                f"(all of it in {log_path}):\n{tail}"
            ) from None
        finally:
            sys.stdout = echo
    return KfpLocalRun(tuple(step_log.steps), log_path, pipeline_yaml)


def stage_under_root(source: Path, root: Path, name: str) -> Path:
    """``source`` (a dataset or model folder) under ``root/inputs/name``, where the step
    containers see it: hard links where the file system allows, else copies. Reused when a
    complete copy is already there."""
    target = root / "inputs" / name
    if target.is_dir():
        return target
    partial = target.with_name(f".{name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, partial, copy_function=link_or_copy)
    partial.rename(target)
    return target


@contextmanager
def served_from_image(image: str, serving_base_dir: Path, port: int) -> Iterator[str]:
    """``vocalsep serve`` on ``serving_base_dir`` in a container of ``image`` (host network,
    127.0.0.1:``port``, the folder mounted read-only), as the k8s web/dev overlays run it.
    Yields the address; stops and removes the container on exit."""
    client = docker_client(image)
    folder = str(serving_base_dir.resolve())
    container = client.containers.run(
        image,
        ["vocalsep", "serve", "--model-base", folder, "--host", "127.0.0.1", "--port", str(port)],
        detach=True,
        network_mode="host",
        volumes={folder: {"bind": folder, "mode": "ro"}},
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        container.stop(timeout=30)
        container.remove(force=True)
