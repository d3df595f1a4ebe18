"""pipeline.yaml as Kubeflow runs it: KFP's local orchestrator (kfp.local, DockerRunner), every
step in a container of the image `make image` built; the first training, then the scheduled
retraining on a new data drop, warm-started from the first push and gated against it; then
the pushed model served from a container of the same image and called over gRPC.

Needs a Docker daemon and the image. Without them these tests skip, except where
VOCALSEP_CONTAINER_TESTS=1 (CI builds the image and sets it): there a missing daemon or image
is a failure.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import grpc
import numpy as np
import portpicker
import pytest
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc
from tiny_pretrained import import_tiny, warm_tiny_config

from vocalsep.audio import synth
from vocalsep.data.roots import DatasetRoot
from vocalsep.errors import OrchestratorError
from vocalsep.evaluation.gate import EvaluatorConfig
from vocalsep.pipeline import kfp_local_runner
from vocalsep.pipeline.config import DEFAULT_IMAGE, PipelineConfig
from vocalsep.separator import Separator
from vocalsep.serving import push
from vocalsep.serving.client import ServingClient

STEPS = {
    "FileBasedExampleGen",
    "ImportSchemaGen",
    "Transform",
    "BaseModel",
    "Trainer",
    "SdrEvaluator",
    "Pusher",
}


def _need_containers() -> None:
    try:
        kfp_local_runner.docker_client(DEFAULT_IMAGE)
    except OrchestratorError as error:
        if os.environ.get("VOCALSEP_CONTAINER_TESTS") == "1":
            pytest.fail(f"VOCALSEP_CONTAINER_TESTS=1 but {error}")
        pytest.skip(str(error))


def _config(root: Path) -> PipelineConfig:
    """The tiny warm-started recipe on span drops under ``root``; the gate blesses any model
    no worse than 100 dB below the served one, so both runs push."""
    tiny = warm_tiny_config(
        root,
        root / "imported",
        EvaluatorConfig(floor_db=-100.0, min_improvement_db=-100.0, report_tracks=1),
    )
    return dataclasses.replace(
        tiny,
        data_roots=(
            DatasetRoot(
                str(root / "drops" / "span-{SPAN}"),
                name="synth",
                split_rule="list",
                validation_tracks=("synth_005",),
            ),
        ),
        pipeline_root=str(root),
        serving_base_dir=str(root / "serving"),
        pipeline_name="vocalsep-retrain",
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two runs of one compiled pipeline: span 1 from the import, span 2 from the push."""
    _need_containers()
    root = tmp_path_factory.mktemp("kfp")
    import_tiny(root)
    synth.write_dataset(root / "drops" / "span-1", 6, 6.0, seed=11, layout="hq")
    config = _config(root)
    first = kfp_local_runner.run_kfp_local(config, DEFAULT_IMAGE)
    after_first = push.list_versions(config.serving_base_dir, config.model_name)
    synth.write_dataset(root / "drops" / "span-2", 6, 6.0, seed=12, layout="hq")
    second = kfp_local_runner.run_kfp_local(config, DEFAULT_IMAGE)
    after_second = push.list_versions(config.serving_base_dir, config.model_name)
    # A candidate the gate refuses: the same pipeline with its floor above any score.
    refusing = dataclasses.replace(
        config, evaluator=dataclasses.replace(config.evaluator, floor_db=100.0)
    )
    third = kfp_local_runner.run_kfp_local(refusing, DEFAULT_IMAGE)
    after_third = push.list_versions(config.serving_base_dir, config.model_name)
    return {
        "root": root,
        "config": config,
        "runs": (first, second, third),
        "versions": (after_first, after_second, after_third),
    }


def _outputs(root: Path, task: str, key: str) -> list[Path]:
    """A task's output folders, one per run, oldest first: kfp.local 2.8 writes them under
    ``<pipeline>-<time>/`` named as it logs the task, less a "comp-" prefix TFX's names lack."""
    return sorted(root.glob(f"vocalsep-retrain-*/{task[5:]}/{key}"))


def test_every_step_runs_in_a_container_in_both_runs(runs: dict) -> None:
    for run in runs["runs"]:
        assert {step.name for step in run.steps} == STEPS
        assert {step.status for step in run.steps} == {"SUCCESS"}
        log = run.log_path.read_text()
        assert "typed examples, schema from the inputs spec" in log  # the generic-type repair


def test_the_scheduled_run_reads_the_new_drop(runs: dict) -> None:
    spans = [
        json.loads((folder / "summary.json").read_text())["span"]
        for folder in _outputs(runs["root"], "FileBasedExampleGen", "examples")
    ]
    assert spans == [1, 2, 2]


def test_first_run_starts_from_the_import_and_the_retraining_from_the_push(runs: dict) -> None:
    after_first, _, _ = runs["versions"]
    assert len(after_first) == 1
    records = [
        json.loads((folder / "warm_start.json").read_text())
        for folder in _outputs(runs["root"], "Trainer", "model_run")
    ]
    assert len(records) == 3
    first_base, second_base, _ = _outputs(runs["root"], "BaseModel", "model")
    served_first = Path(runs["config"].serving_base_dir) / "vocalsep" / str(after_first[0])
    for base, source in ((first_base, runs["root"] / "imported" / "Format-Serving"),
                         (second_base, served_first)):  # fmt: skip
        assert (base / "Format-Serving" / "variables" / "variables.index").read_bytes() == (
            source / "variables" / "variables.index"
        ).read_bytes()


