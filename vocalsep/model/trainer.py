"""TFX Trainer ``run_fn``: trains the U-Net on Transform output and exports the SavedModel.

Referenced by dotted path (``vocalsep.model.trainer.run_fn``). The Transform writes one complex
STFT per source for every train segment; the STFT is linear, so every batch is a fresh remix
built in the spectrogram domain (see ``vocalsep.model.augment``). Checkpoints and TensorBoard
scalars live under ``fn_args.model_run_dir`` and a restarted run resumes from the latest
checkpoint; the final model is written with ``export.export_saved_model``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from vocalsep.audio import dsp
from vocalsep.configs import from_plain_values
from vocalsep.data.config import IngestConfig
from vocalsep.data.examples import SOURCES, parse_example
from vocalsep.data.roots import DatasetRoot, discover_all
from vocalsep.data.splits import EVAL
from vocalsep.data.tracks import load_track
from vocalsep.errors import AudioError, TrackRejectedError
from vocalsep.model import augment, export, inference, warm_start
from vocalsep.model.inference import InferenceConfig
from vocalsep.model.unet import ARCHITECTURES, UNetConfig, build_unet, masked_l1_loss, normalise
from vocalsep.transforms import preprocessing

MODEL_SIZES = ("default", "tiny")
LOSSES = ("masked_l1", "separation")
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
BEST_RECORD = "best.json"
WARM_START_RECORD = "warm_start.json"
TENSORBOARD_DIR = "tensorboard"
MIXED_POLICY = "mixed_float16"
RAW_TRACK_FEATURES = (*SOURCES, "track_id", "split", "num_samples")
# Keeps the SDR finite when an estimate or a reference is digital silence.
SDR_EPSILON = 1e-10

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """Every Trainer hyperparameter; built from the Trainer's ``custom_config`` (JSON).

    ``architecture`` and ``model_size`` pick the network (``UNetConfig``, ``UNetConfig.spleeter``
    or their ``tiny`` variants); ``patch_frames`` and ``model_bins`` of 0 keep its own values.
    With a base model (``base_model`` of the Trainer) training starts from its weights, and
    only the weights whose names match the regular expression ``trainable`` are trained (empty:
    all). A ``dropout_rate`` of 0 or more replaces the architecture's (fine-tuning the last
    layers learns best without the noise dropout adds in front of them). ``inference`` is how
    validation and the export turn masks into stems. ``loss`` is Jansson's L1 on each stem's
    masked magnitude (``masked_l1``), or ``separation``: museval's SDR, approximated, of what
    ``inference`` serves (``inference.separation_loss``), so the network learns for the masks,
    Wiener filter and residual it is used with. An "epoch" is just
    ``steps_per_epoch`` steps: the progress line, the validation SDR and a checkpoint.
    Validation tracks come from ``eval_roots`` (dataset roots as ``DatasetRoot.to_dict``,
    their eval split) when given, else from the Trainer's eval files. With validation, the
    export holds the weights of the best-scoring epoch, and ``patience`` epochs without a new
    best stop the run early (0: never stop early). A ``weight_average_decay`` in (0, 1) keeps an
    exponential moving average of the weights, and that average is what is validated and
    exported (0: the raw weights).
    """

    architecture: str = "jansson"
    model_size: str = "default"
    steps: int = 100_000
    steps_per_epoch: int = 1000
    batch_size: int = 8
    learning_rate: float = 1e-4
    final_learning_rate_fraction: float = 0.1
    seed: int = 0
    patch_frames: int = 0
    model_bins: int = 0
    shuffle_buffer: int = 1000
    augmentation: augment.AugmentConfig = dataclasses.field(default_factory=augment.AugmentConfig)
    eval_tracks: int = 3
    eval_seconds: float = 30.0
    eval_roots: tuple[Mapping[str, Any], ...] = ()
    patience: int = 0
    checkpoints_to_keep: int = 3
    weight_average_decay: float = 0.0
    trainable: str = ""
    dropout_rate: float = -1.0
    loss: str = "masked_l1"
    inference: InferenceConfig = dataclasses.field(default_factory=InferenceConfig)

    def __post_init__(self) -> None:
        if self.model_size not in MODEL_SIZES:
            raise ValueError(f"model_size must be one of {MODEL_SIZES}, got {self.model_size!r}")
        for name in ("steps", "steps_per_epoch", "batch_size", "shuffle_buffer"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if min(self.patch_frames, self.model_bins, self.eval_tracks) < 0 or self.eval_seconds <= 0:
            raise ValueError(
                "patch_frames, model_bins and eval_tracks must be >= 0, eval_seconds positive"
            )
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        if not 0 <= self.weight_average_decay < 1:
            raise ValueError(
                f"weight_average_decay must be in [0, 1), got {self.weight_average_decay}"
            )
        try:
            re.compile(self.trainable)
        except re.error as error:
            raise ValueError(f"trainable must be a regular expression: {error}") from error
        object.__setattr__(self, "eval_roots", tuple(self.eval_roots))
        self.unet_config()  # an unknown architecture fails here, not in the Trainer

    def unet_config(self) -> UNetConfig:
        """The architecture and size chosen, with ``patch_frames``/``model_bins`` if set."""
        config = UNetConfig.spleeter() if self.architecture == "spleeter" else UNetConfig()
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}"
            )
        if self.model_size == "tiny":
            tiny = UNetConfig.tiny()
            config = dataclasses.replace(
                config,
                stft=tiny.stft,
                encoder_channels=tiny.encoder_channels,
                model_bins=tiny.model_bins,
                patch_frames=tiny.patch_frames,
            )
        overrides = {"patch_frames": self.patch_frames, "model_bins": self.model_bins}
        config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v})
        if self.dropout_rate >= 0:
            config = dataclasses.replace(config, dropout_rate=self.dropout_rate)
        return config

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> TrainerConfig:
        """From ``custom_config``; unknown keys fail loudly rather than being ignored."""
        values = dict(values or {})
        if "augmentation" in values:
            values["augmentation"] = augment.AugmentConfig(**values["augmentation"])
        if "inference" in values:
            values["inference"] = InferenceConfig.from_dict(values["inference"])
        return from_plain_values(cls, values, "trainer")


def feature_frames(feature_spec: Mapping[str, Any], config: UNetConfig) -> int:
    """Frames per transformed segment, checked against the model's STFT and patch length."""
    shape = list(feature_spec[preprocessing.stft_feature(SOURCES[0], "real")].shape)
    if shape[1:] != [config.stft.num_bins, config.audio_channels]:
        raise ValueError(
            f"transformed STFTs are {shape} but the model expects [frames, "
            f"{config.stft.num_bins}, {config.audio_channels}]: Transform and Trainer must "
            "share one STFT config"
        )
    if shape[0] < config.patch_frames:
        raise ValueError(f"segments of {shape[0]} frames are shorter than the patch")
    return shape[0]


