"""Dataset roots, their layouts, and discovering one :class:`TrackSource` per track.

Layouts (``DatasetRoot.layout``, detected when ``"auto"``):

* ``musdb_stems``: ``<root>/<track>.stem.mp4`` with streams mixture, drums, bass, other, vocals.
* ``hq``: MUSDB18-HQ folders ``<track>/{mixture,drums,bass,other,vocals}.<ext>``; all four
  stems are required, so a folder missing one is rejected rather than summed short.
* ``generic``: ``<track>/vocals.<ext>`` plus ``accompaniment.<ext>`` or any other stem files,
  which are summed into the accompaniment. A ``mixture`` file is never needed.
* ``channel_pairs``: ``<root>/<track>.<ext>``, two-channel files whose channels are the two
  sources (MIR-1K's original WAVs: left accompaniment, right vocals); see ``channel_map``.

Where a track has its own mixture (MUSDB's stream 0, a ``mixture``/``mix`` file), it is recorded
as ``TrackSource.mixture``: evaluation separates it, as a user would; training uses the exact
sum of the stems.

Discovery only lists files, so it is cheap and never rejects: a track missing a stem is still
discovered (with ``missing`` set) and rejected, with its reason, where it is decoded. Paths go
through ``tf.io.gfile``, so roots may live on any filesystem TensorFlow knows (``gs://``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import tensorflow as tf

from vocalsep.data import splits
from vocalsep.errors import DatasetConfigError

LAYOUTS = ("auto", "musdb_stems", "hq", "generic", "channel_pairs")
SOURCES = ("vocals", "accompaniment")
SPAN_TOKEN = "{SPAN}"
STEM_MP4_SUFFIX = ".stem.mp4"
# MUSDB18 stream order: 0 mixture, 1 drums, 2 bass, 3 other, 4 vocals.
MUSDB_STREAMS: Mapping[str, int] = {"drums": 1, "bass": 2, "other": 3, "vocals": 4}
MUSDB_MIXTURE_STREAM = 0
MIXTURE_ROLE = "mixture"
HQ_STEMS = ("vocals", "drums", "bass", "other")
MIXTURE_NAMES = ("mixture", "mix")
"""File names of a track's own mixture, the first found wins."""
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".mp4", ".wv"}
)
# MIR-1K's customary held-out pair (one male, one female singer; 175 of 1000 clips).
MIR1K_VALIDATION_SINGERS = ("abjones", "amy")


@dataclasses.dataclass(frozen=True)
class DatasetRoot:
    """One dataset folder and how to read and split it.

    ``name`` prefixes every track id (``<name>/<track>``), so it must be unique among the
    roots of a run; it defaults to the folder name. ``split_rule``:

    * ``"auto"``: ``"list"`` when ``validation_tracks`` is given, else ``"musdb"`` for a
      MUSDB-style root (``musdb_stems``/``hq``) holding any official validation track, else
      ``"hash"``;
    * ``"hash"``: a stable hash of ``<name>/<track or group>`` picks eval by the run's ratio;
    * ``"list"``: exactly the names in ``validation_tracks`` are eval;
    * ``"musdb"``: MUSDB18's official 14 validation tracks are eval.

    With ``group_separator`` set, the part of a track name before it is the track's group
    (MIR-1K: the singer), whole groups go to one split, and ``validation_tracks`` names groups.
    ``channel_map`` says which source each channel of a ``channel_pairs`` file holds.
    """

    path: str
    layout: str = "auto"
    name: str = ""
    split_rule: str = "auto"
    validation_tracks: tuple[str, ...] = ()
    group_separator: str = ""
    channel_map: tuple[str, str] = ("accompaniment", "vocals")

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise DatasetConfigError(f"{self.path}: layout must be one of {LAYOUTS}")
        if self.split_rule not in splits.SPLIT_RULES:
            raise DatasetConfigError(f"{self.path}: split_rule must be one of {splits.SPLIT_RULES}")
        if sorted(self.channel_map) != sorted(SOURCES):
            raise DatasetConfigError(
                f"{self.path}: channel_map must name each of {SOURCES} once, got {self.channel_map}"
            )
        if self.split_rule == "list" and not self.validation_tracks:
            raise DatasetConfigError(f"{self.path}: split_rule 'list' needs validation_tracks")
        # Tuples keep the dataclass hashable even when lists come from JSON.
        object.__setattr__(self, "validation_tracks", tuple(self.validation_tracks))
        object.__setattr__(self, "channel_map", tuple(self.channel_map))
        if not self.name:
            object.__setattr__(self, "name", _default_name(self.path))
        if not self.name or "/" in self.name:
            raise DatasetConfigError(f"{self.path}: root name {self.name!r} must be a plain name")

    def to_dict(self) -> dict[str, Any]:
        """Plain values for TFX custom_config."""
        values = dataclasses.asdict(self)
        return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DatasetRoot:
        """Inverse of to_dict."""
        return cls(**dict(values))

    @property
    def base_folder(self) -> str:
        """The folder every ``{SPAN}`` drop lies under (the path itself without one): where
        ExampleGen lists the drops, and what a container must see to read any of them."""
        if SPAN_TOKEN not in self.path:
            return self.path
        parts, index = self._span_part()
        return "/".join(parts[:index]) or "/"

    def _span_part(self) -> tuple[list[str], int]:
        """The path's parts, and which one holds ``{SPAN}``."""
        parts = self.path.rstrip("/").split("/")
        return parts, next(i for i, part in enumerate(parts) if SPAN_TOKEN in part)

    def with_path(self, path: str) -> DatasetRoot:
        """The same root read from another folder (a resolved ``{SPAN}`` drop)."""
        return dataclasses.replace(self, path=path)

    def with_newest_span(self) -> DatasetRoot:
        """The root read from its newest ``{SPAN}`` drop (the highest span number), as
        ExampleGen picks it without a RangeConfig; unchanged without ``{SPAN}``."""
        if SPAN_TOKEN not in self.path:
            return self
        parent = self.base_folder
        parts, index = self._span_part()
        pattern = re.compile(re.escape(parts[index]).replace(re.escape(SPAN_TOKEN), r"(\d+)"))
        spans = [
            (int(match.group(1)), name)
            for name, is_dir in _list_dir(parent)
            if is_dir and (match := pattern.fullmatch(name))
        ]
        if not spans:
            raise DatasetConfigError(
                f"{self.path}: no folder under {parent} matches {parts[index]}"
            )
        return self.with_path("/".join([*parts[:index], max(spans)[1], *parts[index + 1 :]]))


