"""Serving end to end: stock TFX Pusher, ``vocalsep serve`` as a real process, the gRPC client.

Models are the tiny U-Net trained a few steps by ``trainer.train`` (two seeds, so the two
pushed versions differ). The server is a
real subprocess on a free localhost port; pushes go through ``tfx.components.Pusher`` run by
LocalDagRunner with SQLite MLMD. Tests in this module share that server and run in order; the
last one pushes a second version.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import portpicker
import pytest
import soundfile
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2
from tfx import v1 as tfx
from tiny_training import train_tiny_model

from vocalsep import cli
from vocalsep.errors import (
    MessageTooLargeError,
    ServedModelNotFoundError,
    ServerUnavailableError,
    SignatureMismatchError,
    TruncatedAudioError,
)
from vocalsep.model import export, saved, unet
from vocalsep.separator import Separator
from vocalsep.serving import model_config, push
from vocalsep.serving import server as dev_server
from vocalsep.serving.client import ServingClient

TINY = unet.UNetConfig.tiny()
INFERENCE = export.InferenceConfig(chunk_seconds=0.2, overlap_seconds=0.02)
RATE = 44100
MODEL = "vocalsep"
STARTUP_SECONDS = 120
REPO_ROOT = Path(__file__).resolve().parents[1]


def _push(model_uri: Path, serving_base: Path, work: Path) -> int:
    """Pushes with the stock Pusher (Importer -> Pusher, LocalDagRunner); the new version."""
    before = set(push.list_versions(str(serving_base), MODEL))
    # The Pusher names versions by int(time.time()): a push in the same second would be skipped.
    time.sleep(max(0.0, max(before, default=0) + 1 - time.time()))
    importer = tfx.dsl.Importer(
        source_uri=str(model_uri), artifact_type=tfx.types.standard_artifacts.Model
    ).with_id("import_model")
    pusher = push.pusher(importer.outputs["result"], str(serving_base), MODEL)
    tfx.orchestration.LocalDagRunner().run(
        tfx.dsl.Pipeline(
            pipeline_name="push",
            pipeline_root=str(work / "root"),
            components=[importer, pusher],
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                str(work / "metadata.sqlite")
            ),
        )
    )
    (version,) = set(push.list_versions(str(serving_base), MODEL)) - before
    return version


def _music(seconds: float, rate: int = RATE, channels: int = 2) -> np.ndarray:
    time_axis = np.arange(round(seconds * rate))[:, np.newaxis] / rate
    tones = 0.2 * np.sin(2 * np.pi * np.array([[220.0, 331.0]])[:, :channels] * time_axis)
    hiss = 0.01 * np.random.default_rng(0).standard_normal(tones.shape)
    return (tones + hiss).astype(np.float32)


def _model_status(address: str, name: str = MODEL) -> dict[int, int]:
    """Version -> state, as GetModelStatus reports it."""
    with grpc.insecure_channel(address) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        response = stub.GetModelStatus(request, timeout=10)
    return {status.version: status.state for status in response.model_version_status}


def _wait_for_version(address: str, version: int, server: subprocess.Popen[str]) -> None:
    give_up = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < give_up:
        assert server.poll() is None, "vocalsep serve exited"
        try:
            if version in _model_status(address):
                return
        except grpc.RpcError as error:
            if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND):
                raise
        time.sleep(0.5)
    pytest.fail(f"version {version} not served within {STARTUP_SECONDS} s")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serving")


@pytest.fixture(scope="module")
def first_model(work: Path) -> Path:
    return train_tiny_model(work / "trainer_1", INFERENCE, seed=0)


@pytest.fixture(scope="module")
def serving_base(work: Path, first_model: Path) -> Path:
    base = work / "models"
    _push(first_model, base, work)
    return base


@pytest.fixture(scope="module")
def server(serving_base: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``vocalsep serve`` in its own process, stopped with SIGTERM (which must be clean)."""
    port = portpicker.pick_unused_port()
    env = {key: value for key, value in os.environ.items() if key != "TF_USE_LEGACY_KERAS"}
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "vocalsep", "serve", "--model-base", str(serving_base)),
            *("--port", str(port), "--poll-seconds", "0.5"),
        ],
        cwd=REPO_ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    address = f"localhost:{port}"
    try:
        _wait_for_version(address, push.list_versions(str(serving_base), MODEL)[-1], process)
        yield address, process
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-3000:]
    assert "stopped" in stderr


