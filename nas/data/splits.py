"""From a `data:` section to train / validation / test sets: `load_data` and its types.

Every kind ends up as uint8 NCHW tensors at the search resolution plus int64
labels, split into train / validation / test. The test split is fixed before
anything else (a separate file, or `test_fraction` carved first from the data), so
tuning `val_fraction` or subset sizes never moves a test image into training; search
and NetAdapt only ever see train and validation.

`load_data` dispatches on `data.kind` through `_READERS`, the one table of readers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.nn import functional as F

from nas.data.cifar10 import CIFAR10_CLASSES, read_cifar10
from nas.data.config import DataConfig
from nas.data.imagefolder import read_imagefolder, scan_folder
from nas.data.npz import npz_class_count, read_npz
from nas.data.raw import Budget, Reader
from nas.data.synthetic import read_synthetic
from search_spaces.infra import limits
from search_spaces.infra.errors import UserError
from search_spaces.infra.seeds import seed_for

_READERS: dict[str, Reader] = {
    "synthetic": read_synthetic,
    "npz": read_npz,
    "cifar10": read_cifar10,
    "imagefolder": read_imagefolder,
}


@dataclass(frozen=True)
class ImageSet:
    """Images (uint8, N x C x H x W) with int64 labels and the normalisation to use."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, in 0..1 units, of the training pool
    std: tuple[float, ...]
    augment: bool = False  # the trainer augments batches of this set (training split)
    crop_padding: int = 4

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{self.labels.shape[0]} labels for {self.images.shape[0]} images")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def head(self, n: int) -> "ImageSet":
        """The first `n` images (sets are stored shuffled, so this is a random subset)."""
        return replace(self, images=self.images[:n], labels=self.labels[:n])


@dataclass(frozen=True)
class Splits:
    """Train / validation / test sets of one data set; `test` is None if none was asked."""

    train: ImageSet
    val: ImageSet
    test: ImageSet | None
    source: str  # what was loaded, for logs and reports

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes

    @property
    def num_classes(self) -> int:
        return len(self.train.classes)

    @property
    def mean(self) -> tuple[float, ...]:
        return self.train.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.train.std

    def summary(self) -> str:
        test = len(self.test) if self.test is not None else 0
        return (f"{self.source}: {len(self.train)} train / {len(self.val)} val / {test} test "
                f"images, {self.num_classes} classes, {self.train.resolution}x"
                f"{self.train.resolution}")


def load_data(cfg: DataConfig, resolution: int, source: str,
              max_gib: float = limits.MAX_DATA_GIB) -> Splits:
    """Read, split, subset and resize the data `cfg` describes, in at most `max_gib`
    of images (`limits.max_data_gib`, checked before each allocation).

    `source` is the config file, named in errors about config keys; errors about a
    data file name that file and the key inside it.
    """
    problem = limits.resolution(resolution)
    if problem:
        raise UserError(f"resolution: {problem}", source)
    budget = Budget(max_gib)
    if cfg.kind == "synthetic":  # checked before generating anything
        for key in ("path", "test_path"):
            if getattr(cfg, key) is not None:
                raise UserError(f"data.{key}: synthetic data reads no files", source)
        if cfg.test_fraction is not None:
            raise UserError("data.test_fraction: synthetic data generates its own test split "
                            "(data.synthetic.test_size)", source)
    if cfg.download and cfg.kind != "cifar10":
        raise UserError(f"data.download: only kind cifar10 downloads (kind is {cfg.kind})",
                        source)
    if cfg.test_path is not None and cfg.kind == "cifar10":
        raise UserError("data.test_path: cifar10 uses its own test_batch", source)
    raw = _READERS[cfg.kind](cfg, resolution, source, budget)
    own_test = raw.test_images is not None or cfg.kind == "synthetic"
    if own_test and cfg.test_fraction is not None:
        raise UserError(f"data.test_fraction: {raw.source} brings its own test split; "
                        f"leave test_fraction unset", source)
    n = len(raw.labels)
    test_fraction = 0.0 if own_test else (0.1 if cfg.test_fraction is None else cfg.test_fraction)
    # The test split depends on split_seed and test_fraction only, never on val_fraction.
    perm = torch.randperm(n, generator=_generator(cfg.split_seed, "test"))
    n_test = int(round(test_fraction * n))
    test_idx, pool_idx = perm[:n_test], perm[n_test:]
    pool_idx = pool_idx[torch.randperm(len(pool_idx), generator=_generator(cfg.split_seed, "val"))]
    n_val = int(round(cfg.val_fraction * len(pool_idx)))
    val_idx, train_idx = pool_idx[:n_val], pool_idx[n_val:]
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise UserError(f"data: {n} images leave {len(train_idx)} for training and "
                        f"{len(val_idx)} for validation; both need at least one", source)
    # The pool is shuffled, so its first 10,000 images estimate the stats well enough.
    mean, std = _channel_stats(raw.images, pool_idx[:10_000])
    if cfg.train_subset is not None:
        train_idx = train_idx[:cfg.train_subset]
    if cfg.val_subset is not None:
        val_idx = val_idx[:cfg.val_subset]
    n_test_kept = len(raw.test_labels) if raw.test_labels is not None else n_test
    if cfg.test_subset is not None:
        n_test_kept = min(n_test_kept, cfg.test_subset)
    kept = len(train_idx) + len(val_idx) + n_test_kept
    budget.check(kept * 3 * resolution**2,
                 f"data: {kept:,} images at {resolution}x{resolution}", source)

    def make(images: np.ndarray | torch.Tensor, labels: np.ndarray,
             idx: torch.Tensor, augment: bool = False) -> ImageSet:
        picked = _nchw(images, idx)
        return ImageSet(_resize(picked, resolution), torch.as_tensor(labels[idx.numpy()]),
                        raw.classes, mean, std, augment, cfg.crop_padding)

    test: ImageSet | None = None
    if raw.test_images is not None and raw.test_labels is not None:
        t = len(raw.test_labels)
        idx = torch.randperm(t, generator=_generator(cfg.split_seed, "test"))
        if cfg.test_subset is not None:
            idx = idx[:cfg.test_subset]
        test = make(raw.test_images, raw.test_labels, idx) if t else None
    elif n_test:
        test = make(raw.images, raw.labels, test_idx[:cfg.test_subset])
    return Splits(train=make(raw.images, raw.labels, train_idx, cfg.augment),
                  val=make(raw.images, raw.labels, val_idx), test=test, source=raw.source)


