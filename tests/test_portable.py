"""The Beam stages as a cluster runs them: Beam's portable runner, every DoFn in SDK workers that
a worker pool starts through ``vocalsep-beam-boot`` (the SDK container contract), and the
Flink and Dataflow options that ship no code because the workers run the project's image.

Without Docker: the options and job graphs for Flink and Dataflow (built, never submitted), a
worker pool of this venv running a real portable pipeline, and the errors. With Docker and the
image (skipped without them, failed where VOCALSEP_CONTAINER_TESTS=1, as in CI): the data
stage on the portable runner with its workers in the image, compared with the DirectRunner;
DoFns that can see they run in the image; the Beam SDK image started the way Flink's DOCKER
environment and Dataflow start it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import portpicker
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.dataflow.internal import apiclient
from apache_beam.runners.portability.portable_runner import PortableRunner
from apache_beam.transforms import environments
from tfx import v1 as tfx
from tfx.utils import dependency_utils

from vocalsep import cli
from vocalsep.audio import dsp, synth
from vocalsep.beam_worker import BOOT_PATH, POOL_COMMAND
from vocalsep.data import roots
from vocalsep.data.config import IngestConfig, samples_for_frames
from vocalsep.data.examples import parse_example
from vocalsep.errors import BeamWorkerError, DemoError
from vocalsep.pipeline import demo, kubeflow_runner, portable
from vocalsep.pipeline.config import DEFAULT_IMAGE, beam_sdk_image, local_beam_args
from vocalsep.pipeline.data_stage import data_pipeline
from vocalsep.pipeline.kubeflow_runner import IMAGE_SCHEMA_DIR
from vocalsep.transforms import preprocessing

SDK_IMAGE = beam_sdk_image(DEFAULT_IMAGE)
FRAMES = 64
SEGMENT = samples_for_frames(FRAMES, dsp.StftConfig())


def _environment(args: tuple[str, ...]) -> beam_runner_api_pb2.Environment:
    """The one environment of a small job graph built as the portable runners build it."""
    pipeline = beam.Pipeline(options=PipelineOptions(list(args)))
    _ = pipeline | beam.Create(["a"]) | beam.Map(len)
    proto = PortableRunner.get_proto_pipeline(pipeline, PipelineOptions(list(args)))
    (environment,) = {
        env.SerializeToString(): env for env in proto.components.environments.values()
    }.values()
    return environment


def test_portable_args_run_every_dofn_in_the_named_pool() -> None:
    args = kubeflow_runner.beam_args("portable", worker_pool="127.0.0.1:50001")
    assert args == portable.portable_beam_args("127.0.0.1:50001", DEFAULT_IMAGE)
    environment = _environment(args)
    assert environment.urn == common_urns.environments.EXTERNAL.urn
    payload = beam_runner_api_pb2.ExternalPayload.FromString(environment.payload)
    assert payload.endpoint.url == "127.0.0.1:50001"
    assert "--job_endpoint=embed" in args  # the job service in the submitting process
    with pytest.raises(ValueError, match="worker_pool"):
        kubeflow_runner.beam_args("portable")


def test_flink_runs_our_dofns_in_the_sidecar_pool_or_the_images_sdk_container() -> None:
    sidecar = kubeflow_runner.beam_args("flink", flink_master="flink-jobmanager:8081")
    assert "--environment_type=LOOPBACK" not in " ".join(sidecar)
    environment = _environment(sidecar)
    assert environment.urn == common_urns.environments.EXTERNAL.urn
    payload = beam_runner_api_pb2.ExternalPayload.FromString(environment.payload)
    assert payload.endpoint.url == kubeflow_runner.FLINK_SIDECAR_POOL == "localhost:50000"

    docker = kubeflow_runner.beam_args(
        "flink", flink_master="flink-jobmanager:8081", flink_environment="docker"
    )
    environment = _environment(docker)
    assert environment.urn == common_urns.environments.DOCKER.urn
    payload = beam_runner_api_pb2.DockerPayload.FromString(environment.payload)
    assert (
        payload.container_image == SDK_IMAGE == "ghcr.io/vocalsep/vocalsep-pipeline-beam-sdk:0.1.0"
    )
    with pytest.raises(ValueError, match="flink_master"):
        kubeflow_runner.beam_args("flink")
    with pytest.raises(ValueError, match="environment"):
        kubeflow_runner.beam_args("flink", flink_master="f:8081", flink_environment="process")


def test_dataflow_starts_the_images_sdk_container_and_stages_no_code() -> None:
    args = kubeflow_runner.beam_args(
        "dataflow", project="p", region="europe-west4", temp_location="gs://b/tmp"
    )
    options = PipelineOptions(list(args))
    # The job graph as DataflowRunner builds it, short of Google Cloud (a Pipeline with these
    # options already looks up the staging bucket, so the graph is built without them): the
    # default environment is the image Dataflow's options name.
    image = apiclient.get_container_image_from_options(options)
    assert image == SDK_IMAGE
    pipeline = beam.Pipeline()
    _ = pipeline | beam.Create(["a"]) | beam.Map(len)
    proto = pipeline.to_runner_api(
        default_environment=environments.DockerEnvironment.from_container_image(image)
    )
    for environment in proto.components.environments.values():
        assert environment.urn == common_urns.environments.DOCKER.urn
        payload = beam_runner_api_pb2.DockerPayload.FromString(environment.payload)
        assert payload.container_image == SDK_IMAGE
    staged = environments.python_sdk_dependencies(options)
    names = {
        beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(a.role_payload).staged_name
        for a in staged
    }
    assert names <= {"submission_environment_dependencies.txt"}  # no SDK, no package of ours
    with pytest.raises(ValueError, match="project, region"):
        kubeflow_runner.beam_args("dataflow", temp_location="gs://b/tmp")


def test_tfx_stages_no_package_of_itself_where_workers_run_the_image() -> None:
    for args in (
        kubeflow_runner.beam_args("portable", worker_pool="localhost:50000"),
        kubeflow_runner.beam_args("flink", flink_master="f:8081"),
        kubeflow_runner.beam_args("flink", flink_master="f:8081", flink_environment="docker"),
        kubeflow_runner.beam_args("dataflow", project="p", region="r", temp_location="gs://b"),
    ):
        assert dependency_utils.make_beam_dependency_flags(list(args)) == list(args)


def test_compile_puts_the_portable_and_flink_options_in_pipeline_yaml(tmp_path: Path) -> None:
    output = tmp_path / "flink.yaml"
    code = cli.main(
        [
            "pipeline", "compile", "-o", str(output), "--beam-runner", "flink",
            "--flink-master", "flink-jobmanager:8081",
        ]
    )  # fmt: skip
    assert code == 0
    text = output.read_text()
    assert "--environment_type=EXTERNAL" in text and "--environment_config=localhost:50000" in text
    assert f"--sdk_container_image={SDK_IMAGE}" in text


@contextmanager
def _pool_of_this_venv(boot: str | None = None) -> Iterator[str]:
    """``vocalsep-beam-worker-pool`` of this venv on a free loopback port."""
    address = f"127.0.0.1:{portpicker.pick_unused_port()}"
    command = [str(Path(sys.executable).with_name(POOL_COMMAND)), "--address", address]
    if boot:
        command += ["--boot", boot]
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        portable.check_worker_pool(address, deadline_s=60.0)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)


def _run_where(address: str, out: Path, probes: dict[str, list[str]]) -> dict[str, list[str]]:
    """Runs ``os.getenv`` (probe "getenv") or ``os.path.exists`` (probe "exists") on each
    value in SDK workers of the pool at ``address``; returns what the workers saw, as they
    wrote it to ``out``. Standard functions: the workers cannot import this test module."""
    functions = {"getenv": os.getenv, "exists": os.path.exists}
    args = [*portable.portable_beam_args(address, DEFAULT_IMAGE)]
    with beam.Pipeline(options=PipelineOptions(args)) as pipeline:
        for name, values in probes.items():
            _ = (
                pipeline
                | f"Create {name}" >> beam.Create(values)
                | f"Map {name}" >> beam.Map(functions[name])
                | f"Write {name}" >> beam.io.WriteToText(str(out / name), shard_name_template="")
            )
    return {name: sorted((out / name).read_text().split()) for name in probes}


def test_the_pool_starts_each_sdk_worker_through_the_boot(tmp_path: Path) -> None:
    assert "WORKER_ID" not in os.environ
    with _pool_of_this_venv() as address:
        seen = _run_where(address, tmp_path, {"getenv": ["WORKER_ID", "SEMI_PERSISTENT_DIRECTORY"]})
    # Both are set by vocalsep-beam-boot from the runner's flags, in the worker's process only.
    (directory, worker) = seen["getenv"]
    assert directory == "/tmp"
    assert worker.startswith("worker_")


def test_an_unreachable_pool_and_a_bad_address_are_clear_errors() -> None:
    port = portpicker.pick_unused_port()
    with pytest.raises(BeamWorkerError, match=f"no Beam worker pool answers at 127.0.0.1:{port}"):
        portable.check_worker_pool(f"127.0.0.1:{port}", deadline_s=0.5)
    with pytest.raises(BeamWorkerError, match="HOST:PORT"):
        portable.check_worker_pool("localhost")


def test_portable_stages_run_with_the_local_orchestrator_only(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match="--orchestrator local"):
        demo.run_demo(tmp_path, orchestrator="kfp-local", beam_runner="portable")
    config = demo.demo_config(tmp_path)
    with (
        pytest.raises(BeamWorkerError, match="must be one of"),
        portable.beam_stages_on(config, "flink", DEFAULT_IMAGE),
    ):
        pass
    with portable.beam_stages_on(config, "direct", DEFAULT_IMAGE) as unchanged:
        assert unchanged == config
    assert demo.default_work_folder("local", "portable") == "vocalsep-demo-portable"


def test_stage_folders_are_the_root_to_write_and_the_data_to_read_not_buckets(
    tmp_path: Path,
) -> None:
    config = demo.demo_config(tmp_path, data=[str(tmp_path / "music"), "gs://bucket/drops"])
    assert portable.stage_folders(config) == (
        [str(tmp_path / "pipeline")],
        [str(tmp_path / "music")],
    )


# ---- in the image --------------------------------------------------------------------------


def _need_containers() -> Any:
    from test_kfp_local import _need_containers as need

    need()
    import docker

    return docker.from_env()


def _newest(folder: Path) -> Path:
    return max(folder.iterdir(), key=lambda path: int(path.name))


def _data_stage(work: Path, data: Path, beam_args: tuple[str, ...]) -> dict[str, Path]:
    pipeline = data_pipeline(
        [roots.DatasetRoot(str(data), split_rule="list", validation_tracks=("synth_003",))],
        str(work / "root"),
        str(work / "mlmd.sqlite"),
        ingest=IngestConfig(segment_samples=SEGMENT),
        beam_pipeline_args=beam_args,
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    root = work / "root"
    return {
        "examples": _newest(root / "FileBasedExampleGen" / "examples"),
        "graph": _newest(root / "Transform" / "transform_graph"),
        "transformed": _newest(root / "Transform" / "transformed_examples"),
    }


@pytest.fixture(scope="module")
def stage_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The data stage on one dataset twice: DirectRunner, and portable with workers in the
    image (a pool this test starts, as `vocalsep demo --beam-runner portable` does)."""
    _need_containers()
    work = tmp_path_factory.mktemp("portable")
    synth.write_dataset(work / "data", 4, 3.0, seed=23, layout="hq")
    direct = _data_stage(work / "direct", work / "data", local_beam_args(2))
    log = work / "beam-workers.log"
    with portable.worker_pool_in_image(
        DEFAULT_IMAGE, [str(work / "portable")], [str(work / "data")], log_path=log
    ) as address:
        on_pool = _data_stage(
            work / "portable", work / "data", portable.portable_beam_args(address, DEFAULT_IMAGE)
        )
    return {"direct": direct, "portable": on_pool, "log": log.read_text(), "work": work}


