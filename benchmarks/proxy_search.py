"""Real proxy search on CIFAR-10: rl against random at equal budgets, several seeds.

Runs benchmarks/proxy_search.yaml (40 children of one epoch on a 3,000-image subset,
latency from a table built on this machine) per strategy and seed, and reports the
best reward, the best validation accuracy among children within the latency target,
and wall time. Needs ../shared/data/cifar10/train.npz; builds the latency table first
if it is missing.

    python benchmarks/proxy_search.py --strategies rl random --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from common import ROOT
from nas.config import load_config
from nas.experiment import open_experiment
from nas.pipeline import start

EXP = ROOT / "benchmarks" / "proxy_search.yaml"


def ensure_table(path: Path) -> None:
    if path.is_file():
        return
    subprocess.run([sys.executable, "-m", "nas.cli", "latency", "build", "--space",
                    "mobilenetv3", "--skeleton", "mobilenetv3_large", "--resolution", "32",
                    "--stem-stride", "1", "--classes", "10", "--out", str(path)], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategies", nargs="+", default=["rl", "random"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--set", action="append", default=[], help="extra config overrides")
    args = ap.parse_args()

    results = []
    for strategy in args.strategies:
        for seed in args.seeds:
            cfg = load_config(EXP, [f"search.strategy={strategy}", f"seed={seed}", *args.set])
            ensure_table(cfg.latency.path)
            t0 = time.perf_counter()
            exp = open_experiment(cfg)
            run = start(exp)
            wall = time.perf_counter() - t0
            frame = pd.read_csv(run.trials_csv)
            ok = frame[frame["status"].isin(["ok", "cached"])]
            within = ok[ok["latency_ms"] <= exp.reward_target_ms]
            results.append({
                "strategy": strategy, "seed": seed, "run": str(run.root),
                "best_reward": float(ok["reward"].max()),
                "best_acc_at_target": float(within["accuracy"].max()) if len(within) else None,
                "share_within_target": len(within) / max(len(ok), 1),
                "failed": int((frame["status"] == "failed").sum()),
                "wall_min": wall / 60,
            })
            print(json.dumps(results[-1]), flush=True)
    print()
    print(f"{'strategy':<9} {'seed':>4} {'best reward':>11} {'best acc @ target':>17} "
          f"{'children within target':>22} {'wall (min)':>10}")
    for r in results:
        acc = "-" if r["best_acc_at_target"] is None else f"{r['best_acc_at_target']:.3f}"
        print(f"{r['strategy']:<9} {r['seed']:>4} {r['best_reward']:>11.4f} {acc:>17} "
              f"{r['share_within_target']:>22.0%} {r['wall_min']:>10.1f}")
    for strategy in args.strategies:
        mine = [r for r in results if r["strategy"] == strategy]
        accs = [r["best_acc_at_target"] for r in mine if r["best_acc_at_target"] is not None]
        rew = [r["best_reward"] for r in mine]
        print(f"{strategy:<9} mean best reward {statistics.mean(rew):.4f} "
              f"(sd {statistics.pstdev(rew):.4f}); mean best acc @ target "
              f"{statistics.mean(accs) if accs else float('nan'):.3f}; mean wall "
              f"{statistics.mean(r['wall_min'] for r in mine):.1f} min")


if __name__ == "__main__":
    main()
