"""Ingestion settings shared by the ExampleGen executor, the Transform and the tests.

The train segment length is chosen in STFT frames, not seconds: a segment of exactly
``patch_frames`` frames gives the U-Net whole patches with no frame wasted on padding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vocalsep.audio import dsp, io
from vocalsep.configs import from_plain_values

MODEL_PATCH_FRAMES = 256


def samples_for_frames(frames: int, config: dsp.StftConfig) -> int:
    """Longest waveform whose ``dsp.stft`` has exactly ``frames`` frames.

    ``dsp.num_frames(n) = (n + n_fft - 1) // hop``, so ``frames * hop - (n_fft - hop)`` samples
    make ``frames`` frames and one more sample would start another.
    """
    samples = frames * config.hop_length - (config.n_fft - config.hop_length)
    if samples < 1:
        raise ValueError(f"{frames} frames of n_fft {config.n_fft} cannot hold a sample")
    return samples


DEFAULT_SEGMENT_SAMPLES = samples_for_frames(MODEL_PATCH_FRAMES, dsp.StftConfig())


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    """How tracks become examples.

    ``segment_samples`` defaults to 256 STFT frames (259072 samples, 5.875 s at 44.1 kHz), so a
    6.8 s MUSDB clip yields one segment. ``hop_samples`` 0 means back-to-back segments. A tail
    of at least ``min_segment_fraction`` of a segment becomes one more segment, aligned to the
    end of the track (or zero-padded when the whole track is shorter than a segment), so short
    clips such as MIR-1K's 3-12 s ones are not lost.
    """

    sample_rate: int = io.MODEL_SAMPLE_RATE
    segment_samples: int = DEFAULT_SEGMENT_SAMPLES
    hop_samples: int = 0
    min_segment_fraction: float = 0.5
    silence_threshold_db: float = -60.0

    def __post_init__(self) -> None:
        for name in ("sample_rate", "segment_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.hop_samples, int) or self.hop_samples < 0:
            raise ValueError(f"hop_samples must be an int >= 0, got {self.hop_samples!r}")
        if not 0 < self.min_segment_fraction <= 1:
            raise ValueError(
                f"min_segment_fraction must be in (0, 1], got {self.min_segment_fraction}"
            )

    @property
    def segment_hop(self) -> int:
        """Samples between the starts of consecutive train segments."""
        return self.hop_samples or self.segment_samples

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for TFX custom_config (JSON/Struct) round trips."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> IngestConfig:
        """Inverse of to_dict; Struct numbers arrive as floats, so ints are restored here."""
        return from_plain_values(cls, values, "ingest")
