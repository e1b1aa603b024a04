"""Standard CIFAR augmentation on whole batches of tensors, from a seeded generator.

He et al. (2016), section 4.2: "4 pixels are padded on each side, and a 32x32 crop is randomly
sampled from the padded image or its horizontal flip" (OpenLTH: torchvision `RandomCrop(32,
padding=4)` and `RandomHorizontalFlip()`). Here one gather does it for the whole batch: no
per-example Python. The padding is zeros of the *normalised* tensors (the per-channel mean
pixel), where torchvision pads the raw image with black before normalising.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAD = 4


def crop_and_flip(x: torch.Tensor, generator: torch.Generator, pad: int = PAD) -> torch.Tensor:
    """Each image of `x` (N, C, H, W) cropped to H x W from its zero-padded copy at a random
    offset and flipped left-right with probability 1/2; draws come from `generator` (CPU)."""
    n, c, h, w = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    device = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    ar_h = torch.arange(h, device=device)
    ar_w = torch.arange(w, device=device)
    rows = offsets[0].to(device)[:, None] + ar_h  # (N, H)
    flips = flips.to(device)[:, None]
    cols = offsets[1].to(device)[:, None] + torch.where(flips, w - 1 - ar_w, ar_w)  # (N, W)
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(c, device=device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
