"""Batches for the trainer's hot path: one pass over a set, augmentation, normalisation.

Augmentation (random crop with padding, horizontal flip) runs on whole uint8 batches
with vectorised torch ops, so the trainer's hot path has no per-image Python loop.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.nn import functional as F

from nas.data.splits import ImageSet


def augment_batch(images: torch.Tensor, generator: torch.Generator,
                  padding: int = 4) -> torch.Tensor:
    """Random crop after zero padding, and random horizontal flip, of a uint8 NCHW batch.

    One gather for the whole batch: every image gets its own crop offset.
    """
    n, c, h, w = images.shape
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h)).to(images.device)  # n x h
        cols = (dx[:, None] + torch.arange(w)).to(images.device)  # n x w
        batch = torch.arange(n, device=images.device)[:, None, None]
        # Advanced indices around a slice: the result is n x h x w x c.
        images = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    flip = (torch.rand(n, generator=generator) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(3), images).contiguous()


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
              ) -> torch.Tensor:
    """uint8 NCHW -> float32, (x/255 - mean) / std per channel."""
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return (images.float() * (1.0 / 255.0) - m) / s


def batches(data: ImageSet, batch_size: int, *, shuffle: bool = False,
            generator: torch.Generator | None = None, drop_last: bool = False
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One pass over `data` as (uint8 images, labels) batches."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else None
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        if order is None:
            yield data.images[start:start + batch_size], data.labels[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield data.images[idx], data.labels[idx]