def musdb_root(path: str, name: str = "musdb") -> DatasetRoot:
    """A MUSDB18 (``.stem.mp4``) or MUSDB18-HQ root, split by the official validation list."""
    return DatasetRoot(path=path, name=name, split_rule="musdb")


def mir1k_root(path: str, name: str = "mir1k") -> DatasetRoot:
    """MIR-1K as folders of vocals/accompaniment files, held out by singer, never by clip."""
    return DatasetRoot(
        path=path,
        name=name,
        layout="generic",
        split_rule="list",
        validation_tracks=MIR1K_VALIDATION_SINGERS,
        group_separator="_",
    )


@dataclasses.dataclass(frozen=True)
class StemFile:
    """Where one stem's samples are: a file, an audio stream of it, or one channel of it."""

    role: str
    """``vocals`` or ``accompaniment`` (several accompaniment stems are summed), or
    ``mixture`` for a track's own mixture."""
    path: str
    stream: int = 0
    channel: int = -1
    """Channel index for channel-pair files; -1 means the whole (stereo) stream."""


@dataclasses.dataclass(frozen=True)
class TrackSource:
    """Everything needed to decode one track, decided before any audio is read."""

    track_id: str
    root: str
    name: str
    layout: str
    split: str
    path: str
    """The track's folder or file, as listed in rejects and manifests."""
    stems: tuple[StemFile, ...]
    missing: tuple[str, ...] = ()
    """Stems the layout requires but the folder lacks; such a track is rejected."""
    mixture: StemFile | None = None
    """The dataset's own mixture (role ``mixture``), where the track has one."""


def _default_name(path: str) -> str:
    parts = [part for part in path.rstrip("/").split("/") if part and SPAN_TOKEN not in part]
    return parts[-1] if parts else ""


def join(base: str, name: str) -> str:
    """Path join that keeps URL schemes intact (``gs://bucket/a`` + ``b``)."""
    return f"{base.rstrip('/')}/{name}"


def _list_dir(path: str) -> list[tuple[str, bool]]:
    """Sorted (name, is_dir) of a folder's visible entries."""
    try:
        names = tf.io.gfile.listdir(path)
    except tf.errors.NotFoundError:
        raise DatasetConfigError(f"{path}: dataset folder does not exist") from None
    entries = []
    for raw_name in names:
        name = raw_name.rstrip("/")
        if name.startswith("."):
            continue
        entries.append((name, raw_name.endswith("/") or tf.io.gfile.isdir(join(path, name))))
    return sorted(entries)


def _split_extension(file_name: str) -> tuple[str, str]:
    """('vocals', '.wav') for 'vocals.wav'; ('Song', '.stem.mp4') for MUSDB stem files."""
    if file_name.lower().endswith(STEM_MP4_SUFFIX):
        return file_name[: -len(STEM_MP4_SUFFIX)], STEM_MP4_SUFFIX
    stem, dot, extension = file_name.rpartition(".")
    return (stem, f".{extension.lower()}") if dot and stem else (file_name, "")


def _audio_files(entries: Iterable[tuple[str, bool]]) -> dict[str, str]:
    """Stem name -> file name of the audio files among a folder's entries (first one wins)."""
    files: dict[str, str] = {}
    for name, is_dir in entries:
        stem, extension = _split_extension(name)
        if not is_dir and extension in AUDIO_EXTENSIONS:
            files.setdefault(stem.lower(), name)
    return files


