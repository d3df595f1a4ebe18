"""The Trainer on synthetic songs: it learns, exports a model that separates, and resumes.

Transformed examples come from tests/tiny_training.py (written directly with the Transform's
feature names and the shared DSP core), so a run takes seconds instead of a Beam pipeline.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tiny_pretrained import write_published
from tiny_training import (
    FRAMES,
    SEGMENT,
    STFT,
    TRACK_SECONDS,
    feature_spec,
    segments,
    statistics,
    synthetic_track,
    write_transformed,
)

from vocalsep.audio import synth
from vocalsep.data import roots
from vocalsep.data.config import IngestConfig
from vocalsep.data.examples import SOURCES, make_example
from vocalsep.errors import BaseModelError
from vocalsep.model import augment, export, pretrained, saved, trainer, unet, warm_start
from vocalsep.model.unet import UNetConfig
from vocalsep.pipeline.data_stage import data_components

INFERENCE = export.InferenceConfig(chunk_seconds=1.0, overlap_seconds=0.1)


@dataclass(frozen=True)
class Data:
    files: list[str]
    feature_spec: dict[str, Any]
    mean: np.ndarray
    scale: np.ndarray
    eval_tracks: list[dict[str, np.ndarray]]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    work = tmp_path_factory.mktemp("transformed")
    shards = [
        segments([synthetic_track(10 + 3 * shard + i) for i in range(3)]) for shard in range(2)
    ]
    mean, scale = statistics([segment for shard in shards for segment in shard])
    files = []
    for index, shard in enumerate(shards):
        files.append(str(work / f"train-{index}.gz"))
        write_transformed(Path(files[-1]), shard, mean, scale)
    eval_tracks = [synthetic_track(100 + i) for i in range(2)]
    return Data(files, feature_spec(), mean, scale, eval_tracks)


def _config(**overrides: Any) -> trainer.TrainerConfig:
    values: dict[str, Any] = {
        "model_size": "tiny",
        "steps": 300,
        "steps_per_epoch": 100,
        "batch_size": 8,
        "learning_rate": 3e-3,
        "seed": 3,
        "shuffle_buffer": 64,
        "inference": dataclasses.asdict(INFERENCE),
        **overrides,
    }
    return trainer.TrainerConfig.from_dict(values)


def _train(data: Data, config: trainer.TrainerConfig, run_dir: Path, **kwargs: Any) -> Any:
    return trainer.train(
        config,
        data.files,
        data.feature_spec,
        data.mean,
        data.scale,
        run_dir,
        **kwargs,
    )


def test_batches_are_exact_remixes_of_cropped_patches(data: Data) -> None:
    config = _config(batch_size=4)
    unet_config = config.unet_config()
    mixture, sources = next(
        iter(trainer.training_dataset(data.files, data.feature_spec, config, unet_config))
    )
    patch = [4, unet_config.patch_frames, unet_config.model_bins, 2]
    assert mixture.shape == patch and sources.shape == [*patch, 2]
    assert mixture.dtype == sources.dtype == tf.complex64
    np.testing.assert_allclose(mixture, sources.numpy().sum(axis=-1), atol=1e-5)


def test_recorded_mixes_keep_one_crop_and_remixes_take_unrelated_segments() -> None:
    config = UNetConfig.tiny()
    frames = np.arange(FRAMES, dtype=np.float32)[:, None, None] * np.ones((1, STFT.num_bins, 2))

    def spectrogram(values: np.ndarray) -> tf.Tensor:
        return tf.complex(tf.constant(values, tf.float32), tf.zeros(values.shape))

    recording = [spectrogram(frames), spectrogram(frames + 1000)]  # one track, frame-numbered
    unrelated = [spectrogram(-1 - frames), spectrogram(-2000 - frames)]
    plain = {"gain_db": 0.0, "channel_swap_probability": 0.0, "silence_probability": 0.0}
    for probability, expect_recording in ((0.0, True), (1.0, False)):
        remix = augment.remix_fn(
            augment.AugmentConfig(**plain, remix_probability=probability), config, SOURCES
        )
        for seed in range(8):
            mixture, sources = remix(tf.constant([seed, 1], tf.int64), unrelated, recording)
            vocals, accompaniment = np.real(sources.numpy()[..., 0]), np.real(sources[..., 1])
            np.testing.assert_allclose(mixture, sources.numpy().sum(axis=-1))
            assert np.all(vocals >= 0) == expect_recording
            if expect_recording:  # one crop: the same frames of both sources
                np.testing.assert_array_equal(accompaniment - vocals, 1000.0)


def test_augmentation_gains_swaps_and_silences_sources() -> None:
    config = UNetConfig.tiny()
    rng = np.random.default_rng(0)
    shape = (FRAMES, STFT.num_bins, 2)
    spectrograms = [
        tf.complex(*(tf.constant(rng.standard_normal(shape), tf.float32) for _ in range(2)))
        for _ in SOURCES
    ]
    remix = augment.remix_fn(augment.AugmentConfig(silence_probability=0.5), config, SOURCES)
    energies = np.array(
        [
            np.abs(remix(tf.constant([seed, 0], tf.int64), spectrograms)[1]).mean(axis=(0, 1, 2))
            for seed in range(64)
        ]
    )
    silent = energies == 0
    assert 0 < silent.mean() < 1
    gains = energies[~silent] / np.median(energies[~silent])
    assert gains.max() / gains.min() > 2  # well beyond the crops' variation alone
    same = remix(tf.constant([5, 0], tf.int64), spectrograms)[0]
    np.testing.assert_array_equal(same, remix(tf.constant([5, 0], tf.int64), spectrograms)[0])
    # Constant over frames, so only the swap can change what a crop sees.
    left_only = tf.complex(tf.ones(shape) * [1.0, 0.0], tf.zeros(shape))
    always_swap = augment.AugmentConfig(0.0, channel_swap_probability=1.0, silence_probability=0.0)
    swap = augment.remix_fn(always_swap, config, SOURCES)
    _, sources = swap(tf.constant([1, 0], tf.int64), [left_only, left_only])
    np.testing.assert_allclose(np.abs(sources).mean(axis=(0, 1, 3)), [0.0, 1.0])


def _sdr_gain(export_dir: Path, tracks: list[Mapping[str, np.ndarray]]) -> tuple[float, float]:
    separator = saved.load_separator(export_dir)
    model_sdrs, floor_sdrs = [], []
    for track in tracks:
        mixture = track["vocals"] + track["accompaniment"]
        vocals = separator(mixture)["vocals"]
        model_sdrs.append(trainer.signal_to_distortion(track["vocals"], vocals))
        floor_sdrs.append(trainer.signal_to_distortion(track["vocals"], mixture))
    return float(np.mean(model_sdrs)), float(np.mean(floor_sdrs))


def test_training_lowers_the_loss_and_exports_a_model_that_beats_the_mixture(
    data: Data, tmp_path: Path
) -> None:
    result = _train(
        data,
        _config(),
        tmp_path / "run",
        serving_model_dir=tmp_path / "serving",
        eval_tracks=data.eval_tracks,
    )
    print(f"losses {result.losses}, validation SDRs {result.validation_sdrs}")
    assert (result.first_step, result.last_step) == (0, 300)
    assert result.losses[-1] < 0.8 * result.losses[0]
    model_sdr, floor_sdr = _sdr_gain(result.export_dir, data.eval_tracks)
    print(f"exported vocals SDR {model_sdr:.2f} dB vs mixture floor {floor_sdr:.2f} dB")
    assert model_sdr > floor_sdr + 1.0
    assert list((tmp_path / "run" / trainer.TENSORBOARD_DIR).iterdir())


def test_a_second_run_resumes_and_a_seeded_run_repeats(data: Data, tmp_path: Path) -> None:
    first = _train(data, _config(steps=20, steps_per_epoch=10), tmp_path, serving_model_dir=None)
    assert (first.first_step, first.last_step, len(first.losses)) == (0, 20, 2)
    second = _train(data, _config(steps=30, steps_per_epoch=10), tmp_path, serving_model_dir=None)
    assert (second.first_step, second.last_step, len(second.losses)) == (20, 30, 1)
    again = _train(
        data, _config(steps=20, steps_per_epoch=10), tmp_path / "again", serving_model_dir=None
    )
    assert again.losses == first.losses  # the seed fixes initialisation, data and augmentation


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match=r"unknown trainer settings: \['stepz'\]"):
        trainer.TrainerConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError):
        trainer.TrainerConfig.from_dict({"model_size": "huge"})
    with pytest.raises(ValueError, match="architecture"):
        trainer.TrainerConfig.from_dict({"architecture": "demucs"})
    with pytest.raises(ValueError, match="regular expression"):
        trainer.TrainerConfig.from_dict({"trainable": "up(7"})
    with pytest.raises(ValueError, match="loss must be one of"):
        trainer.TrainerConfig.from_dict({"loss": "l2"})
    with pytest.raises(ValueError, match="dropout_rate"):
        trainer.TrainerConfig.from_dict({"dropout_rate": 1.0})
    spleeter = trainer.TrainerConfig.from_dict({"architecture": "spleeter"}).unet_config()
    fine_tuning = trainer.TrainerConfig.from_dict({"architecture": "spleeter", "dropout_rate": 0})
    assert (spleeter.dropout_rate, fine_tuning.unet_config().dropout_rate) == (0.5, 0.0)
    with pytest.raises(ValueError, match="unknown inference settings"):
        trainer.TrainerConfig.from_dict({"inference": {"wiener": 1}})
    # Struct round trips turn every number into a float; the types are restored.
    restored = trainer.TrainerConfig.from_dict({"steps": 7.0, "learning_rate": 1})
    assert (restored.steps, restored.learning_rate) == (7, 1.0)
    assert isinstance(restored.steps, int) and isinstance(restored.learning_rate, float)
    config = trainer.TrainerConfig.from_dict(
        {
            "model_size": "tiny",
            "patch_frames": 64,
            "model_bins": 128,
            "augmentation": {"gain_db": 3.0},
        }
    )
    assert (config.unet_config().patch_frames, config.unet_config().model_bins) == (64, 128)
    assert config.augmentation.gain_db == 3.0
    tiny_spleeter = trainer.TrainerConfig(architecture="spleeter", model_size="tiny").unet_config()
    assert tiny_spleeter.architecture == "spleeter" and tiny_spleeter.input_compression == "none"
    assert tiny_spleeter.encoder_channels == unet.UNetConfig.tiny().encoder_channels


def test_tfx_trainer_after_transform_exports_a_serving_model(tmp_path: Path) -> None:
    """The real component in a LocalDagRunner pipeline, on the real Transform's output."""
    synth.write_dataset(tmp_path / "songs", 3, TRACK_SECONDS, seed=5, layout="generic")
    dataset_roots = [
        roots.DatasetRoot(
            str(tmp_path / "songs"), split_rule="list", validation_tracks=("synth_002",)
        )
    ]
    pipeline_root = tmp_path / "root"
    components = data_components(
        dataset_roots,
        str(tmp_path / "schema"),
        IngestConfig(segment_samples=SEGMENT),
        stft=STFT,
    )
    # The Transform writes only the train split; the Trainer must not look for an eval one.
    model_trainer = tfx.components.Trainer(
        run_fn="vocalsep.model.trainer.run_fn",
        examples=components[-1].outputs["transformed_examples"],
        transform_graph=components[-1].outputs["transform_graph"],
        train_args=tfx.proto.TrainArgs(num_steps=6),
        eval_args=tfx.proto.EvalArgs(splits=["train"]),
        custom_config={"model_size": "tiny", "steps_per_epoch": 3, "batch_size": 2},
    )
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="vocalsep-trainer-test",
        pipeline_root=str(pipeline_root),
        components=[*components, model_trainer],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "mlmd.sqlite")
        ),
        beam_pipeline_args=["--direct_running_mode=in_memory"],
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    (serving_dir,) = (pipeline_root / "Trainer" / "model").glob("*/Format-Serving")
    separator = saved.load_separator(serving_dir)
    stems = separator(synthetic_track(7)["vocals"][:SEGMENT])
    assert set(stems) == set(SOURCES)
    assert stems["vocals"].shape == (SEGMENT, 2)
    (checkpoints,) = (pipeline_root / "Trainer" / "model_run").glob(f"*/{trainer.CHECKPOINT_DIR}")
    assert tf.train.latest_checkpoint(str(checkpoints)).endswith("-6")