def _records(folder: Path) -> list[bytes]:
    files = sorted(str(path) for path in folder.glob("*.gz"))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _examples(run: dict[str, Path], split: str) -> dict[tuple[str, int], dict[str, Any]]:
    parsed = (parse_example(r) for r in _records(run["examples"] / f"Split-{split}"))
    return {(e["track_id"], e["segment_index"]): e for e in parsed}


def _transformed(run: dict[str, Path]) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    spec = tft.TFTransformOutput(str(run["graph"])).transformed_feature_spec()
    decoded = (
        {k: v.numpy() for k, v in tf.io.parse_single_example(r, spec).items()}
        for r in _records(run["transformed"] / "Split-train")
    )
    return {(e["track_id"].decode(), int(e["segment_index"])): e for e in decoded}


def test_portable_examples_equal_the_direct_runners(stage_runs: dict[str, Any]) -> None:
    for split in ("train", "eval"):
        direct = _examples(stage_runs["direct"], split)
        on_pool = _examples(stage_runs["portable"], split)
        assert direct and direct.keys() == on_pool.keys()
        for key, example in direct.items():
            for name, value in example.items():
                np.testing.assert_array_equal(on_pool[key][name], value, err_msg=f"{key} {name}")
    summaries = [(run["examples"] / "summary.json").read_text() for run in (
        stage_runs["direct"], stage_runs["portable"])]  # fmt: skip
    assert summaries[0] == summaries[1]


