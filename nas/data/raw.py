"""The reader contract: what every kind's reader takes (`Reader`) and hands on (`Raw`),
and the memory its images may take (`Budget`).

`splits.load_data` dispatches on `data.kind` to a reader and turns its `Raw` into
the train / validation / test sets; the readers know nothing of splitting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from nas.data.config import DataConfig
from search_spaces.infra.errors import UserError
from search_spaces.infra.limits import MAX_DATA_GIB, gib


@dataclass
class Raw:
    """What a kind's reader hands on: NHWC or NCHW uint8 arrays, labels, class names."""

    images: np.ndarray | torch.Tensor  # N x H x W x C (numpy) or N x C x H x W (torch)
    labels: np.ndarray
    test_images: np.ndarray | torch.Tensor | None
    test_labels: np.ndarray | None
    classes: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Budget:
    """The memory the images may take (`limits.max_data_gib`): each reader checks what
    it is about to allocate, from sizes it knows before reading the pixels."""

    max_gib: float = MAX_DATA_GIB

    def check(self, n_bytes: int, what: str, where: str) -> None:
        if n_bytes > self.max_gib * 2**30:
            raise UserError(f"{what} would take {gib(n_bytes)} of memory, more than "
                            f"limits.max_data_gib ({self.max_gib:g} GiB); use "
                            f"data.train_subset or a smaller resolution, or raise the "
                            f"limit", where)


# reader(cfg, resolution, source, budget) -> Raw; `source` is the config file, for errors.
Reader = Callable[[DataConfig, int, str, Budget], Raw]
