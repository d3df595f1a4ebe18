"""Dataset layouts, track discovery, decoding and the component's configuration plumbing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from google.protobuf import message
from tfx.utils import proto_utils

from vocalsep.audio import io, synth
from vocalsep.components.example_gen.component import (
    input_base_and_pattern,
    multitrack_example_gen,
)
from vocalsep.components.example_gen.executor import (
    decode_custom_config,
    resolved_roots,
    split_ratio,
)
from vocalsep.data import roots, splits
from vocalsep.data.config import IngestConfig
from vocalsep.data.examples import parse_example, track_examples
from vocalsep.data.tracks import load_track
from vocalsep.errors import DatasetConfigError

SECONDS = 1.0
SAMPLE_RATE = 44100


def _read(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32", always_2d=True)[0]


def _sources(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of a synth folder: vocals and drums + bass + other."""
    stems = {name: _read(folder / f"{name}.wav") for name in ("vocals", "drums", "bass", "other")}
    return stems["vocals"], stems["drums"] + stems["bass"] + stems["other"]


@pytest.fixture(scope="module")
def hq_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hq")
    synth.write_dataset(root, 3, SECONDS, seed=5, layout="hq")
    return root


def test_layouts_are_detected(hq_root: Path, tmp_path: Path) -> None:
    synth.write_dataset(tmp_path / "generic", 1, SECONDS, layout="generic")
    synth.write_dataset(tmp_path / "stems", 1, SECONDS, layout="stems")
    (tmp_path / "pairs").mkdir()
    io.write_audio(tmp_path / "pairs" / "a_1_01.wav", np.zeros((100, 2), np.float32), 16000)
    (tmp_path / "pairs" / "README.txt").write_text("not audio")
    assert roots.detect_layout(str(hq_root)) == "hq"
    assert roots.detect_layout(str(tmp_path / "generic")) == "generic"
    assert roots.detect_layout(str(tmp_path / "stems")) == "hq"  # no mixture file is needed
    assert roots.detect_layout(str(tmp_path / "pairs")) == "channel_pairs"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetConfigError, match="no track folders"):
        roots.detect_layout(str(tmp_path / "empty"))
    with pytest.raises(DatasetConfigError, match="does not exist"):
        roots.detect_layout(str(tmp_path / "absent"))


def test_hq_track_decodes_to_vocals_and_summed_accompaniment(hq_root: Path) -> None:
    tracks = roots.discover_tracks(roots.DatasetRoot(str(hq_root), name="hq"))
    assert [track.track_id for track in tracks] == [f"hq/synth_00{i}" for i in range(3)]
    first = tracks[0]
    assert first.layout == "hq" and not first.missing
    assert sorted(stem.path.rsplit("/", 1)[-1] for stem in first.stems) == [
        "bass.wav",
        "drums.wav",
        "other.wav",
        "vocals.wav",
    ]
    audio = load_track(first, IngestConfig())
    vocals, accompaniment = _sources(hq_root / "synth_000")
    np.testing.assert_array_equal(audio.vocals, vocals)
    np.testing.assert_array_equal(audio.accompaniment, accompaniment)
    assert audio.vocals.dtype == np.float32 and audio.sample_rate == SAMPLE_RATE


def test_generic_folders_sum_any_other_stems_and_ignore_the_mixture(tmp_path: Path) -> None:
    folder = synth.write_dataset(tmp_path / "root", 1, SECONDS, seed=2, layout="hq")[0]
    (folder / "drums.wav").rename(folder / "percussion.wav")  # not an HQ name: generic
    (folder / ".hidden.wav").write_bytes(b"ignored")
    (folder / "notes.txt").write_text("ignored")
    root = roots.DatasetRoot(str(tmp_path / "root"), layout="generic")
    (track,) = roots.discover_tracks(root)
    names = sorted(stem.path.rsplit("/", 1)[-1] for stem in track.stems)
    assert names == ["bass.wav", "other.wav", "percussion.wav", "vocals.wav"]
    audio = load_track(track, IngestConfig())
    stems = {name: _read(folder / f"{name}.wav") for name in ("bass", "other", "percussion")}
    np.testing.assert_allclose(audio.accompaniment, sum(stems.values()), atol=1e-7)


def test_generic_accompaniment_file_wins_over_other_stems(tmp_path: Path) -> None:
    folder = synth.write_dataset(tmp_path, 1, SECONDS, layout="generic")[0]
    shutil.copy(folder / "vocals.wav", folder / "guitar.wav")
    (track,) = roots.discover_tracks(roots.DatasetRoot(str(tmp_path)))
    assert [stem.path.rsplit("/", 1)[-1] for stem in track.stems if stem.role != "vocals"] == [
        "accompaniment.wav"
    ]


