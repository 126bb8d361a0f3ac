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


# The calibration forms, simplest first (a tie goes to the simpler): the raw sum of
# the rows, their median ratio to the measurements, a robust line through them.
FORMS = ("sum", "ratio", "line")


def fit_form(form: str, raw: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """(scale, offset) of `form` fitted on networks priced `raw` and measured `measured`."""
    if form == "sum":
        return 1.0, 0.0
    if form == "ratio":
        return float(np.median(measured / raw)), 0.0
    if form == "line":
        return robust_line(raw, measured)
    raise ValueError(form)


def leave_one_out_error(form: str, raw: np.ndarray, measured: np.ndarray) -> float:
    """The median relative error of `form` on each network when fitted on the others."""
    raw, measured = np.asarray(raw, float), np.asarray(measured, float)
    errors = []
    for i in range(len(raw)):
        keep = np.arange(len(raw)) != i
        scale, offset = fit_form(form, raw[keep], measured[keep])
        errors.append(abs((scale * raw[i] + offset) / measured[i] - 1))
    return float(np.median(errors))


def choose_form(raw: np.ndarray, measured: np.ndarray, forms: tuple[str, ...] = FORMS
                ) -> tuple[str, dict[str, float]]:
    """The form among `forms` with the lowest leave-one-out error on these networks
    (ties: the simpler), and each form's error. Why: a form fitted on the same
    networks always fits them at least as well as the raw sum, yet on ONNX Runtime
    int8 the fitted line priced held-out networks worse than the sum it corrected
    (78% against 92% within +-10%, BENCHMARKS.md, issue 28); left-out networks show it."""
    errors = {form: leave_one_out_error(form, raw, measured) for form in forms}
    best = min(forms, key=lambda form: (errors[form], FORMS.index(form)))
    return best, errors

