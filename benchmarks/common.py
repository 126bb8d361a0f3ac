"""What every benchmark compares a search with, in one place: the hand-designed net at
the experiment's input, the one width-multiplier search, random children at a latency,
the one final training. A benchmark's rows go through `search_spaces.infra.files.TrialLog`
(append-only, fsynced), so a killed benchmark continues where it stopped.

The benchmarks import it as `common` (Python puts a script's own folder first on
`sys.path`); everything else comes from the installed package (`make install`).
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from torch import nn

from nas.data import Splits
from nas.experiment import Experiment
from nas.stages.final import train_and_score
from nas.train import TrainConfig
from search_spaces.arch import Arch
from search_spaces.factorized import FactorizedSpace
from search_spaces.reference import load_reference
from search_spaces.transforms import with_input, with_width_multiplier

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"  # tracked: the rows BENCHMARKS.md reports

# The width-multiplier baseline's grid: from 1.5 (wider than the net itself, for a
# target above its latency) down to 0.1 in steps of 0.005.
WIDEST, NARROWEST, STEP = 1.5, 0.1, 0.005

Predict = Callable[[Arch], float]


def say(msg: str) -> None:
    """A timestamped progress line on stderr (stdout carries the result table)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def hand_designed(exp: Experiment, name: str = "mobilenet_v3_small") -> Arch:
    """The reference net `name` with the experiment's input adaptation (resolution,
    classes, stem stride), as the report's reference rows have it."""
    s = exp.config.search
    return with_input(load_reference(name), s.resolution, exp.num_classes, s.stem_stride)


def widest_multiplier(arch: Arch, predict: Predict, limit_ms: float) -> tuple[float, Arch]:
    """The widest width multiplier of `arch` on the grid (`WIDEST` down to `NARROWEST`
    by `STEP`) whose latency under `predict` is at most `limit_ms`, and the network.
    Widths round to multiples of 8, so latency is not monotone in the multiplier:
    scanning from the top returns the widest that fits. Raises when none does."""
    steps = round((WIDEST - NARROWEST) / STEP)
    for i in range(steps + 1):
        m = round(WIDEST - i * STEP, 3)
        cand = with_width_multiplier(arch, m)
        if predict(cand) <= limit_ms:
            return m, cand.replace(name=f"{arch.name} x{m:g}")
    raise RuntimeError(f"no width multiplier down to {NARROWEST} reaches {limit_ms:.3f} ms")


def random_near(space: FactorizedSpace, predict: Predict, target_ms: float,
                tolerance: float, n: int, seed: int) -> list[Arch]:
    """`n` distinct uniform children of `space` within `tolerance` of `target_ms`."""
    rng = random.Random(seed)
    found: dict[str, Arch] = {}
    for _ in range(200_000):
        arch = space.decode(space.sample(rng))
        if abs(predict(arch) / target_ms - 1) <= tolerance:
            found.setdefault(arch.hash(), arch)
            if len(found) == n:
                return list(found.values())
    raise RuntimeError(f"fewer than {n} children within {tolerance:.0%} of {target_ms} ms")


def final_training(arch: Arch, seed: int, epochs: float, train: TrainConfig, splits: Splits
                   ) -> tuple[nn.Module, float, float | None, float]:
    """The trained model, its val and test top-1 after the benchmarks' one final
    training (the pipeline's own, `nas.stages.final.train_and_score`, for `epochs`
    from scratch), and the minutes it took."""
    cfg = replace(train, epochs=epochs, steps=None)
    t0 = time.perf_counter()
    model, _, val, test = train_and_score(arch, cfg, splits, seed)
    return model, val, test, (time.perf_counter() - t0) / 60
