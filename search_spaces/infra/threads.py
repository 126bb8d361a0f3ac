"""The one place torch's intra-op thread count is set: for a block, then restored.

Training, the controller and latency timing each want their own count (a Ray
trial's CPUs, one thread for tiny ops, the measurement protocol's); none may leak
its setting into the next.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: a container's or `taskset`'s
    share), not every CPU of the machine."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


@contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """torch runs with `n` intra-op threads inside the block (restored after, also on
    an error); yields the count torch actually took."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
