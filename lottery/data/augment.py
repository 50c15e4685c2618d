"""Batch augmentation on the device: random crop with padding and random horizontal flip, as whole-batch
tensor ops (no per-image Python), the CIFAR recipe of He et al. (2016), Section 4.2, used by Frankle &
Carbin (2019) for the CIFAR-10 networks."""
from __future__ import annotations

import torch


def pad(x: torch.Tensor, padding: int, fill: torch.Tensor | None = None) -> torch.Tensor:
    """Pad (B, C, H, W) by `padding` pixels on every side with a per-channel `fill` (C,) (default 0)."""
    b, c, h, w = x.shape
    padded = x.new_zeros(b, c, h + 2 * padding, w + 2 * padding)
    if fill is not None:
        padded += fill.to(x).view(1, c, 1, 1)
    padded[:, :, padding:padding + h, padding:padding + w] = x
    return padded


def crop(padded: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Cut a (height, width) window out of each image of `padded`, at per-sample offsets `top`, `left` (B,)."""
    b, c = padded.shape[:2]
    device = padded.device
    rows = (top.view(b, 1) + torch.arange(height, device=device)).view(b, 1, height, 1)
    cols = (left.view(b, 1) + torch.arange(width, device=device)).view(b, 1, 1, width)
    batch = torch.arange(b, device=device).view(b, 1, 1, 1)
    channel = torch.arange(c, device=device).view(1, c, 1, 1)
    return padded[batch, channel, rows, cols]


def random_crop_flip(x: torch.Tensor, padding: int, generator: torch.Generator,
                     fill: torch.Tensor | None = None) -> torch.Tensor:
    """Pad by `padding`, crop back to the input size at a uniform random offset, flip left-right with
    probability 1/2; every random draw comes from `generator` (on x's device)."""
    b, _, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=x.device)
    flip = torch.rand(b, generator=generator, device=x.device) < 0.5
    out = crop(pad(x, padding, fill), offsets[0], offsets[1], h, w)
    return torch.where(flip.view(b, 1, 1, 1), out.flip(3), out)
