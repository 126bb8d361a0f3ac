"""Single-path supernet training at several learning rates (BENCHMARKS.md, issue 12).

The supernet of benchmarks/supernet_fidelity.yaml's space trains for `--steps` steps
(batch 64, the trainer's cosine schedule and 5% warm-up) on its 8,000-image pool at
each (lr, grad clip) pair; the table gives the mean training loss of the last 100
steps, or where the loss became NaN.

    python benchmarks/supernet_lr.py --steps 600 --runs 0.1:0 0.2:1 0.4:1 0.05:0
"""

from __future__ import annotations

import argparse

from common import ROOT
from nas.experiment import open_experiment
from nas.train import TrainConfig, TrialError, train
from search_spaces.supernet import SuperNet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--runs", nargs="+", default=["0.1:0", "0.2:1", "0.4:1", "0.05:0"],
                    help="LR:CLIP pairs (clip 0: none)")
    args = ap.parse_args()
    exp = open_experiment(ROOT / "benchmarks" / "supernet_fidelity.yaml", latency="none")
    cfg, splits, space = exp.config, exp.data, exp.space
    print(f"{'lr':>6} {'clip':>5} {'loss':>8}  (mean of the last 100 of {args.steps} steps)")
    for pair in args.runs:
        lr, clip = (float(v) for v in pair.split(":"))
        tcfg = TrainConfig(steps=args.steps, lr=lr, grad_clip=clip or None, batch_size=64,
                           bn_recalibration=0, log_every=100)
        lines: list[str] = []
        try:
            train(SuperNet(space, cfg.seed), splits.train, tcfg, cfg.seed, log=lines.append)
            result = lines[-1].split("loss ")[1].split()[0]
        except TrialError as err:
            result = str(err)
        print(f"{lr:>6g} {clip or '-':>5} {result:>8}", flush=True)


if __name__ == "__main__":
    main()
