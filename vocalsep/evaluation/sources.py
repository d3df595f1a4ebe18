"""Where eval tracks come from: the ExampleGen's eval split, or a dataset root on disk.

Both yield :class:`EvalTrack` or, for a track that cannot be read, :class:`SkippedTrack`, so
one corrupt track costs that track only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import tensorflow as tf

from vocalsep.data import splits
from vocalsep.data.config import IngestConfig
from vocalsep.data.examples import parse_example
from vocalsep.data.roots import STEM_MP4_SUFFIX, DatasetRoot, discover_tracks, join, musdb_root
from vocalsep.data.tracks import load_mixture, load_track, rejection_reason
from vocalsep.errors import AudioError, TrackRejectedError
from vocalsep.evaluation.evaluate import EvalTrack, SkippedTrack


def tracks_from_examples(split_dir: str) -> Iterator[EvalTrack | SkippedTrack]:
    """Whole-track examples of one ExampleGen split folder (``.../Split-eval``), file by file.

    Examples hold the sources only, so these tracks' mixture is their sum (the SdrEvaluator's
    convention, like the Trainer's validation).

    A record that does not parse, or a file whose compression is damaged, becomes a skip
    naming the file; later files are still read.
    """
    files = sorted(tf.io.gfile.glob(f"{split_dir.rstrip('/')}/*"))
    for path in files:
        index = 0
        try:
            for record in tf.data.TFRecordDataset([path], compression_type="GZIP"):
                index += 1
                try:
                    example = parse_example(record.numpy())
                except Exception as error:  # any malformed record costs that record only
                    yield SkippedTrack(f"{path}#{index}", f"unparsable example: {error}")
                    continue
                yield EvalTrack(
                    example["track_id"],
                    example["vocals"],
                    example["accompaniment"],
                    example["sample_rate"],
                )
        except tf.errors.OpError as error:
            yield SkippedTrack(path, f"unreadable after {index} records: {error.message}")


def tracks_from_root(
    root: DatasetRoot, split: str = splits.EVAL, ingest: IngestConfig | None = None
) -> Iterator[EvalTrack | SkippedTrack]:
    """The tracks of ``root`` in ``split`` (``"eval"``, ``"train"`` or ``"all"``), decoded as
    the ExampleGen decodes them, with the dataset's own mixture where a track has one;
    rejected tracks become skips with the rejection reason."""
    ingest = ingest or IngestConfig()
    wanted: Sequence[str] = splits.SPLITS if split == "all" else (split,)
    for track in discover_tracks(root):
        if track.split not in wanted:
            continue
        try:
            audio = load_track(track, ingest)
            mixture = load_mixture(track, ingest, audio.num_samples)
        except (TrackRejectedError, AudioError) as error:
            yield SkippedTrack(track.track_id, f"{rejection_reason(error)}: {error}")
            continue
        yield EvalTrack(
            track.track_id, audio.vocals, audio.accompaniment, audio.sample_rate, mixture
        )


def dataset_root(path: str) -> DatasetRoot:
    """The root ``vocalsep evaluate --data`` reads: a MUSDB18 folder with ``train/`` (and
    ``test/``) subsets is read from ``train/`` with the official validation split, as the
    ``musdb`` package reads it; any other folder as the ExampleGen reads it (layout and split
    rule detected)."""
    train = join(path, "train")
    holds_stems = tf.io.gfile.isdir(path) and any(
        name.endswith(STEM_MP4_SUFFIX) for name in tf.io.gfile.listdir(path)
    )
    if not holds_stems and tf.io.gfile.isdir(train):
        name = path.rstrip("/").rsplit("/", 1)[-1] or "musdb"
        return musdb_root(train, name=name)
    return DatasetRoot(path)
