"""Robust fits of measured whole-network latency on a predictor (a table's sum of rows,
MACs): what a calibration and its FLOPs baseline are."""

from __future__ import annotations

import numpy as np


def robust_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Theil-Sen `y = slope * x + intercept`: the median of pairwise slopes, then the
    median intercept. A few disturbed measurements (a noisy spell on a shared machine)
    move it little, where least squares on ~20 points swings (BENCHMARKS.md). With no
    usable pair, or a slope that is not positive (networks of one size), it is the
    median ratio through the origin."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    i, j = np.triu_indices(len(x), k=1)
    dx = x[j] - x[i]
    keep = np.abs(dx) > 1e-12 * max(float(np.abs(x).max(initial=0.0)), 1e-12)
    if keep.any():
        slope = float(np.median((y[j] - y[i])[keep] / dx[keep]))
        if slope > 0:
            return slope, float(np.median(y - slope * x))
    return float(np.median(y / x)), 0.0
