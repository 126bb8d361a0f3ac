"""Reader for `kind: cifar10`: the official python batches, downloaded on request.

The batches are pickles, read only through `restricted_unpickle`; `data.download`
fetches and verifies the archive when they are absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.data.checks import check_labels, need_path
from nas.data.config import DataConfig
from nas.data.download import download_and_extract
from nas.data.raw import Budget, Raw
from nas.data.unpickle import restricted_unpickle
from search_spaces.infra.errors import UserError

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


def read_cifar10(cfg: DataConfig, resolution: int, source: str, budget: Budget) -> Raw:
    root = need_path(cfg, source)
    folder = root if root.name == CIFAR10_FOLDER else root / CIFAR10_FOLDER
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if cfg.download and not all((folder / n).is_file() for n in names):
        download_and_extract(cfg.url, cfg.checksum, folder.parent, source)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        hint = "" if cfg.download else " (set data.download: true to fetch it)"
        raise UserError(f"missing {', '.join(missing)} in {folder}{hint}", source)
    budget.check(sum((folder / n).stat().st_size for n in names), "the CIFAR-10 batches",
                 str(folder))
    images, labels = [], []
    for n in names[:5]:
        x, y = _cifar_batch(folder / n)
        images.append(x)
        labels.append(y)
    test_images, test_labels = _cifar_batch(folder / "test_batch")
    classes = CIFAR10_CLASSES
    if (folder / "batches.meta").is_file():
        meta = restricted_unpickle(folder / "batches.meta")
        names_ = _get(meta, "label_names") if isinstance(meta, dict) else None
        if not isinstance(names_, list) or not all(isinstance(c, (str, bytes)) for c in names_):
            raise UserError("key 'label_names' must be a list of names",
                            str(folder / "batches.meta"))
        classes = tuple(c.decode() if isinstance(c, bytes) else c for c in names_)
    all_labels = np.concatenate(labels)
    check_labels(all_labels, len(classes), str(folder), "labels")
    check_labels(test_labels, len(classes), str(folder / "test_batch"), "labels")
    return Raw(torch.cat(images), all_labels, test_images, test_labels, classes,
               f"cifar10 {folder}")


def _get(d: dict, key: str) -> Any:
    return d[key] if key in d else d.get(key.encode())


def _cifar_batch(path: Path) -> tuple[torch.Tensor, np.ndarray]:
    """One official batch: 'data' uint8 N x 3072 (RGB planes) and 'labels' (N ints)."""
    batch = restricted_unpickle(path)
    if not isinstance(batch, dict):
        raise UserError(f"expected a dict, got {type(batch).__name__}", str(path))
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else repr(type(data))
        raise UserError(f"key 'data' must be a uint8 N x 3072 array, got {got}", str(path))
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != len(data):
        raise UserError(f"key 'labels' must list one label per image ({len(data)})", str(path))
    y = np.asarray(labels)
    if y.dtype.kind not in "iu":
        raise UserError(f"key 'labels' must hold integers, got {y.dtype}", str(path))
    # Rows are the R, G and B planes of a 32x32 image: already N x C x H x W.
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), y.astype(np.int64)