def detect_layout(path: str) -> str:
    """Infer a root's layout from its listing (see the module docstring)."""
    entries = _list_dir(path)
    if any(name.lower().endswith(STEM_MP4_SUFFIX) and not is_dir for name, is_dir in entries):
        return "musdb_stems"
    folders = [name for name, is_dir in entries if is_dir]
    if folders:
        stem_sets = [set(_audio_files(_list_dir(join(path, folder)))) for folder in folders]
        complete_hq = sum(set(HQ_STEMS) <= stems for stems in stem_sets)
        return "hq" if 2 * complete_hq > len(stem_sets) else "generic"
    if any(_split_extension(name)[1] in AUDIO_EXTENSIONS for name, _ in entries):
        return "channel_pairs"
    raise DatasetConfigError(f"{path}: no track folders or audio files found")


def _track_names(path: str, layout: str) -> list[tuple[str, str]]:
    """(track name, entry name) of a root's tracks in listing order."""
    entries = _list_dir(path)
    if layout == "musdb_stems":
        return [
            (_split_extension(name)[0], name)
            for name, is_dir in entries
            if not is_dir and name.lower().endswith(STEM_MP4_SUFFIX)
        ]
    if layout == "channel_pairs":
        return [
            (_split_extension(name)[0], name)
            for name, is_dir in entries
            if not is_dir and _split_extension(name)[1] in AUDIO_EXTENSIONS
        ]
    return [(name, name) for name, is_dir in entries if is_dir]


def _stems_of(
    root: DatasetRoot, layout: str, track_path: str
) -> tuple[tuple[StemFile, ...], tuple[str, ...], StemFile | None]:
    """The stem files of one track, the names of required stems that are missing, and the
    track's own mixture if it has one."""
    if layout == "musdb_stems":
        stems = tuple(
            StemFile("vocals" if stem == "vocals" else "accompaniment", track_path, stream)
            for stem, stream in MUSDB_STREAMS.items()
        )
        return stems, (), StemFile(MIXTURE_ROLE, track_path, MUSDB_MIXTURE_STREAM)
    if layout == "channel_pairs":
        return (
            tuple(
                StemFile(role, track_path, channel=root.channel_map.index(role)) for role in SOURCES
            ),
            (),
            None,
        )
    files = _audio_files(_list_dir(track_path))
    if layout == "hq":
        missing = tuple(stem for stem in HQ_STEMS if stem not in files)
        accompaniment_names = [stem for stem in HQ_STEMS[1:] if stem in files]
    else:
        missing = () if "vocals" in files else ("vocals",)
        others = [stem for stem in files if stem != "vocals" and stem not in MIXTURE_NAMES]
        accompaniment_names = ["accompaniment"] if "accompaniment" in files else sorted(others)
        if not accompaniment_names:
            missing = (*missing, "accompaniment")
    stems = [StemFile("vocals", join(track_path, files["vocals"]))] if "vocals" in files else []
    stems += [StemFile("accompaniment", join(track_path, files[n])) for n in accompaniment_names]
    mixture_name = next((name for name in MIXTURE_NAMES if name in files), None)
    mixture = (
        StemFile(MIXTURE_ROLE, join(track_path, files[mixture_name])) if mixture_name else None
    )
    return tuple(stems), missing, mixture


def discover_tracks(
    root: DatasetRoot, ratio: splits.SplitRatio = splits.DEFAULT_RATIO
) -> list[TrackSource]:
    """All tracks of one root, with their split, sorted by name."""
    layout = detect_layout(root.path) if root.layout == "auto" else root.layout
    names = _track_names(root.path, layout)
    if not names:
        raise DatasetConfigError(f"{root.path}: no tracks found for layout {layout!r}")
    chooser = splits.SplitChooser.for_root(
        root_name=root.name,
        rule=root.split_rule,
        validation_tracks=root.validation_tracks,
        group_separator=root.group_separator,
        musdb_style=layout in ("musdb_stems", "hq"),
        track_names=[name for name, _ in names],
        ratio=ratio,
    )
    tracks = []
    for name, entry in names:
        track_path = join(root.path, entry)
        stems, missing, mixture = _stems_of(root, layout, track_path)
        tracks.append(
            TrackSource(
                track_id=f"{root.name}/{name}",
                root=root.name,
                name=name,
                layout=layout,
                split=chooser.split_of(name),
                path=track_path,
                stems=stems,
                missing=missing,
                mixture=mixture,
            )
        )
    return tracks


def discover_all(
    roots: Sequence[DatasetRoot], ratio: splits.SplitRatio = splits.DEFAULT_RATIO
) -> list[TrackSource]:
    """Tracks of several roots combined; root names must differ so track ids stay unique."""
    names = [root.name for root in roots]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DatasetConfigError(f"root names must be unique, repeated: {duplicates}")
    return [track for root in roots for track in discover_tracks(root, ratio)]