def test_mono_low_rate_sources_are_resampled_to_44k1_stereo(tmp_path: Path) -> None:
    folder = tmp_path / "root" / "singer_1_01"
    folder.mkdir(parents=True)
    tone = np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000).astype(np.float32) * 0.3
    io.write_audio(folder / "vocals.flac", tone, 16000)
    io.write_audio(folder / "accompaniment.flac", tone[::-1].copy(), 16000)
    (track,) = roots.discover_tracks(roots.DatasetRoot(str(tmp_path / "root")))
    audio = load_track(track, IngestConfig())
    assert audio.vocals.shape == (SAMPLE_RATE, 2)
    np.testing.assert_array_equal(audio.vocals[:, 0], audio.vocals[:, 1])


def test_channel_pairs_split_channels_by_the_channel_map(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    left, right = (rng.uniform(-0.5, 0.5, SAMPLE_RATE).astype(np.float32) for _ in range(2))
    io.write_audio(
        tmp_path / "abjones_1_01.wav", np.stack([left, right], 1), 44100, subtype="FLOAT"
    )
    mir1k_order = roots.DatasetRoot(str(tmp_path), name="mir1k")
    (track,) = roots.discover_tracks(mir1k_order)
    assert track.layout == "channel_pairs" and track.track_id == "mir1k/abjones_1_01"
    audio = load_track(track, IngestConfig())
    np.testing.assert_array_equal(audio.accompaniment, np.stack([left, left], 1))
    np.testing.assert_array_equal(audio.vocals, np.stack([right, right], 1))
    swapped = roots.DatasetRoot(str(tmp_path), channel_map=("vocals", "accompaniment"))
    audio = load_track(roots.discover_tracks(swapped)[0], IngestConfig())
    np.testing.assert_array_equal(audio.vocals[:, 0], left)


def write_stem_mp4(folder: Path, path: Path) -> None:
    """A MUSDB-style five-stream AAC ``.stem.mp4`` from a synth HQ folder."""
    names = ("mixture", "drums", "bass", "other", "vocals")
    inputs = [arg for name in names for arg in ("-i", str(folder / f"{name}.wav"))]
    maps = [arg for index in range(len(names)) for arg in ("-map", str(index))]
    command = ["ffmpeg", "-v", "error", "-y", *inputs, *maps, "-c:a", "aac", "-b:a", "256k"]
    subprocess.run([*command, "-f", "mp4", str(path)], check=True)


def test_musdb_stem_files_read_streams_in_musdb_order(hq_root: Path, tmp_path: Path) -> None:
    write_stem_mp4(hq_root / "synth_001", tmp_path / "Leaf - Summerghost.stem.mp4")
    write_stem_mp4(hq_root / "synth_002", tmp_path / "Some - Song.stem.mp4")
    tracks = roots.discover_tracks(roots.DatasetRoot(str(tmp_path), name="musdb"))
    assert [(t.track_id, t.layout, t.split) for t in tracks] == [
        ("musdb/Leaf - Summerghost", "musdb_stems", "eval"),  # official validation track
        ("musdb/Some - Song", "musdb_stems", "train"),
    ]
    assert {stem.stream: stem.role for stem in tracks[0].stems} == {
        1: "accompaniment",
        2: "accompaniment",
        3: "accompaniment",
        4: "vocals",
    }
    audio = load_track(tracks[0], IngestConfig())
    vocals, accompaniment = _sources(hq_root / "synth_001")
    assert audio.num_samples == len(vocals)
    # AAC at 256 kb/s: close to the source, not bit-exact.
    assert np.sqrt(np.mean((audio.vocals - vocals) ** 2)) < 0.01
    assert np.sqrt(np.mean((audio.accompaniment - accompaniment) ** 2)) < 0.01


def test_combined_roots_need_unique_names(hq_root: Path, tmp_path: Path) -> None:
    synth.write_dataset(tmp_path / "extra", 2, SECONDS, seed=9, layout="generic")
    combined = roots.discover_all(
        [roots.DatasetRoot(str(hq_root)), roots.DatasetRoot(str(tmp_path / "extra"))]
    )
    assert [track.root for track in combined] == [hq_root.name] * 3 + ["extra"] * 2
    assert len({track.track_id for track in combined}) == 5
    with pytest.raises(DatasetConfigError, match="unique"):
        roots.discover_all(
            [roots.DatasetRoot(str(hq_root), name="a"), roots.DatasetRoot(str(tmp_path), name="a")]
        )


def test_track_examples_are_segments_for_train_and_whole_tracks_for_eval(hq_root: Path) -> None:
    train, eval_track = (
        roots.TrackSource(**{**vars(track), "split": split})
        for track, split in zip(
            roots.discover_tracks(roots.DatasetRoot(str(hq_root), name="hq"))[:2],
            ("train", "eval"),
            strict=True,
        )
    )
    config = IngestConfig(segment_samples=16384)
    record, examples = track_examples(train, config)
    parsed = [parse_example(example.SerializeToString()) for example in examples]
    vocals, accompaniment = _sources(hq_root / "synth_000")
    # 44100 samples: two back-to-back segments, then a 11332-sample tail (>= half) end-aligned.
    assert record.examples == len(parsed) == 3
    assert [p["segment_start"] for p in parsed] == [0, 16384, 44100 - 16384]
    for index, example in enumerate(parsed):
        start = example["segment_start"]
        assert example["segment_index"] == index and example["num_samples"] == 16384
        assert example["track_id"] == "hq/synth_000" and example["split"] == "train"
        np.testing.assert_array_equal(example["vocals"], vocals[start : start + 16384])
        np.testing.assert_array_equal(
            example["accompaniment"], accompaniment[start : start + 16384]
        )
    record, examples = track_examples(eval_track, config)
    (whole,) = [parse_example(example.SerializeToString()) for example in examples]
    assert record.examples == 1 and whole["num_samples"] == 44100 and whole["split"] == "eval"


def test_config_round_trips_through_the_component(hq_root: Path) -> None:
    dataset_roots = [
        roots.DatasetRoot(f"{hq_root}/drops/{{SPAN}}", name="drops"),
        roots.mir1k_root("/data/mir1k"),
    ]
    ingest = IngestConfig(segment_samples=1000, hop_samples=500, silence_threshold_db=-50.0)
    component = multitrack_example_gen(dataset_roots, ingest, eval_percent=20)
    # The executor sees exec properties as JSON strings, as the orchestrator passes them.
    properties = {
        key: proto_utils.proto_to_json(value) if isinstance(value, message.Message) else value
        for key, value in component.exec_properties.items()
    }
    assert decode_custom_config(properties["custom_config"]) == (dataset_roots, ingest)
    assert properties["input_base"] == f"{hq_root}/drops"
    assert json.loads(properties["input_config"])["splits"][0]["pattern"] == "{SPAN}/*"
    # The driver replaces {SPAN} with the newest span before the executor runs.
    properties["input_config"] = properties["input_config"].replace("{SPAN}", "7")
    resolved = resolved_roots(properties)
    assert resolved == [dataset_roots[0].with_path(f"{hq_root}/drops/7"), dataset_roots[1]]
    assert resolved[0].name == "drops"  # track ids stay stable from one drop to the next
    assert split_ratio(properties) == splits.SplitRatio(20, 100)


def test_input_base_and_pattern() -> None:
    assert input_base_and_pattern("/data/musdb/") == ("/data/musdb", "*")
    assert input_base_and_pattern("/d/drops/span-{SPAN}") == ("/d/drops", "span-{SPAN}/*")
    assert input_base_and_pattern("gs://b/{SPAN}/train") == ("gs://b", "{SPAN}/train/*")
    with pytest.raises(DatasetConfigError, match="first root"):
        multitrack_example_gen([roots.DatasetRoot("/a"), roots.DatasetRoot("/b/{SPAN}")])


def test_a_span_root_reads_its_newest_drop_as_example_gen_does(tmp_path: Path) -> None:
    for name in ("span-1", "span-12", "span-3", "span-x", "other"):
        (tmp_path / "drops" / name).mkdir(parents=True)
    root = roots.DatasetRoot(str(tmp_path / "drops" / "span-{SPAN}"), name="songs")
    assert root.with_newest_span().path == str(tmp_path / "drops" / "span-12")
    assert root.base_folder == str(tmp_path / "drops")  # where the drops are listed
    assert root.with_newest_span().base_folder == str(tmp_path / "drops" / "span-12")
    assert root.with_newest_span().name == "songs"
    plain = roots.DatasetRoot(str(tmp_path / "drops" / "span-1"), name="songs")
    assert plain.with_newest_span() == plain
    with pytest.raises(DatasetConfigError, match="no folder under"):
        roots.DatasetRoot(str(tmp_path / "drops" / "drop-{SPAN}"), name="songs").with_newest_span()
