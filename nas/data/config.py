"""The `data:` section of an experiment: `DataConfig`, `SyntheticConfig`, their value checks.

Plain dataclasses read by the strict YAML reader; each field's `check` names what a
bad value is. Nothing here reads data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from search_spaces.infra import limits
from search_spaces.infra.checks import fraction, non_negative, open_unit, positive

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_CHECKSUM = "md5:c58f30108f718f92721af3b95e74349a"  # the official archive's MD5
MAX_SYNTHETIC_CLASSES = 40  # the teacher's 32 features still separate 40 balanced classes


def _checksum_spec(value: str) -> str | None:
    algo, sep, digest = value.partition(":")
    if not sep or algo.lower() not in hashlib.algorithms_guaranteed or not digest:
        return f"expected 'ALGORITHM:HEXDIGEST' (e.g. md5:..., sha256:...), got '{value}'"
    try:
        bytes.fromhex(digest)
    except ValueError:
        return f"'{digest}' is not a hex digest"
    return None


def _synthetic_classes(value: int) -> str | None:
    if 2 <= value <= MAX_SYNTHETIC_CLASSES:
        return None
    return f"must be in 2..{MAX_SYNTHETIC_CLASSES}, got {value}"


def _test_size(value: int) -> str | None:
    return None if value == 0 else limits.image_count(value)


@dataclass
class SyntheticConfig:
    """`data.synthetic:` the built-in generated data set (no files)."""

    num_classes: int = field(default=10, metadata={"check": _synthetic_classes})
    train_size: int = field(default=6000, metadata={"check": limits.image_count})  # train + val
    test_size: int = field(default=1000, metadata={"check": _test_size})
    image_size: int = field(default=32, metadata={"check": limits.resolution})
    noise: float = field(default=0.05, metadata={"check": non_negative})  # pixel noise, 0..1 units
    # the images themselves; `data.split_seed` only moves the splits
    seed: int = field(default=0, metadata={"check": limits.seed})


@dataclass
class DataConfig:
    """`data:` where the images come from and how they are split and augmented."""

    kind: Literal["synthetic", "npz", "cifar10", "imagefolder"] = "synthetic"
    # npz: the file; cifar10: the folder holding (or receiving) cifar-10-batches-py;
    # imagefolder: the root with one folder per class.
    path: Path | None = None
    test_path: Path | None = None  # a separate test set of the same kind (npz, imagefolder)
    download: bool = False  # cifar10 only: fetch the archive when the batches are absent
    url: str = CIFAR10_URL
    checksum: str = field(default=CIFAR10_CHECKSUM, metadata={"check": _checksum_spec})
    # Carved first from the training data when there is no separate test set;
    # None: 0.1 there, and nothing where the data brings its own test split.
    test_fraction: float | None = field(default=None, metadata={"check": fraction})
    val_fraction: float = field(default=0.1, metadata={"check": open_unit})  # of the rest
    train_subset: int | None = field(default=None, metadata={"check": positive})
    val_subset: int | None = field(default=None, metadata={"check": positive})
    test_subset: int | None = field(default=None, metadata={"check": positive})
    augment: bool = True  # random crop (padding below) + horizontal flip, training only
    crop_padding: int = field(default=4, metadata={"check": non_negative})
    split_seed: int = field(default=0, metadata={"check": limits.seed})
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        # Python callers may hand in str paths; the readers work on Path
        for key in ("path", "test_path"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, Path):
                setattr(self, key, Path(value))