def test_eval_tracks_come_from_raw_whole_track_examples_only(data: Data, tmp_path: Path) -> None:
    path = tmp_path / "eval.gz"
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for index, track in enumerate(data.eval_tracks):
            source = roots.TrackSource(
                f"synth/{index}", "synth", str(index), "generic", "eval", "", stems=()
            )
            example = make_example(source, track["vocals"], track["accompaniment"], 44100)
            writer.write(example.SerializeToString())
    tracks = trainer.read_eval_tracks([str(tmp_path / "*.gz")], limit=1, max_samples=1000)
    assert len(tracks) == 1
    np.testing.assert_array_equal(tracks[0]["vocals"], data.eval_tracks[0]["vocals"][:1000])
    assert trainer.read_eval_tracks(data.files, limit=2, max_samples=1000) == []
    assert trainer.read_eval_tracks([str(tmp_path / "missing*")], limit=2, max_samples=1) == []


def test_best_weights_survive_a_restart_and_restore_into_the_model(tmp_path: Path) -> None:
    model = unet.build_unet(UNetConfig.tiny())
    best = trainer._BestWeights(tmp_path, model)
    assert not best.restore()
    saved = [weights.copy() for weights in model.get_weights()]
    best.offer(2.5, 100)
    best.offer(1.0, 200)  # worse: the weights of step 100 stay
    model.set_weights([weights + 1.0 for weights in saved])
    reopened = trainer._BestWeights(tmp_path, model)
    assert (reopened.sdr, reopened.step) == (2.5, 100)
    assert reopened.restore()
    for restored, expected in zip(model.get_weights(), saved, strict=True):
        np.testing.assert_array_equal(restored, expected)