def test_portable_transform_equals_the_direct_runners(stage_runs: dict[str, Any]) -> None:
    direct, on_pool = _transformed(stage_runs["direct"]), _transformed(stage_runs["portable"])
    assert direct and direct.keys() == on_pool.keys()
    statistics = {preprocessing.MEAN_FEATURE, preprocessing.SCALE_FEATURE}
    for key, example in direct.items():
        for name, value in example.items():
            if name in statistics:  # sums over shards: the order of additions may differ
                np.testing.assert_allclose(on_pool[key][name], value, rtol=1e-5, atol=1e-7)
            else:
                np.testing.assert_array_equal(on_pool[key][name], value, err_msg=f"{key} {name}")


def test_the_stage_workers_were_booted_in_the_image(stage_runs: dict[str, Any]) -> None:
    log = stage_runs["log"]
    assert "Beam worker pool listening on 127.0.0.1:" in log
    # ExampleGen and Transform are two Beam jobs: a worker each, started through the boot.
    assert log.count("Starting worker with command ['/opt/venv/bin/vocalsep-beam-boot'") >= 2
    assert "not installing staged artifacts" not in log  # nothing was staged: TFX knew
    # The files the workers wrote belong to this process's user, not the image's.
    examples = stage_runs["portable"]["examples"]
    assert {path.stat().st_uid for path in examples.rglob("*")} == {os.getuid()}


