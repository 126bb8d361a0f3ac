"""Rank agreement between two scorings of the same architectures: Kendall's tau-b
with a bootstrap interval, Spearman's rho (`nas proxy-check`, the accuracy predictor)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either ranking handled); NaN for fewer than 2 pairs."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    upper = np.triu_indices(len(a), 1)
    da = np.sign(a[:, None] - a[None, :])[upper]
    db = np.sign(b[:, None] - b[None, :])[upper]
    both = da * db
    concordant, discordant = int((both > 0).sum()), int((both < 0).sum())
    ties_a, ties_b = int(((da == 0) & (db != 0)).sum()), int(((db == 0) & (da != 0)).sum())
    denom = np.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return float((concordant - discordant) / denom) if denom else float("nan")


def tau_interval(x: Sequence[float], y: Sequence[float], resamples: int, seed: int = 0,
                 level: float = 0.95) -> list[float]:
    """The percentile bootstrap interval of Kendall's tau: the architectures resampled
    with replacement `resamples` times ([nan, nan] with none, or under 3 of them)."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    if resamples <= 0 or len(a) < 3:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    taus = np.array([kendall_tau(a[pick], b[pick])
                     for pick in rng.integers(0, len(a), (resamples, len(a)))])
    taus = taus[~np.isnan(taus)]
    if not len(taus):
        return [float("nan"), float("nan")]
    tail = (1 - level) / 2
    return [float(q) for q in np.quantile(taus, [tail, 1 - tail])]


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's correlation of the (average-tie) ranks."""
    rx, ry = pd.Series(x).rank(), pd.Series(y).rank()
    return float(rx.corr(ry))