def test_training_stops_early_and_exports_the_best_epoch(
    data: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation scores are scripted so the stopping rule is tested, not the optimiser."""
    scores = iter([1.0, 3.0, 2.0, 2.9, 2.0, 5.0])
    monkeypatch.setattr(trainer, "validation_sdr", lambda *args: next(scores))
    config = _config(steps=60, steps_per_epoch=5, patience=2)
    result = _train(
        data,
        config,
        tmp_path / "run",
        serving_model_dir=tmp_path / "serving",
        eval_tracks=data.eval_tracks[:1],
    )
    assert result.last_step == 20  # epoch 2 was the best; epochs 3 and 4 did not beat it
    assert result.validation_sdrs == (1.0, 3.0, 2.0, 2.9)
    record = json.loads((tmp_path / "run" / trainer.BEST_DIR / trainer.BEST_RECORD).read_text())
    assert record == {"sdr": 3.0, "step": 10}
    assert (result.export_dir / "saved_model.pb").exists()


def test_eval_tracks_from_roots_are_the_roots_eval_split(tmp_path: Path) -> None:
    synth.write_dataset(tmp_path / "songs", 3, 1.0, seed=2, layout="generic")
    root = roots.DatasetRoot(
        str(tmp_path / "songs"), split_rule="list", validation_tracks=("synth_001",)
    )
    tracks = trainer.eval_tracks_from_roots([root.to_dict()], limit=5, max_samples=1000)
    assert len(tracks) == 1
    assert tracks[0]["vocals"].shape == (1000, 2)
    expected = synth.generate_track(synth.track_seed(2, 1), 1.0)["vocals"][:1000]
    np.testing.assert_allclose(tracks[0]["vocals"], expected, atol=1e-4)


def test_weight_average_folds_in_weights_and_swaps_in_and_out() -> None:
    model = unet.build_unet(UNetConfig.tiny())
    initial = [weights.copy() for weights in model.get_weights()]
    average = trainer._WeightAverage(model, decay=0.5)
    model.set_weights([weights + 1.0 for weights in initial])
    average.update(tf.constant(100, tf.int64))  # the ramp (101/110) is past 0.5: rate 0.5
    with average.swapped_in():
        for inside, start in zip(model.get_weights(), initial, strict=True):
            np.testing.assert_allclose(inside, start + 0.5, atol=1e-6)
    for after, start in zip(model.get_weights(), initial, strict=True):
        np.testing.assert_allclose(after, start + 1.0, atol=1e-6)
    average.update(tf.constant(0, tf.int64))  # step 0: rate 0.1, the average jumps to the weights
    np.testing.assert_allclose(average.averages[0].numpy(), initial[0] + 0.95, atol=1e-6)


def test_the_weight_average_is_validated_exported_and_checkpointed(
    data: Data, tmp_path: Path
) -> None:
    config = _config(steps=10, steps_per_epoch=5, weight_average_decay=0.9)
    run_dir = tmp_path / "run"
    result = _train(
        data, config, run_dir, serving_model_dir=tmp_path / "serving", eval_tracks=data.eval_tracks
    )
    assert result.last_step == 10 and len(result.validation_sdrs) == 2
    saved = dict(tf.train.list_variables(str(run_dir / trainer.CHECKPOINT_DIR)))
    averaged = [name for name in saved if name.startswith("weight_average/averages/")]
    model = unet.build_unet(config.unet_config())
    assert len(averaged) == len(model.weights)
    # The best epoch's weights are the average's, not the raw weights of that step.
    record = json.loads((run_dir / trainer.BEST_DIR / trainer.BEST_RECORD).read_text())
    reader = tf.train.load_checkpoint(str(run_dir / trainer.CHECKPOINT_DIR))
    model.load_weights(str(run_dir / trainer.BEST_DIR / "weights"))
    if record["step"] == 10:
        first_kernel = reader.get_tensor("weight_average/averages/0/.ATTRIBUTES/VARIABLE_VALUE")
        np.testing.assert_allclose(model.weights[0].numpy(), first_kernel, atol=1e-6)
    raw_kernel = reader.get_tensor("model/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE")
    assert not np.allclose(model.weights[0].numpy(), raw_kernel)
    # Resuming restores the saved average (not a fresh one from the raw weights), and without a
    # validated epoch the average is what gets exported.
    for path in (run_dir / trainer.BEST_DIR).iterdir():
        path.unlink()
    resumed = _train(data, config, run_dir, serving_model_dir=tmp_path / "resumed")
    assert resumed.first_step == 10 and resumed.last_step == 10
    exported = tf.train.load_checkpoint(str(resumed.export_dir / "variables" / "variables"))
    average_kernel = reader.get_tensor("weight_average/averages/0/.ATTRIBUTES/VARIABLE_VALUE")
    matches = [
        name
        for name, shape in tf.train.list_variables(str(resumed.export_dir / "variables/variables"))
        if list(shape) == list(average_kernel.shape)
        and np.allclose(exported.get_tensor(name), average_kernel, atol=1e-6)
    ]
    assert matches


@pytest.fixture(scope="module")
def spleeter_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Spleeter network's published-format weights, imported as a model artifact."""
    work = tmp_path_factory.mktemp("published")
    model, _ = write_published(work / "files")
    pretrained.import_published(
        model, work / "imported", INFERENCE, checkpoint_folder=work / "files"
    )
    return work / "imported"


def test_warm_start_begins_from_the_base_and_trains_only_the_trainable_weights(
    data: Data, spleeter_base: Path, tmp_path: Path
) -> None:
    config = _config(
        architecture="spleeter",
        steps=3,
        steps_per_epoch=3,
        trainable=r"up3_|up4_",
        patch_frames=32,
        loss="separation",
        inference={**dataclasses.asdict(INFERENCE), "mask_power": 0.5, "wiener_iterations": 1},
    )
    unet_config = config.unet_config()
    result = _train(
        data,
        config,
        tmp_path / "run",
        serving_model_dir=tmp_path / "export",
        base_model=spleeter_base,
    )
    record = json.loads((tmp_path / "run" / trainer.WARM_START_RECORD).read_text())
    base = warm_start.base_weights(spleeter_base, unet_config)
    assert record == {"base_model": str(spleeter_base), "weights": len(base)}
    trained = warm_start.base_weights(result.export_dir, unet_config)
    changed = {name for name in base if not np.array_equal(base[name], trained[name])}
    assert changed, "nothing was trained"
    assert np.isfinite(result.losses).all()
    assert all(re.search(r"up3_|up4_", name) for name in changed), changed
    # Batch norm statistics stay the published ones, trainable or not.
    assert not any("moving" in name for name in changed)


def test_warm_start_refuses_a_base_of_another_architecture(
    data: Data, spleeter_base: Path, tmp_path: Path
) -> None:
    with pytest.raises(BaseModelError, match="spleeter network"):
        _train(data, _config(steps=1), tmp_path, serving_model_dir=None, base_model=spleeter_base)
