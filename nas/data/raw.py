"""The reader contract: what every kind's reader takes (`Reader`) and hands on (`Raw`).

`splits.load_data` dispatches on `data.kind` to a reader and turns its `Raw` into
the train / validation / test sets; the readers know nothing of splitting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from nas.data.config import DataConfig


@dataclass
class Raw:
    """What a kind's reader hands on: NHWC or NCHW uint8 arrays, labels, class names."""

    images: np.ndarray | torch.Tensor  # N x H x W x C (numpy) or N x C x H x W (torch)
    labels: np.ndarray
    test_images: np.ndarray | torch.Tensor | None
    test_labels: np.ndarray | None
    classes: tuple[str, ...]
    source: str


# reader(cfg, resolution, source) -> Raw; `source` is the config file, for errors.
Reader = Callable[[DataConfig, int, str], Raw]