def test_the_retraining_is_gated_against_the_first_push_and_pushed_only_if_blessed(
    runs: dict,
) -> None:
    after_first, after_second, after_third = runs["versions"]
    first_gate, second_gate, third_gate = (
        json.loads((folder / "metrics.json").read_text())
        for folder in _outputs(runs["root"], "SdrEvaluator", "evaluation")
    )
    assert len(first_gate["models"]) == 1  # nothing served: the floor alone
    assert len(second_gate["models"]) == 2  # the candidate against the served version 1
    assert second_gate["decision"]["blessed"]  # min_improvement_db=-100: any score passes
    assert after_second == [*after_first, after_second[-1]] and after_second[-1] > after_first[0]
    # Refused: the Pusher ran and pushed nothing, the served versions are as they were.
    assert not third_gate["decision"]["blessed"]
    (third_blessing,) = _outputs(runs["root"], "SdrEvaluator", "blessing")[2:]
    assert (third_blessing / "NOT_BLESSED").is_file()
    assert {step.name: step.status for step in runs["runs"][2].steps}["Pusher"] == "SUCCESS"
    assert after_third == after_second


def test_the_pushed_model_answers_grpc_from_a_container_of_the_image(runs: dict) -> None:
    serving = Path(runs["config"].serving_base_dir)
    version_dir = push.latest_version_dir(str(serving), "vocalsep")
    mix = np.random.default_rng(0).uniform(-0.3, 0.3, (44100 * 3, 2)).astype(np.float32)
    port = portpicker.pick_unused_port()
    with kfp_local_runner.served_from_image(DEFAULT_IMAGE, serving, port) as address:
        with ServingClient(address, "vocalsep", connect_deadline_s=120.0) as client:
            remote = Separator(client).separate_array(mix)
        # A plain TF Serving stub, as any application would call it.
        with grpc.insecure_channel(address) as channel:
            status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "vocalsep"}),
                timeout=30,
            )
    # The newest two versions stay loaded, as TF Serving's default policy keeps the latest.
    loaded = [version.version for version in status.model_version_status]
    assert max(loaded) == int(Path(version_dir).name)
    local = Separator(version_dir).separate_array(mix)
    for stem in ("vocals", "accompaniment"):
        np.testing.assert_allclose(remote[stem], local[stem], atol=1e-4)


def test_data_outside_the_pipeline_root_is_named_before_anything_runs(tmp_path: Path) -> None:
    config = dataclasses.replace(
        _config(tmp_path / "root"), serving_base_dir=str(tmp_path / "elsewhere")
    )
    with pytest.raises(OrchestratorError, match=r"elsewhere: outside .*root"):
        kfp_local_runner.run_kfp_local(config, DEFAULT_IMAGE)


def test_a_failing_step_is_named_with_the_last_lines_of_its_log(tmp_path: Path) -> None:
    _need_containers()
    root = tmp_path / "root"
    (root / "drops" / "span-1").mkdir(parents=True)  # a drop with no songs in it
    with pytest.raises(OrchestratorError) as raised:
        kfp_local_runner.run_kfp_local(_config(root), DEFAULT_IMAGE)
    message = str(raised.value)
    assert message.startswith("step FileBasedExampleGen failed")
    assert "DatasetConfigError" in message and "no data drop matches span-{SPAN}/*" in message
    assert str(root / "logs") in message


def test_no_docker_daemon_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(OrchestratorError, match=r"no Docker daemon answers .* start one"):
        kfp_local_runner.docker_client(DEFAULT_IMAGE)


def test_a_root_the_images_user_cannot_write_is_named_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a user other than root or uid 1000, on a folder that user owns (mode 755)."""
    folder = tmp_path / "root"
    folder.mkdir(mode=0o755)
    os.chown(folder, 4321, 4321)
    monkeypatch.setattr(os, "geteuid", lambda: 4321)
    with pytest.raises(OrchestratorError, match=r"not writable by the image's user.*chown -R 1000"):
        kfp_local_runner.make_writable_for_image([folder])


def test_a_missing_image_names_the_command_that_builds_it() -> None:
    _need_containers()
    with pytest.raises(OrchestratorError, match="not built on this machine: run `make image`"):
        kfp_local_runner.docker_client("vocalsep/no-such-image:0")


def test_pipeline_run_in_containers_names_data_outside_its_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vocalsep import cli

    (tmp_path / "songs").mkdir()
    arguments = ["pipeline", "run", "--orchestrator", "kfp-local", "--root", str(tmp_path / "vp"),
                 "--data", str(tmp_path / "songs")]  # fmt: skip
    assert cli.main(arguments) == 1
    assert re.search(r"songs: outside .*vp, the pipeline root", capsys.readouterr().err)


@pytest.mark.skipif(os.geteuid() != 0, reason="handing folders to uid 1000 needs root")
def test_as_root_the_folders_go_to_the_images_user_and_the_files_stay_as_they_were(
    tmp_path: Path,
) -> None:
    """A staged dataset's files are hard links to the originals: their owner is not ours."""
    original = tmp_path / "shared" / "song.wav"
    original.parent.mkdir()
    original.write_bytes(b"RIFF")
    staged = kfp_local_runner.stage_under_root(original.parent, tmp_path / "root", "songs")
    kfp_local_runner.make_writable_for_image([tmp_path / "root"])
    assert (tmp_path / "root").stat().st_uid == staged.stat().st_uid == 1000
    assert (staged / "song.wav").stat().st_ino == original.stat().st_ino  # a hard link
    assert original.stat().st_uid == 0
