"""A known-optimum objective for checking search strategies without training (the
controller's tests and `benchmarks/controller_correctness.py`; a new strategy can be
checked the same way).

f(x) = sum_i u_i(x_i) + sum_i v_i(x_i, x_{i+1}): per-decision values plus interactions
between neighbouring decisions, so it is not separable, yet its exact best and worst
are found by dynamic programming over the chain. Scaled so the worst is 0, the best 1.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


class ChainObjective:
    """A random chain-structured objective over categorical decisions."""

    def __init__(self, num_options: Sequence[int], seed: int = 0, coupling: float = 1.0) -> None:
        rng = np.random.default_rng(seed)
        self.num_options = list(num_options)
        self.unary = [rng.normal(size=n) for n in self.num_options]
        self.pair = [coupling * rng.normal(size=(a, b))
                     for a, b in zip(self.num_options, self.num_options[1:])]
        self.best = self._extreme(np.max)
        self.worst = self._extreme(np.min)

    def raw(self, choices: Sequence[int]) -> float:
        total = sum(float(u[c]) for u, c in zip(self.unary, choices))
        total += sum(float(p[a, b]) for p, a, b in zip(self.pair, choices, choices[1:]))
        return total

    def __call__(self, choices: Sequence[int]) -> float:
        return (self.raw(choices) - self.worst) / (self.best - self.worst)

    def _extreme(self, reduce) -> float:
        # Viterbi (max- or min-sum): best[j] = extreme total of a prefix ending in j.
        best = self.unary[0].copy()
        for u, p in zip(self.unary[1:], self.pair):
            best = reduce(best[:, None] + p, axis=0) + u
        return float(reduce(best))

