"""Reader for `kind: synthetic`: generated images labelled by a fixed random teacher.

No files: `make_synthetic` draws smooth random colour fields and labels each with
a seeded "teacher" network (docs/data.md explains why accuracy then rises with a
child's capacity). Deterministic in (num_classes, size, seed, stream).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.nn import functional as F

from nas.data.config import DataConfig
from nas.data.raw import Budget, Raw
from search_spaces.infra.seeds import seed_for


def read_synthetic(cfg: DataConfig, resolution: int, source: str, budget: Budget) -> Raw:
    s = cfg.synthetic
    # uint8 images plus the float32 canvas they are rendered on
    budget.check((s.train_size + s.test_size) * 3 * s.image_size**2 * 5,
                 f"data.synthetic: {s.train_size + s.test_size:,} images of {s.image_size}x"
                 f"{s.image_size}", source)
    images, labels = make_synthetic(s.train_size, s.num_classes, s.image_size, s.noise,
                                    seed=s.seed, stream=0)
    test_images, test_labels = make_synthetic(s.test_size, s.num_classes, s.image_size,
                                              s.noise, seed=s.seed, stream=1)
    return Raw(images, labels.numpy(), test_images if s.test_size else None,
               test_labels.numpy() if s.test_size else None, synthetic_classes(s.num_classes),
               f"synthetic seed {s.seed}")


def synthetic_classes(num_classes: int) -> tuple[str, ...]:
    """Class k is the teacher's output k (there are no hand-made class meanings)."""
    return tuple(f"teacher-{k}" for k in range(num_classes))


def make_synthetic(n: int, num_classes: int = 10, size: int = 32, noise: float = 0.05,
                   seed: int = 0, stream: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` generated images (uint8 N x 3 x size x size) and their labels.

    An image is a smooth random colour field; its label is the decision of a fixed
    random "teacher" network on that field. The field lives on a grid a quarter of the
    image side (8 x 8 for 32 x 32 images): per channel, white noise plus bilinearly
    upsampled coarser noise (2 x 2 and 4 x 4 there), scaled per image and squashed
    into 0..1. The image is the field upsampled to size x size plus Gaussian pixel
    noise (`noise`, unseen by the teacher). The teacher: 32 random 3 x 3 filters, each
    paired with its mirror image (so a horizontal flip, as augmentation does, keeps the
    label), ReLU, the mean over positions, standardised, a random linear map to
    `num_classes` scores with per-class offsets that balance the classes on a fixed
    reference sample, argmax. A child has to estimate 32 nonlinear texture statistics
    from an upsampled, noisy view; within a short proxy run wider children learn more
    of them, so accuracy rises with capacity and stays well below 1 (docs/data.md).

    The teacher depends on (num_classes, size, seed) only; the images also on
    `stream` (0: the train pool, 1: the test set). Deterministic in all of them.
    """
    teacher = _synthetic_teacher(num_classes, size, seed)
    g = torch.Generator().manual_seed(seed_for(seed, stream, "linear"))
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    labels = torch.empty(n, dtype=torch.int64)
    for start in range(0, n, 2048):  # chunks bound the float temporaries
        stop = min(n, start + 2048)
        fields = _synthetic_fields(stop - start, size, g)
        labels[start:stop] = teacher.labels(fields)
        images[start:stop] = _render(fields, size, noise, g)
    return images, labels


_TEACHER_FILTERS = 32  # plus as many mirror images
_TEACHER_KERNEL = 3


def _synthetic_fields(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """n x 3 x grid x grid colour fields in 0..1, grid = size / 4."""
    grid = max(1, size // 4)
    out = 0.5 * torch.randn(n, 3, grid, grid, generator=g)
    for div, weight in ((4, 1.0), (2, 0.7)):  # 2 x 2 and 4 x 4 noise on an 8 x 8 grid
        coarse = max(1, grid // div)
        out += weight * _upsample(torch.randn(n, 3, coarse, coarse, generator=g), grid)
    out /= out.flatten(1).std(1).clamp_min(1e-6).view(-1, 1, 1, 1)
    return torch.sigmoid(1.5 * out)


def _upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize (align_corners=False) of N x C x s x s to N x C x size x size.

    As two small matrix products, several times faster on CPU than F.interpolate.
    """
    s = x.shape[-1]
    eye = torch.eye(s).view(s, 1, s, 1)
    m = F.interpolate(eye, size=(size, 1), mode="bilinear", align_corners=False)
    m = m.view(s, size).T  # size x s
    return m @ x @ m.T


@dataclass(frozen=True)
class _Teacher:
    """The labelling function of the synthetic data (float64: no near-tie flips)."""

    filters: torch.Tensor  # 2F x 3 x k x k: F random filters, then their mirror images
    head: torch.Tensor     # num_classes x F
    mean: torch.Tensor     # F: feature standardisation, from the reference sample
    std: torch.Tensor
    offset: torch.Tensor   # num_classes: balances the classes on the reference sample

    def features(self, fields: torch.Tensor) -> torch.Tensor:
        h = F.conv2d((fields.double() - 0.5) * 4, self.filters, padding=_TEACHER_KERNEL // 2)
        h = F.relu(h).mean((2, 3))
        return h[:, :_TEACHER_FILTERS] + h[:, _TEACHER_FILTERS:]  # mirror-invariant

    def scores(self, fields: torch.Tensor) -> torch.Tensor:
        return ((self.features(fields) - self.mean) / self.std) @ self.head.T

    def labels(self, fields: torch.Tensor) -> torch.Tensor:
        return (self.scores(fields) + self.offset).argmax(1)


@functools.lru_cache(maxsize=8)
def _synthetic_teacher(num_classes: int, size: int, seed: int) -> _Teacher:
    g = torch.Generator().manual_seed(seed_for(seed, 1_000_002, "linear"))  # no image stream's
    k = _TEACHER_KERNEL
    w = torch.randn(_TEACHER_FILTERS, 3, k, k, generator=g, dtype=torch.float64)
    w = torch.cat([w, w.flip(3)]) * math.sqrt(2.0 / (3 * k * k))
    head = torch.randn(num_classes, _TEACHER_FILTERS, generator=g, dtype=torch.float64)
    zero = torch.zeros(_TEACHER_FILTERS, dtype=torch.float64)
    raw = _Teacher(w, head, zero, zero + 1, torch.zeros(num_classes, dtype=torch.float64))
    ref = raw.features(_synthetic_fields(4096, size, g))
    teacher = replace(raw, mean=ref.mean(0), std=ref.std(0).clamp_min(1e-6))
    scores = (((ref - teacher.mean) / teacher.std) @ head.T).numpy()
    offset = np.zeros(num_classes)
    for _ in range(300):  # nudge the offsets until the reference sample is balanced
        counts = np.bincount((scores + offset).argmax(1), minlength=num_classes)
        offset -= 0.05 * (counts / counts.mean() - 1)
    return replace(teacher, offset=torch.from_numpy(offset))


def _render(fields: torch.Tensor, size: int, noise: float, g: torch.Generator
            ) -> torch.Tensor:
    """The fields upsampled to size x size, plus pixel noise, quantised to uint8."""
    img = _upsample(fields, size)
    img += noise * torch.randn(img.shape, generator=g)
    return img.mul_(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
