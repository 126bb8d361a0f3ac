"""The accuracy predictor: rewards between real evaluations (issue 29, item 4).

As once-for-all's accuracy predictor (Cai et al. 2020, sec. 3.2), fitted on the
children evaluated so far: architecture encoding to accuracy. Here it is a ridge
regression on the one-hot encoding of a child's decisions plus its log MACs: with
the tens to hundreds of real evaluations a CPU search makes, a linear model is what
the data can fit, and its closed form makes every prediction a pure function of the
rows told before it, so a killed search resumes to the same predictions.

With `predictor.real_every: n` the first `warmup` children are evaluated for real,
then one in n; the others are told the reward of their predicted accuracy (status
`predicted` in trials.csv, never the search's result, never cached). Every real
child evaluated once the predictor could fit carries, in `predicted_accuracy`, what
the predictor said before its result was known: those pairs give the predictor's
Kendall tau on children it was not fitted on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from nas.ranking import kendall_tau, tau_interval
from search_spaces.factorized import FactorizedSpace
from search_spaces.infra.checks import non_negative, positive

MIN_FIT = 3  # real evaluations before the predictor fits at all


def _at_least_min_fit(value: int) -> str | None:
    return None if value >= MIN_FIT else f"must be >= {MIN_FIT}, got {value}"


@dataclass
class PredictorConfig:
    """`predictor:` an accuracy predictor told as the reward between real evaluations."""

    # 0: off. n > 1: after `warmup`, one child in n is evaluated by the search's
    # evaluator and the other n - 1 are predicted. 1: every child is evaluated and the
    # predictor only records what it would have said (its held-out tau, at no risk).
    real_every: int = field(default=0, metadata={"check": non_negative})
    warmup: int = field(default=20, metadata={"check": _at_least_min_fit})  # real first
    ridge: float = field(default=1.0, metadata={"check": positive})  # L2 strength

    def predicts(self, trial_id: int) -> bool:
        """Whether child `trial_id` is told a predicted accuracy (by id alone, so a
        resumed or parallel search predicts the same children)."""
        return self.real_every > 1 and trial_id >= self.warmup \
            and (trial_id - self.warmup) % self.real_every != 0


class AccuracyPredictor:
    """Ridge regression of accuracy on one-hot decisions and standardised log MACs."""

    def __init__(self, space: FactorizedSpace, ridge: float) -> None:
        self.sizes = [len(d.options) for d in space.decisions]
        self.offsets = np.cumsum([0] + self.sizes[:-1])
        self.ridge = ridge
        self._rows: dict[str, np.ndarray] = {}  # a logged row's encoding, by its decisions

    def _encoded(self, row: Mapping[str, str]) -> np.ndarray:
        """`row`'s encoding, made once: every prediction refits on all rows so far."""
        key = row["decisions"]
        if key not in self._rows:
            self._rows[key] = self.encode(json.loads(key), float(row["macs"]))
        return self._rows[key]

    def encode(self, choices: Sequence[int], macs: float) -> np.ndarray:
        x = np.zeros(sum(self.sizes) + 1)
        x[self.offsets + np.asarray(choices, int)] = 1.0
        x[-1] = math.log(max(float(macs), 1.0))
        return x

    def predict(self, rows: Sequence[Mapping[str, str]], choices: Sequence[int],
                macs: float) -> float | None:
        """The accuracy of `choices` as fitted on `rows` (real evaluations, one per
        architecture); None below MIN_FIT of them. Clipped to [0, 1]."""
        if len(rows) < MIN_FIT:
            return None
        X = np.stack([self._encoded(r) for r in rows])  # a copy: scaled below
        y = np.array([float(r["accuracy"]) for r in rows])
        scale = X[:, -1].std() or 1.0
        X[:, -1] /= scale
        mean_x, mean_y = X.mean(0), y.mean()
        Xc = X - mean_x
        w = np.linalg.solve(Xc.T @ Xc + self.ridge * np.eye(X.shape[1]), Xc.T @ (y - mean_y))
        x = self.encode(choices, macs)
        x[-1] /= scale
        return float(np.clip(mean_y + (x - mean_x) @ w, 0.0, 1.0))


def _number(value: object) -> float | None:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def held_out(rows: Sequence[Mapping[str, object]]) -> tuple[list[float], list[float]]:
    """(predicted, real) accuracies of the real children the predictor scored before
    their result was known (rows of trials.csv, as text or as a frame's records)."""
    pairs = [(_number(r.get("predicted_accuracy")), _number(r.get("accuracy")))
             for r in rows if r.get("status") == "ok"]
    kept = [(p, a) for p, a in pairs if p is not None and a is not None]
    return [p for p, _ in kept], [a for _, a in kept]


def predictor_stats(rows: Sequence[Mapping[str, object]], resamples: int = 1000
                    ) -> dict[str, object]:
    """How many rewards the predictor gave, and its Kendall tau (with a bootstrap 95%
    interval) on the real children it had not been fitted on."""
    predicted, real = held_out(rows)
    told = sum(r.get("status") in ("ok", "cached", "predicted") for r in rows)
    stats: dict[str, object] = {
        "predicted": sum(r.get("status") == "predicted" for r in rows), "told": told,
        "held_out": len(real)}
    if len(real) >= 2:
        stats["kendall_tau"] = kendall_tau(predicted, real)
        stats["tau_ci95"] = tau_interval(predicted, real, resamples)
    return stats


def predictor_summary(rows: Sequence[Mapping[str, object]]) -> str:
    """One line for the log and the report."""
    s = predictor_stats(rows)
    text = f"predictor: {s['predicted']} of {s['told']} rewards predicted"
    if "kendall_tau" in s:
        lo, hi = s["tau_ci95"]  # type: ignore[misc]
        ci = "" if math.isnan(lo) else f" [{lo:.2f}, {hi:.2f}]"
        text += (f"; Kendall tau {s['kendall_tau']:.3f}{ci} against the evaluator on "
                 f"{s['held_out']} real children it had not been fitted on")
    else:
        text += f"; {s['held_out']} real children scored before their fit (too few for a tau)"
    return text
