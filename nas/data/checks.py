"""Checks several readers share: the `data.path` a file kind needs, labels in range."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nas.data.config import DataConfig
from search_spaces.infra.errors import UserError


def need_path(cfg: DataConfig, source: str) -> Path:
    """`data.path`, which every kind but synthetic requires."""
    if cfg.path is None:
        raise UserError(f"data.path: required for kind '{cfg.kind}'", source)
    return cfg.path


def check_labels(labels: np.ndarray, num_classes: int, where: str, key: str) -> None:
    """Every label is a class index 0..num_classes-1; the first one that is not is named."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        i = int(bad[0])
        raise UserError(f"key '{key}': label {int(labels[i])} at index {i} is out of range "
                        f"0..{num_classes - 1}", where)