@pytest.fixture(scope="module")
def address(server: tuple[str, subprocess.Popen[str]]) -> str:
    return server[0]


@pytest.mark.slow  # trains, pushes and starts the server for the module
def test_separate_through_the_server_equals_the_local_model(
    address: str, serving_base: Path, tmp_path: Path
) -> None:
    song = tmp_path / "song.wav"
    soundfile.write(song, _music(4.0), RATE, subtype="FLOAT")
    version_dir = push.latest_version_dir(str(serving_base), MODEL)
    assert version_dir is not None
    remote, local = tmp_path / "remote", tmp_path / "local"
    common = ["separate", "--quiet", str(song), "--format", "wav"]
    assert cli.main([*common, "-o", str(remote), "--server", address]) == cli.EXIT_OK
    # The server computes in float32, as TF Serving does; locally "auto" may pick bfloat16.
    local_run = [*common, "-o", str(local), "--model", version_dir, "--precision", "float32"]
    assert cli.main(local_run) == cli.EXIT_OK
    for stem in ("vocals", "accompaniment"):
        served, _ = soundfile.read(remote / "song" / f"{stem}.wav", dtype="float32")
        expected, _ = soundfile.read(local / "song" / f"{stem}.wav", dtype="float32")
        assert served.shape == expected.shape == (4 * RATE, 2)
        np.testing.assert_allclose(served, expected, atol=1e-4)


def test_many_blocks_in_flight_join_without_seams(address: str, serving_base: Path) -> None:
    """Short blocks, several requests at once: the crossfaded result is the whole-song call."""
    mixture = _music(3.0)
    version_dir = push.latest_version_dir(str(serving_base), MODEL)
    expected = Separator(version_dir).separate_array(mixture)
    with ServingClient(address) as client:
        assert (client.chunk_length, client.overlap_length) == (
            export.chunk_length(TINY, INFERENCE),
            export.overlap_length(TINY, INFERENCE),
        )
        separator = Separator(client, block_seconds=0.5, in_flight=3)
        assert separator.block_length < len(mixture) // 3
        segments = list(separator.separate_blocks(iter([mixture[:50000], mixture[50000:]])))
    for stem in ("vocals", "accompaniment"):
        served = np.concatenate([segment[stem] for segment in segments])
        np.testing.assert_allclose(served, expected[stem], atol=1e-4)


def test_server_down_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    down = f"localhost:{portpicker.pick_unused_port()}"
    with pytest.raises(ServerUnavailableError, match=f"server {down}, model vocalsep"):
        ServingClient(down, connect_deadline_s=1.0)
    song = tmp_path / "song.wav"
    soundfile.write(song, _music(0.5), RATE)
    out = tmp_path / "out"
    args = ["separate", "--quiet", str(song), "-o", str(out), "--server", down, "--deadline", "1"]
    assert cli.main(args) == cli.EXIT_FAILED
    assert f"server {down}" in capsys.readouterr().err
    assert not out.exists()


def test_a_server_that_comes_up_within_the_deadline_is_waited_for(serving_base: Path) -> None:
    """UNAVAILABLE is retried with backoff: connecting before the server starts still works."""
    repository = dev_server.ModelRepository(serving_base)
    repository.poll()
    address = f"localhost:{portpicker.pick_unused_port()}"
    late_server = dev_server.build_server(repository, address)
    starter = threading.Timer(1.0, late_server.start)
    starter.start()
    try:
        with ServingClient(address, connect_deadline_s=60) as client:
            assert client.version == repository.versions(MODEL)[-1]
            stems = client(_music(0.3))
        assert set(stems) == {"vocals", "accompaniment"}
    finally:
        starter.join()
        late_server.stop(grace=None)