def _segment_stream(
    files: Sequence[str],
    feature_spec: Mapping[str, Any],
    sources: Sequence[str],
    seed: int,
    buffer: int,
) -> tf.data.Dataset:
    """Segments' complex STFTs of ``sources`` (a tuple each), endlessly shuffled.

    Segments of one track sit next to each other in the files, hence the large buffer; each
    stream shuffles with its own seed, so zipping two streams pairs unrelated tracks.
    """
    names = [
        [preprocessing.stft_feature(source, part) for part in ("real", "imag")]
        for source in sources
    ]
    spec = {name: feature_spec[name] for pair in names for name in pair}

    def parse(record: tf.Tensor) -> tuple[tf.Tensor, ...]:
        parsed = tf.io.parse_single_example(record, spec)
        return tuple(tf.complex(parsed[real], parsed[imag]) for real, imag in names)

    files_dataset = tf.data.Dataset.from_tensor_slices(list(files))
    files_dataset = files_dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    records = files_dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
        cycle_length=min(len(files), 4),
    )
    return (
        records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .repeat()
        .shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    )


def training_dataset(
    files: Sequence[str],
    feature_spec: Mapping[str, Any],
    trainer_config: TrainerConfig,
    config: UNetConfig,
    start_step: int = 0,
) -> tf.data.Dataset:
    """Endless batches of complex ``(mixture, sources)`` STFT patches, remixed on the fly.

    Everything random is seeded from ``trainer_config.seed`` and ``start_step``, so a run is
    reproducible, and a run resumed at ``start_step`` draws fresh remixes instead of
    replaying the ones the first run began with (replaying its exact stream would mean
    decoding every batch already seen).
    """
    feature_frames(feature_spec, config)
    stream_seeds = np.random.SeedSequence([trainer_config.seed, start_step]).generate_state(
        len(SOURCES) + 2, np.uint32
    )
    streams = [
        _segment_stream(
            files, feature_spec, (source,), int(stream_seed), trainer_config.shuffle_buffer
        )
        for source, stream_seed in zip(SOURCES, stream_seeds, strict=False)
    ]
    if trainer_config.augmentation.remix_probability < 1:
        streams.append(
            _segment_stream(
                files, feature_spec, SOURCES, int(stream_seeds[-2]), trainer_config.shuffle_buffer
            )
        )
    element_seed = int(stream_seeds[-1])
    element_seeds = tf.data.Dataset.random(seed=element_seed).map(
        lambda value: tf.stack([value, tf.constant(element_seed, tf.int64)])
    )
    remix = augment.remix_fn(trainer_config.augmentation, config, SOURCES)
    return (
        tf.data.Dataset.zip((element_seeds, *streams))
        .map(
            lambda element_seed, *segments: remix(
                element_seed,
                [segment[0] for segment in segments[: len(SOURCES)]],
                segments[len(SOURCES)] if len(segments) > len(SOURCES) else None,
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        .batch(trainer_config.batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def signal_to_distortion(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Global SDR in dB (BSS Eval v4's "SDR" without the distortion filter), for progress."""
    error = np.sum((reference - estimate) ** 2) + SDR_EPSILON
    return float(10 * np.log10((np.sum(reference**2) + SDR_EPSILON) / error))


def read_eval_tracks(
    file_patterns: Sequence[str], limit: int, max_samples: int
) -> list[dict[str, np.ndarray]]:
    """Up to ``limit`` whole-track raw examples, cut to ``max_samples``, or none.

    Files that are missing or hold something else (e.g. transformed segments) give an empty
    list: validation is then skipped rather than failing the run.
    """
    files = sorted(path for pattern in file_patterns for path in tf.io.gfile.glob(pattern))
    if not files or limit == 0:
        return []
    tracks = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit):
        features = tf.train.Example.FromString(record.numpy()).features.feature
        if not set(RAW_TRACK_FEATURES) <= set(features):
            logger.warning("eval files %s hold no whole-track raw examples", file_patterns)
            return []
        example = parse_example(record.numpy())
        tracks.append({source: example[source][:max_samples] for source in SOURCES})
    return tracks


def eval_tracks_from_roots(
    root_dicts: Sequence[Mapping[str, Any]], limit: int, max_samples: int
) -> list[dict[str, np.ndarray]]:
    """Up to ``limit`` eval-split tracks of the roots, decoded as ExampleGen would.

    Unusable tracks are logged and skipped, as ExampleGen rejects them; the roots' own split
    rules decide eval, so these are exactly the tracks the Evaluator scores.
    """
    # A {SPAN} root validates on its newest drop, the one ExampleGen read.
    dataset_roots = [DatasetRoot.from_dict(values).with_newest_span() for values in root_dicts]
    sources = [track for track in discover_all(dataset_roots) if track.split == EVAL]
    tracks = []
    for source in sources[:limit]:
        try:
            audio = load_track(source, IngestConfig())
        except (AudioError, TrackRejectedError) as error:
            logger.warning("validation skips %s: %s", source.track_id, error)
            continue
        tracks.append(
            {
                "vocals": audio.vocals[:max_samples],
                "accompaniment": audio.accompaniment[:max_samples],
            }
        )
    return tracks


def validation_sdr(
    model: keras.Model,
    tracks: Sequence[Mapping[str, np.ndarray]],
    mean: np.ndarray,
    scale: np.ndarray,
    config: UNetConfig,
    inference_config: inference.InferenceConfig,
) -> float:
    """Mean vocals SDR over ``tracks``, separated by the same path the serving graph uses."""
    network_fn = inference.keras_network_fn(model, config)
    scores = []
    for track in tracks:
        mixture = track["vocals"] + track["accompaniment"]
        spectrogram = dsp.stft(tf.constant(mixture[np.newaxis]), config.stft)
        stems = inference.separate_spectrogram(
            network_fn, spectrogram, mean, scale, config, inference_config
        )
        vocals = dsp.istft(stems["vocals"], config.stft, len(mixture)).numpy()[0]
        scores.append(signal_to_distortion(track["vocals"], vocals))
    return float(np.mean(scores))


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a call of ``train`` did, for logs and tests."""

    first_step: int
    last_step: int
    losses: tuple[float, ...]
    validation_sdrs: tuple[float, ...]
    export_dir: Path | None


class _BestWeights:
    """The weights of the best validation epoch, on disk so a resumed run keeps them."""

    def __init__(self, run_dir: Path, model: keras.Model) -> None:
        self._weights_prefix = str(run_dir / BEST_DIR / "weights")
        self._record = run_dir / BEST_DIR / BEST_RECORD
        self._model = model
        record = json.loads(self._record.read_text()) if self._record.exists() else {}
        self.sdr: float = record.get("sdr", -math.inf)
        self.step: int = record.get("step", 0)

    def offer(self, sdr: float, step: int) -> None:
        """Keeps the model's current weights if ``sdr`` beats the best so far."""
        if sdr <= self.sdr:
            return
        self.sdr, self.step = sdr, step
        self._model.save_weights(self._weights_prefix)
        temporary = self._record.with_suffix(".tmp")
        temporary.write_text(json.dumps({"sdr": sdr, "step": step}))
        temporary.replace(self._record)

    def restore(self) -> bool:
        """Loads the best weights into the model; False when no epoch was validated."""
        if not self._record.exists():
            return False
        self._model.load_weights(self._weights_prefix)
        return True


class _WeightAverage(tf.Module):
    """An exponential moving average of every model weight, batch-norm statistics included.

    With a few minutes of music and batches of four, the weights wander from epoch to epoch
    (validation SDR swung by +-0.6 dB); their running average is a steadier model. The decay
    ramps up as ``(1 + step) / (10 + step)`` so the average forgets the random initialisation.
    """

    def __init__(self, model: keras.Model, decay: float) -> None:
        super().__init__(name="weight_average")
        self.decay = decay
        self._weights = list(model.weights)
        self.averages = [
            tf.Variable(weight.read_value(), trainable=False, name=f"average_{index}")
            for index, weight in enumerate(self._weights)
        ]

    def update(self, step: tf.Tensor) -> None:
        """Folds the current weights in; ``step`` is the optimiser's step count."""
        step = tf.cast(step, tf.float32)
        rate = tf.minimum(self.decay, (1.0 + step) / (10.0 + step))
        for average, weight in zip(self.averages, self._weights, strict=True):
            average.assign(rate * average + (1.0 - rate) * tf.cast(weight, tf.float32))

    def copy_to_model(self) -> None:
        """Overwrites the model's weights with the averages."""
        for weight, average in zip(self._weights, self.averages, strict=True):
            weight.assign(average)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own again after it."""
        raw = [weight.numpy() for weight in self._weights]
        self.copy_to_model()
        try:
            yield
        finally:
            for weight, value in zip(self._weights, raw, strict=True):
                weight.assign(value)


def _strategy() -> tf.distribute.Strategy:
    """MirroredStrategy across GPUs when there are any; the default strategy on CPU."""
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def train(
    trainer_config: TrainerConfig,
    train_files: Sequence[str],
    feature_spec: Mapping[str, Any],
    mean: np.ndarray,
    scale: np.ndarray,
    model_run_dir: str | Path,
    serving_model_dir: str | Path | None,
    eval_tracks: Sequence[Mapping[str, np.ndarray]] = (),
    base_model: str | Path | None = None,
) -> TrainResult:
    """Trains up to ``trainer_config.steps`` (resuming), then exports if a directory is given.

    ``mean``/``scale`` are the Transform's per-bin statistics over all STFT bins; the model
    uses the first ``model_bins``. A fresh run starts from ``base_model``'s weights when given
    (an export, or a model artifact folder holding one); a resumed run from its checkpoint.
    """
    config = trainer_config.unet_config()
    inference_config = trainer_config.inference
    mean = np.asarray(mean, np.float32)[: config.model_bins]
    scale = np.asarray(scale, np.float32)[: config.model_bins]
    tf.random.set_seed(trainer_config.seed)
    keras.utils.set_random_seed(trainer_config.seed)
    strategy = _strategy()
    uses_gpus = bool(tf.config.list_logical_devices("GPU"))
    # Spleeter's published weights are float32 and its graph is written for float32.
    mixed = uses_gpus and config.architecture != "spleeter"
    policy = MIXED_POLICY if mixed else "float32"
    replicas = strategy.num_replicas_in_sync
    if trainer_config.batch_size % replicas:
        raise ValueError(f"batch_size must be a multiple of the {replicas} replicas")

    with strategy.scope():
        model = build_unet(config, policy)
        schedule = keras.optimizers.schedules.CosineDecay(
            trainer_config.learning_rate,
            trainer_config.steps,
            alpha=trainer_config.final_learning_rate_fraction,
        )
        optimizer = keras.optimizers.Adam(schedule)
        if mixed:
            optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    run_dir = Path(model_run_dir)
    manager = tf.train.CheckpointManager(
        checkpoint,
        str(run_dir / CHECKPOINT_DIR),
        max_to_keep=trainer_config.checkpoints_to_keep,
        step_counter=optimizer.iterations,
    )
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    elif base_model is not None:
        loaded = warm_start.warm_start(model, config, base_model)
        record = {"base_model": str(base_model), "weights": loaded}
        (run_dir / WARM_START_RECORD).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / WARM_START_RECORD).write_text(json.dumps(record))
        logger.info("warm start: %d weights from %s", loaded, base_model)
    trained = [
        variable
        for variable in model.trainable_variables
        if re.search(trainer_config.trainable, variable.name)
    ]
    if not trained:
        raise ValueError(f"trainable {trainer_config.trainable!r} matches no weight of the model")
    first_step = int(optimizer.iterations.numpy())
    average = None
    if trainer_config.weight_average_decay:
        with strategy.scope():
            # Made after the restore so that a checkpoint without an average starts it from
            # the restored weights; attaching it restores a saved average (deferred restore).
            average = _WeightAverage(model, trainer_config.weight_average_decay)
        checkpoint.weight_average = average

    dataset = training_dataset(train_files, feature_spec, trainer_config, config, first_step)
    batches = iter(strategy.experimental_distribute_dataset(dataset))

    window_frames = round(inference_config.sample_rate / config.stft.hop_length)

    def replica_step(mixture: tf.Tensor, sources: tf.Tensor) -> tf.Tensor:
        mixture_magnitude = dsp.magnitude(mixture)
        features = normalise(mixture_magnitude, mean, scale, config)
        with tf.GradientTape() as tape:
            masks = model(features, training=True)
            if trainer_config.loss == "separation":
                loss = inference.separation_loss(
                    {stem: masks[..., index] for index, stem in enumerate(config.stems)},
                    mixture,
                    sources,
                    config,
                    inference_config,
                    window_frames,
                )
            else:
                loss = masked_l1_loss(masks, mixture_magnitude, dsp.magnitude(sources))
            scaled = loss / replicas
            if mixed:
                scaled = optimizer.get_scaled_loss(scaled)
        gradients = tape.gradient(scaled, trained)
        if mixed:
            gradients = optimizer.get_unscaled_gradients(gradients)
        optimizer.apply_gradients(zip(gradients, trained, strict=True))
        return loss

    @tf.function
    def train_steps(iterator: Any, count: tf.Tensor) -> tf.Tensor:
        """``count`` steps in one graph call; returns their mean loss."""
        total = tf.constant(0.0)
        for _ in tf.range(count):
            mixture, sources = next(iterator)
            losses = strategy.run(replica_step, args=(mixture, sources))
            total += strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)
            if average is not None:
                average.update(optimizer.iterations)
        return total / tf.cast(count, tf.float32)

    writer = tf.summary.create_file_writer(str(run_dir / TENSORBOARD_DIR))
    best = _BestWeights(run_dir, model)
    losses: list[float] = []
    sdrs: list[float] = []
    step = first_step
    while step < trainer_config.steps:
        count = min(trainer_config.steps_per_epoch, trainer_config.steps - step)
        loss = float(train_steps(batches, tf.constant(count)))
        step = int(optimizer.iterations.numpy())
        losses.append(loss)
        if eval_tracks:
            with average.swapped_in() if average else contextlib.nullcontext():
                sdr = validation_sdr(model, eval_tracks, mean, scale, config, inference_config)
                best.offer(sdr, step)
            sdrs.append(sdr)
            validation = (
                f"validation vocals SDR {sdr:.2f} dB on {len(eval_tracks)} tracks "
                f"(best {best.sdr:.2f} dB at step {best.step})"
            )
        else:
            validation = "validation skipped (no eval tracks)"
        with writer.as_default(step=step):
            tf.summary.scalar("loss", loss)
            tf.summary.scalar("learning_rate", schedule(step))
            if eval_tracks:
                tf.summary.scalar("validation_vocals_sdr", sdrs[-1])
        manager.save(checkpoint_number=step)
        logger.info("step %d/%d: loss %.5f, %s", step, trainer_config.steps, loss, validation)
        stale_epochs = (step - best.step) // trainer_config.steps_per_epoch
        if eval_tracks and trainer_config.patience and stale_epochs >= trainer_config.patience:
            logger.info(
                "early stop at step %d: no better validation SDR for %d epochs", step, stale_epochs
            )
            break
    writer.flush()

    export_dir = None
    if serving_model_dir is not None:
        if best.restore():
            logger.info("exporting the best epoch: step %d, %.2f dB", best.step, best.sdr)
        elif average is not None:
            average.copy_to_model()
        export_dir = export.export_saved_model(
            model, mean, scale, config, inference_config, serving_model_dir
        )
    return TrainResult(first_step, step, tuple(losses), tuple(sdrs), export_dir)


def run_fn(fn_args: Any) -> None:
    """TFX Trainer entry point (``tfx.components.FnArgs``): train on Transform output, export."""
    values = dict(fn_args.custom_config or {})
    # TrainArgs.num_steps is TFX's usual knob; custom_config's "steps" wins if both are set.
    if fn_args.train_steps and "steps" not in values:
        values["steps"] = fn_args.train_steps
    trainer_config = TrainerConfig.from_dict(values)
    transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train_files = sorted(
        path for pattern in fn_args.train_files for path in tf.io.gfile.glob(pattern)
    )
    if not train_files:
        raise FileNotFoundError(f"no training files match {fn_args.train_files}")
    # Every transformed example carries the same statistics, so any train file will do.
    mean, scale = preprocessing.read_statistics(train_files[0])
    eval_samples = math.ceil(trainer_config.eval_seconds * trainer_config.inference.sample_rate)
    if trainer_config.eval_roots:
        eval_tracks = eval_tracks_from_roots(
            trainer_config.eval_roots, trainer_config.eval_tracks, eval_samples
        )
    else:
        eval_tracks = read_eval_tracks(
            fn_args.eval_files or [], trainer_config.eval_tracks, eval_samples
        )
    train(
        trainer_config,
        train_files,
        transform_output.transformed_feature_spec(),
        mean,
        scale,
        fn_args.model_run_dir,
        fn_args.serving_model_dir,
        eval_tracks,
        fn_args.base_model,
    )
