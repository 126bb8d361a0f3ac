"""The accuracy predictor on architectures it was not fitted on (issue 29, item 4).

    python benchmarks/predictor_fidelity.py benchmarks/results/proxy_ceiling

Reads a `nas proxy-check` run directory (its config.yaml and proxy_check.csv) and,
for each scoring in it (an evaluator, the long training, its second seed), fits the
search's accuracy predictor (`nas.search.predictor`) on all architectures but one and
predicts the one left out (leave-one-out). It prints Kendall's tau of those held-out
predictions against the scoring they were fitted on, against the long training, and,
as the baseline a predictor has to beat, the tau of ranking by MACs alone. Nothing
is trained: a few seconds on one core.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from nas.config import build_space, load_config
from nas.ranking import kendall_tau, tau_interval
from nas.rundir import RunDir
from nas.search.predictor import AccuracyPredictor
from nas.stages.proxycheck import COLUMNS
from search_spaces.infra.files import read_frame


def leave_one_out(predictor: AccuracyPredictor, frame: pd.DataFrame, column: str
                  ) -> list[float]:
    """Each architecture's `column` score as predicted by a fit on all the others."""
    rows = [{"decisions": d, "macs": str(m), "accuracy": str(a)}
            for d, m, a in zip(frame["decisions"], frame["macs"], frame[column])]
    out = []
    for i, row in enumerate(rows):
        guess = predictor.predict(rows[:i] + rows[i + 1:], json.loads(row["decisions"]),
                                  float(row["macs"]))
        assert guess is not None
        out.append(guess)
    return out


def _tau(x: list[float], y: pd.Series, resamples: int) -> str:
    lo, hi = tau_interval(x, list(y), resamples)
    return f"{kendall_tau(x, list(y)):.3f} [{lo:.2f}, {hi:.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("check", type=Path, help="a nas proxy-check run directory")
    ap.add_argument("--ridge", type=float, default=1.0)
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()
    run = RunDir.open(args.check)
    space = build_space(load_config(run.config_path))
    frame = read_frame(run.proxy_check_csv, COLUMNS, ("accuracy", "macs"))
    frame = frame[frame["error"].isna() | (frame["error"].astype(str) == "")]
    wide = frame.pivot_table(index="index", columns="evaluator", values="accuracy")
    info = frame.groupby("index")[["decisions", "macs"]].first()
    wide = wide.join(info).dropna()
    predictor = AccuracyPredictor(space, args.ridge)
    print(f"{len(wide)} architectures of {run.root}; ridge {args.ridge}; "
          f"Kendall tau [95% bootstrap interval] of leave-one-out predictions")
    print(f"{'fitted on':<10} {'vs what it was fitted on':>26} {'vs long':>20}")
    for column in [c for c in wide.columns if c not in ("decisions", "macs")]:
        guesses = leave_one_out(predictor, wide, column)
        print(f"{column:<10} {_tau(guesses, wide[column], args.bootstrap):>26} "
              f"{_tau(guesses, wide['long'], args.bootstrap):>20}")
    macs = list(wide["macs"].astype(float))
    print(f"{'MACs alone':<10} {'':>26} {_tau(macs, wide['long'], args.bootstrap):>20}")


if __name__ == "__main__":
    main()
