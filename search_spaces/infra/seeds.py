"""The one seed derivation: a run's seed and a key -> the seed of one random stream.

Every component draws from its own stream, so adding a draw in one never moves
another (Archai's "one seeded RNG per component"). The three modes are the three
derivations the project has always used; they stay distinct because run directories
written before this module replay only with the exact numbers they were made with.
"""

from __future__ import annotations

import hashlib
from typing import Literal

SeedMode = Literal["hash", "hash56", "linear"]

# The linear mode's stride: a prime well above any trial count or stream number, so
# (seed, key) pairs never collide for keys below it.
STRIDE = 1_000_003


def seed_for(seed: int, key: str | int, mode: SeedMode = "hash") -> int:
    """The seed of stream `key` under the run seed `seed`.

    - `hash` (the default): the first 8 bytes of sha256(f"{seed}/{key}"), little
      endian, shifted to 63 bits. The trainer's components (`init`, `order`, ...)
      and the data splits (`test`, `val`).
    - `hash56`: the first 7 bytes of the same digest, big endian. NetAdapt's jobs,
      keyed `netadapt/<job name>`.
    - `linear`: `seed * 1_000_003 + key` for an integer `key`. Search children (key:
      the trial id) and the synthetic data's image streams.
    """
    if mode == "linear":
        if not isinstance(key, int):
            raise TypeError(f"linear seeds take an integer key, got {key!r}")
        return seed * STRIDE + key
    digest = hashlib.sha256(f"{seed}/{key}".encode()).digest()
    if mode == "hash":
        return int.from_bytes(digest[:8], "little") >> 1
    if mode == "hash56":
        return int.from_bytes(digest[:7], "big")
    raise ValueError(f"unknown seed mode {mode!r}")