def test_serve_refuses_a_missing_base_and_a_taken_port(
    address: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    missing = tmp_path / "missing"
    assert cli.main(["serve", "--model-base", str(missing)]) == cli.EXIT_FAILED
    assert f"{missing}: model base directory does not exist" in capsys.readouterr().err
    taken = address.rsplit(":", 1)[1]
    assert cli.main(["serve", "--model-base", str(tmp_path), "--port", taken]) == cli.EXIT_FAILED
    assert f"cannot listen on 127.0.0.1:{taken}" in capsys.readouterr().err


def test_unknown_model_is_not_found(address: str) -> None:
    with pytest.raises(ServedModelNotFoundError) as raised:
        ServingClient(address, "nonexistent")
    assert "model nonexistent" in str(raised.value)
    assert "Servable not found for request: Latest(nonexistent)" in str(raised.value)
    with pytest.raises(ServedModelNotFoundError, match="Specific"):
        ServingClient(address, version=1)


def test_a_model_with_another_signature_is_refused(address: str, serving_base: Path) -> None:
    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def double(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": 2 * x}

    module = Doubler()
    tf.saved_model.save(module, str(serving_base / "doubler" / "1"), signatures=module.double)
    give_up = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            ServingClient(address, "doubler")
        except ServedModelNotFoundError:
            assert time.monotonic() < give_up, "doubler never loaded"
            time.sleep(0.5)
            continue
        except SignatureMismatchError as error:
            assert "model doubler version 1" in str(error)
            assert "no signature chunking" in str(error)
            break
        pytest.fail("a model without the vocalsep signatures was accepted")


def test_bad_inputs_get_invalid_argument(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for bad in (np.zeros((10, 3), np.float32), np.zeros((10, 2), np.float64)):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = MODEL
            request.inputs["waveform"].CopyFrom(tf.make_tensor_proto(bad))
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(request, timeout=30)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_messages_over_the_limit_fail_cleanly(address: str, tmp_path: Path) -> None:
    limit = 512 * 1024
    with ServingClient(address, max_message_bytes=limit) as client:
        # The request fits, the two stems in the response do not: gRPC itself refuses it.
        with pytest.raises(MessageTooLargeError, match=f"server {address}"):
            client(_music(0.6 * limit / 8 / RATE))
        # A block that does not fit is refused before it is sent, and nothing is written.
        song = tmp_path / "song.wav"
        soundfile.write(song, _music(3.0), RATE)
        separator = Separator(client, block_seconds=2.0)
        with pytest.raises(MessageTooLargeError, match="message limit"):
            separator.separate_file(song, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_truncated_input_names_the_file_and_writes_nothing(address: str, tmp_path: Path) -> None:
    song = tmp_path / "cut.wav"
    soundfile.write(song, _music(2.0), RATE)
    song.write_bytes(song.read_bytes()[: 3 * RATE])
    out = tmp_path / "out"
    with ServingClient(address) as client, pytest.raises(TruncatedAudioError) as raised:
        Separator(client, block_seconds=1.0, in_flight=2).separate_file(song, out)
    assert raised.value.path == str(song)
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.slow
def test_a_new_push_is_served_without_restart(
    server: tuple[str, subprocess.Popen[str]], serving_base: Path, work: Path
) -> None:
    address, process = server
    old_version = push.list_versions(str(serving_base), MODEL)[-1]
    new_version = _push(train_tiny_model(work / "trainer_2", INFERENCE, seed=1), serving_base, work)
    assert new_version > old_version
    _wait_for_version(address, new_version, process)
    status = _model_status(address)
    assert status[new_version] == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    mixture = _music(1.0)
    with ServingClient(address) as client:
        assert client.version == new_version
        served = client(mixture)
    new_local = Separator(serving_base / MODEL / str(new_version)).separate_array(mixture)
    old_local = Separator(serving_base / MODEL / str(old_version)).separate_array(mixture)
    np.testing.assert_allclose(served["vocals"], new_local["vocals"], atol=1e-4)
    assert np.max(np.abs(served["vocals"] - old_local["vocals"])) > 1e-3
    with ServingClient(address, version=old_version) as pinned:
        np.testing.assert_allclose(pinned(mixture)["vocals"], old_local["vocals"], atol=1e-4)
    assert process.poll() is None


# Layout, config and export artefacts: no server needed.


def test_latest_version_dir_skips_foreign_and_incomplete_versions(tmp_path: Path) -> None:
    assert push.latest_version_dir(str(tmp_path), MODEL) is None
    models = tmp_path / MODEL
    for name in ("7", "12", "30", ".99.tmp", "notes"):
        (models / name / "variables").mkdir(parents=True)
    for name in ("7", "12"):
        (models / name / "saved_model.pb").write_bytes(b"")
        (models / name / "variables" / "variables.index").write_bytes(b"")
    (models / "30" / "variables" / "variables.index").write_bytes(b"")  # no saved_model.pb yet
    assert push.list_versions(str(tmp_path), MODEL) == [7, 12]
    assert push.latest_version_dir(str(tmp_path), MODEL) == str(models / "12")


def test_repository_loads_only_whole_versions_and_keeps_the_newest(
    first_model: Path, tmp_path: Path
) -> None:
    """What the dev server's poll does as the Pusher copies, fails and rolls back."""
    export_dir = first_model / "Format-Serving"
    models = tmp_path / MODEL
    shutil.copytree(export_dir, models / "1")
    repository = dev_server.ModelRepository(tmp_path, num_versions=1)
    repository.poll()
    assert repository.versions(MODEL) == [1]
    # The Pusher copies saved_model.pb last: until then version 2 is not even tried.
    shutil.copytree(export_dir, models / "2", ignore=shutil.ignore_patterns("saved_model.pb"))
    repository.poll()
    assert repository.versions(MODEL) == [1]
    (models / "2" / "saved_model.pb").write_bytes(b"not a SavedModel")
    repository.poll()
    assert repository.versions(MODEL) == [1], "a version that fails to load must not replace 1"
    shutil.copy(export_dir / "saved_model.pb", models / "2" / "saved_model.pb")
    repository.poll()
    assert repository.versions(MODEL) == [2]
    shutil.rmtree(models / "2")  # the fast rollback: delete the bad version
    repository.poll()
    assert repository.versions(MODEL) == [1]


def test_model_config_matches_the_k8s_config_map() -> None:
    k8s = text_format.Parse(
        (REPO_ROOT / "k8s" / "base" / "config" / "models.config").read_text(),
        model_server_config_pb2.ModelServerConfig(),
    )
    assert k8s == model_config.model_server_config(MODEL, "/models/vocalsep")
    pinned = text_format.Parse(
        model_config.model_config_text(
            MODEL, "/models/vocalsep", versions=[3, 5], labels={"stable": 3, "canary": 5}
        ),
        model_server_config_pb2.ModelServerConfig(),
    )
    (config,) = pinned.model_config_list.config
    assert list(config.model_version_policy.specific.versions) == [3, 5]
    assert dict(config.version_labels) == {"stable": 3, "canary": 5}
    with pytest.raises(ValueError, match="not loaded"):
        model_config.model_server_config(MODEL, "/m", versions=[3], labels={"canary": 5})
    assert "max_batch_size { value: 1 }" in model_config.batching_parameters()


def test_export_carries_warmup_requests_and_the_chunk_grid(first_model: Path) -> None:
    export_dir = first_model / "Format-Serving"
    lengths = []
    for record in tf.data.TFRecordDataset(str(export_dir / saved.WARMUP_PATH)):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        assert request.model_spec.signature_name == saved.SIGNATURE_KEY
        lengths.append(tf.make_ndarray(request.inputs[saved.WAVEFORM_INPUT]).shape)
    chunk = export.chunk_length(TINY, INFERENCE)
    assert lengths == [(export.WARMUP_SHORT_SAMPLES, 2), (chunk, 2)]
    chunking = tf.saved_model.load(str(export_dir)).signatures[saved.CHUNKING_SIGNATURE_KEY]
    values = chunking(waveform=tf.zeros([1, 2]))
    assert {name: int(value) for name, value in values.items()} == {
        "chunk_samples": chunk,
        "overlap_samples": export.overlap_length(TINY, INFERENCE),
        "sample_rate": RATE,
    }
