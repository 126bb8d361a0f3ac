"""Controller correctness: samples each strategy needs on a known-optimum objective.

The objective (benchmarks/objectives.py.ChainObjective) has per-decision values plus interactions
between neighbouring decisions over the real `mnasnet` space's 42 decisions, scaled so
the worst architecture is 0 and the best 1; no training is involved. For each strategy
and seed it reports the number of samples until the best seen reaches 0.9 and 0.95
(capped at --budget), then medians over seeds.

    python benchmarks/controller_correctness.py --seeds 5 --budget 2000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from nas.search.controller import ControllerConfig
from nas.search.objectives import ChainObjective
from nas.search.strategies import EvolutionConfig, make_strategy
from search_spaces.factorized import make_space


def run(strategy: str, seed: int, budget: int, space, controller: ControllerConfig,
        evolution: EvolutionConfig) -> dict:
    objective = ChainObjective([len(d.options) for d in space.decisions], seed=1000 + seed)
    s = make_strategy(strategy, space, seed, controller, evolution)
    best, hits = 0.0, {0.9: None, 0.95: None}
    t0 = time.perf_counter()
    for i in range(1, budget + 1):
        c = s.ask()
        value = objective(c)
        s.tell(c, value)
        best = max(best, value)
        for level in hits:
            if hits[level] is None and best >= level:
                hits[level] = i
        if hits[0.95] is not None:
            break
    return {"strategy": strategy, "seed": seed, "to_0.9": hits[0.9], "to_0.95": hits[0.95],
            "best": best, "samples": i, "s_per_sample": (time.perf_counter() - t0) / i}


def median_or_cap(values: list, budget: int) -> str:
    # A run that never got there counts as "over budget" in the median.
    filled = [v if v is not None else budget + 1 for v in values]
    m = statistics.median(filled)
    return f">{budget}" if m > budget else f"{m:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--strategies", default="rl,evolution,random")
    ap.add_argument("--lr", type=float, default=ControllerConfig.lr)
    ap.add_argument("--batch-size", type=int, default=ControllerConfig.batch_size)
    ap.add_argument("--algo", default="ppo")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    space = make_space("mnasnet")
    controller = ControllerConfig(algo=args.algo, lr=args.lr, batch_size=args.batch_size)
    rows = [run(name, seed, args.budget, space, controller, EvolutionConfig())
            for name in args.strategies.split(",") for seed in range(args.seeds)]
    if args.json:
        print(json.dumps(rows, indent=2))
    print(f"{'strategy':<10} {'median to 0.9':>14} {'median to 0.95':>15} "
          f"{'reached 0.95':>13} {'median best':>12} {'ms/sample':>10}")
    for name in args.strategies.split(","):
        mine = [r for r in rows if r["strategy"] == name]
        reached = sum(r["to_0.95"] is not None for r in mine)
        print(f"{name:<10} {median_or_cap([r['to_0.9'] for r in mine], args.budget):>14} "
              f"{median_or_cap([r['to_0.95'] for r in mine], args.budget):>15} "
              f"{reached:>9}/{len(mine):<3} "
              f"{statistics.median(r['best'] for r in mine):>12.3f} "
              f"{1000 * statistics.median(r['s_per_sample'] for r in mine):>10.2f}")
    print(f"(space: mnasnet, {len(space.decisions)} decisions; controller: {args.algo}, "
          f"lr {args.lr}, batch {args.batch_size}; budget {args.budget} samples, "
          f"{args.seeds} seeds)")


if __name__ == "__main__":
    main()
