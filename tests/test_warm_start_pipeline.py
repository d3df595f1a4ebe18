"""Warm start the TFX way: BaseModel -> the Trainer's ``base_model``, both sources.

A tiny Spleeter-architecture network in the published format is imported; the first pipeline
run warm-starts from it (nothing is served yet), the second from the version the first pushed.
"""

from __future__ import annotations

import dataclasses
import filecmp
import json
import logging
from pathlib import Path

import pytest
from tiny_pretrained import TINY_SPLEETER, import_tiny, warm_tiny_config

from vocalsep.audio import synth
from vocalsep.components.base_model import executor
from vocalsep.errors import BaseModelError
from vocalsep.evaluation.gate import EvaluatorConfig
from vocalsep.model import trainer, unet
from vocalsep.pipeline import demo
from vocalsep.pipeline.config import PipelineConfig
from vocalsep.pipeline.local_runner import run_local
from vocalsep.pipeline.pipeline import create_pipeline
from vocalsep.serving import push


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_tiny(tmp_path_factory.mktemp("published"))


def _warm_config(work: Path, imported: Path) -> PipelineConfig:
    # Any candidate is pushed in the first run, so the second finds a served version.
    return warm_tiny_config(work, imported, EvaluatorConfig(floor_db=-100.0, report_tracks=0))


def test_the_pipeline_wires_the_import_and_the_choice_into_the_trainer(
    tmp_path: Path, imported: Path
) -> None:
    pipeline = create_pipeline(_warm_config(tmp_path, imported))
    nodes = {node.id: node for node in pipeline.components}
    assert {"BaseModel", "Trainer"} <= set(nodes)
    assert nodes["Trainer"].inputs["base_model"].producer_component_id == "BaseModel"
    assert nodes["BaseModel"].exec_properties["imported_model_uri"] == str(imported)
    assert nodes["BaseModel"].inputs["examples"].producer_component_id == "FileBasedExampleGen"


def _base_model_outputs(pipeline_root: Path) -> list[Path]:
    return sorted(
        (pipeline_root / "BaseModel" / "model").glob("*/Format-Serving"),
        key=lambda path: int(path.parent.name),
    )


def _same_export(first: Path, second: Path) -> bool:
    files = [
        "saved_model.pb",
        "variables/variables.index",
        "variables/variables.data-00000-of-00001",
    ]
    return filecmp.cmpfiles(first, second, files, shallow=False)[0] == files


@pytest.mark.slow
def test_first_run_starts_from_the_import_and_the_next_from_the_served_model(
    tmp_path: Path, imported: Path
) -> None:
    synth.write_dataset(tmp_path / "data", 6, 6.0, seed=11, layout="hq")
    config = dataclasses.replace(
        _warm_config(tmp_path, imported),
        data_roots=(
            dataclasses.replace(
                demo.demo_config(tmp_path).data_roots[0], validation_tracks=("synth_005",)
            ),
        ),
    )
    first = run_local(config)
    assert {"BaseModel", "Trainer", "Pusher"} <= set(first.executed)
    (chosen,) = _base_model_outputs(Path(config.pipeline_root))
    assert _same_export(chosen, imported / "Format-Serving")
    served = push.latest_version_dir(config.serving_base_dir, config.model_name)
    assert served is not None

    # Rerun without the cache, as a scheduled run over a new data drop would re-execute.
    second = run_local(dataclasses.replace(config, enable_cache=False))
    assert "BaseModel" in second.executed
    _, chosen_again = _base_model_outputs(Path(config.pipeline_root))
    assert _same_export(chosen_again, Path(served))
    runs = Path(config.pipeline_root) / "Trainer" / "model_run"
    records = sorted(
        runs.glob(f"*/{trainer.WARM_START_RECORD}"), key=lambda path: int(path.parent.name)
    )
    assert [json.loads(path.read_text())["base_model"] for path in records] == [
        str(chosen),
        str(chosen_again),
    ]


def test_a_served_model_of_another_architecture_is_passed_over(
    tmp_path: Path, imported: Path, caplog: pytest.LogCaptureFixture
) -> None:
    jansson_version = tmp_path / "serving" / "vocalsep" / "7"
    jansson_version.mkdir(parents=True)
    for name in ("saved_model.pb", "assets.extra"):
        source = imported / "Format-Serving" / name
        target = jansson_version / name
        if source.is_dir():
            target.mkdir()
            for child in source.iterdir():
                target.joinpath(child.name).write_bytes(child.read_bytes())
        else:
            target.write_bytes(source.read_bytes())
    serving = str(tmp_path / "serving")
    # The served copy holds the Spleeter network: chosen for a Spleeter Trainer...
    assert executor.choose_base(serving, "vocalsep", str(imported), TINY_SPLEETER) == (
        executor.SERVED,
        str(jansson_version),
    )
    # ...and passed over, with a log line, for a Trainer that builds another network.
    with caplog.at_level(logging.WARNING):
        assert executor.choose_base(serving, "vocalsep", str(imported), unet.UNetConfig.tiny()) == (
            executor.IMPORTED,
            str(imported / "Format-Serving"),
        )
    assert "is a spleeter network, not the Trainer's jansson" in caplog.text
    with pytest.raises(BaseModelError, match="nothing to warm-start from"):
        executor.choose_base(serving, "vocalsep", None, unet.UNetConfig.tiny())
    with pytest.raises(BaseModelError, match="nothing to warm-start from"):
        executor.choose_base("", "vocalsep", None, TINY_SPLEETER)