def class_count(cfg: DataConfig, source: str, max_gib: float = limits.MAX_DATA_GIB) -> int:
    """How many classes `cfg`'s data has, without reading images where its kind allows
    (synthetic: its config; cifar10: 10; imagefolder: its class folders; npz: its
    `classes` array or largest label): what an experiment opened without data needs."""
    if cfg.kind == "synthetic":
        return cfg.synthetic.num_classes
    if cfg.kind == "cifar10":
        return len(CIFAR10_CLASSES)
    if cfg.kind == "imagefolder" and cfg.path is not None and cfg.path.is_dir():
        return len(scan_folder(cfg.path)[0])
    if cfg.kind == "npz" and cfg.path is not None and cfg.path.is_file():
        count = npz_class_count(cfg.path)
        if count is not None:
            return count
    # a missing or unreadable file: the error a run would give, from reading it
    return load_data(cfg, 32, source, max_gib).num_classes


def load_whole(cfg: DataConfig, resolution: int, mean: tuple[float, ...],
               std: tuple[float, ...], source: str, max_gib: float = limits.MAX_DATA_GIB
               ) -> ImageSet:
    """Every image of a data file to score a trained network on: its own test arrays
    when it has them (`x_test`/`y_test`, CIFAR's test_batch), else all of it, in file
    order, normalised with the network's `mean`/`std` (not statistics of the file)."""
    budget = Budget(max_gib)
    raw = _READERS[cfg.kind](cfg, resolution, source, budget)
    images, labels = raw.images, raw.labels
    if raw.test_images is not None and raw.test_labels is not None:
        images, labels = raw.test_images, raw.test_labels
    idx = torch.arange(len(labels))
    budget.check(len(idx) * 3 * resolution**2,
                          f"{len(idx):,} images at {resolution}x{resolution}", source)
    return ImageSet(_resize(_nchw(images, idx), resolution), torch.as_tensor(labels),
                    raw.classes, tuple(mean), tuple(std))


def _generator(seed: int, purpose: str) -> torch.Generator:
    """One generator per purpose, so e.g. the val shuffle never shifts the test carve."""
    return torch.Generator().manual_seed(seed_for(seed, purpose))


def _nchw(images: np.ndarray | torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    if isinstance(images, torch.Tensor):  # already N x C x H x W
        return images[idx].contiguous()
    picked = torch.from_numpy(np.ascontiguousarray(images[idx.numpy()]))
    return picked.permute(0, 3, 1, 2).contiguous()


def _channel_stats(images: np.ndarray | torch.Tensor,
                   idx: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (0..1 units) over the given images, in chunks."""
    total = torch.zeros(0, dtype=torch.float64)
    sq = total
    count = 0
    for start in range(0, len(idx), 4096):
        x = _nchw(images, idx[start:start + 4096]).to(torch.float64) / 255.0
        s, q = x.sum((0, 2, 3)), (x * x).sum((0, 2, 3))
        total, sq = (s, q) if count == 0 else (total + s, sq + q)
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (sq / count - mean * mean).clamp_min(1e-12).sqrt().clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())


def _resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize uint8 NCHW images to resolution x resolution (bilinear, antialiased)."""
    if images.shape[-2:] == (resolution, resolution):
        return images
    out = torch.empty(images.shape[0], images.shape[1], resolution, resolution,
                      dtype=torch.uint8)
    for start in range(0, images.shape[0], 1024):
        chunk = images[start:start + 1024].float()
        chunk = F.interpolate(chunk, size=(resolution, resolution), mode="bilinear",
                              align_corners=False, antialias=True)
        out[start:start + 1024] = chunk.round().clamp(0, 255).to(torch.uint8)
    return out