def test_dofns_see_they_run_in_the_image(tmp_path: Path) -> None:
    _need_containers()
    with portable.worker_pool_in_image(DEFAULT_IMAGE, [str(tmp_path)]) as address:
        seen = _run_where(address, tmp_path, {"exists": [BOOT_PATH, IMAGE_SCHEMA_DIR]})
    assert seen["exists"] == ["True", "True"]
    assert not Path(BOOT_PATH).exists() and not Path(IMAGE_SCHEMA_DIR).exists()  # not here


def test_the_sdk_image_boots_workers_as_flink_docker_and_dataflow_start_it(
    tmp_path: Path,
) -> None:
    client = _need_containers()
    attributes = client.images.get(SDK_IMAGE).attrs["Config"]
    assert attributes["Entrypoint"] == [BOOT_PATH]
    # Each worker the runner asks for: `docker run <sdk image> --id=… --provision_endpoint=…`,
    # as Flink's DockerEnvironmentFactory runs it (host network, the output folder mounted).
    boot = tmp_path / "docker-boot"
    boot.write_text(
        "#!/bin/sh\nexec docker run --rm --network host "
        f'-v {tmp_path}:{tmp_path} {SDK_IMAGE} "$@"\n'
    )
    boot.chmod(0o755)
    with _pool_of_this_venv(str(boot)) as address:
        seen = _run_where(address, tmp_path, {"exists": [IMAGE_SCHEMA_DIR], "getenv": ["HOME"]})
    assert seen == {"exists": ["True"], "getenv": ["/root"]}  # in the image, as root


def test_an_image_without_vocalsep_is_named_before_anything_runs(tmp_path: Path) -> None:
    _need_containers()
    with (
        pytest.raises(BeamWorkerError, match="cannot run vocalsep's Beam workers"),
        portable.worker_pool_in_image("vocalsep/debian-python:bookworm", [str(tmp_path)]),
    ):
        pass


def test_a_missing_image_names_the_command_that_builds_it(tmp_path: Path) -> None:
    _need_containers()
    with (
        pytest.raises(BeamWorkerError, match="make image"),
        portable.worker_pool_in_image("vocalsep/not-built:0", [str(tmp_path)]),
    ):
        pass


def test_a_taken_port_is_refused_not_shared(tmp_path: Path) -> None:
    _need_containers()
    with _pool_of_this_venv() as address:
        port = int(address.rpartition(":")[2])
        with (
            pytest.raises(BeamWorkerError, match=f"port {port} is taken"),
            portable.worker_pool_in_image(DEFAULT_IMAGE, [str(tmp_path)], port=port),
        ):
            pass
