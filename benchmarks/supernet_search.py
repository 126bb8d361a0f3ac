"""Does the search earn its keep? Issue 12's benchmark, on CIFAR-10 at 32x32.

Per seed, six networks, each given the same final training (from scratch, the same
epochs) and scored once on that seed's carved test split:

  (a) supernet + rl        search.evaluator: supernet, search.strategy: rl
  (b) supernet + random    the same supernet budget, random sampling
  (c) train + rl           per-child proxy training, as many children as fit the
                           same search time
  (d) MobileNetV3-Small    with the CIFAR stem (stride 1), no search
  (e) width multiplier     of MobileNetV3-Small, the widest at most (a)'s latency
  (f) random children      drawn uniformly from the space within 5% of (a)'s latency
                           (`--draws` per seed), no search

Latency is the experiment's latency model (benchmarks/supernet_search.yaml). Every
step is recorded as it finishes in `--out` (one row per network), and searches are
run directories under `--work`, so a killed benchmark continues where it stopped. The
rows (`benchmarks/results/supernet_search.csv`) are tracked in git; the searches'
run directories (`--work`, git-ignored) are scratch. Seeds may run side by side, one
per core (`taskset -c 0 python ... --seeds 1 & taskset -c 1 python ... --seeds 2`):

    python benchmarks/supernet_search.py --seeds 0 1 2
    python benchmarks/supernet_search.py --seeds 0 --final-epochs 2 --quick   # a smoke run

It prints the table that goes into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from common import (RESULTS, ROOT, final_training, hand_designed, random_near, say,
                    widest_multiplier)
from nas.experiment import open_experiment
from nas.pipeline import resume, start
from nas.rundir import RunDir
from search_spaces.arch import Arch, load_arch
from search_spaces.counting import count
from search_spaces.infra.files import TrialLog

EXPERIMENT = ROOT / "benchmarks" / "supernet_search.yaml"
COLUMNS = ["seed", "config", "draw", "arch_hash", "latency_ms", "params", "macs",
           "search_min", "children", "val_top1", "test_top1", "final_min"]
SEARCHES = {  # config -> overrides of the experiment YAML
    "a_supernet_rl": ["search.evaluator=supernet", "search.strategy=rl"],
    "b_supernet_random": ["search.evaluator=supernet", "search.strategy=random"],
    # as many proxy trainings (about 20 s each) as fit the supernet searches' time
    "c_train_rl": ["search.evaluator=train", "search.strategy=rl", "search.num_trials=54"],
}


def run_search(name: str, seed: int, overrides: list[str], work: Path) -> tuple[RunDir, float]:
    """The search of `name` for `seed` (resumed when a run directory is there)."""
    folder = work / f"{name}_s{seed}"
    existing = sorted(p.parent for p in folder.glob("*/*/config.yaml"))
    timing = folder / "search_s.json"
    t0 = time.perf_counter()
    spent = json.loads(timing.read_text())["s"] if timing.is_file() else 0.0
    if existing:
        say(f"{name} seed {seed}: resuming {existing[-1]}")
        run = resume(existing[-1], log=say)
    else:
        run = start(open_experiment(EXPERIMENT, overrides + [
            f"seed={seed}", f"output_dir={folder}", "stages=[search]"], log=say), log=say)
    spent += time.perf_counter() - t0
    folder.mkdir(parents=True, exist_ok=True)
    timing.write_text(json.dumps({"s": spent}))
    return run, spent


def summary(rows: list[dict[str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for c in ("latency_ms", "test_top1", "val_top1", "search_min", "params"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce")
    per_seed = frame.groupby(["config", "seed"]).agg(test=("test_top1", "mean"),
                                                     lat=("latency_ms", "mean"),
                                                     search=("search_min", "mean"),
                                                     params=("params", "mean"))
    table = per_seed.groupby("config").agg(
        seeds=("test", "size"), test_mean=("test", "mean"), test_std=("test", "std"),
        test_min=("test", "min"), test_max=("test", "max"), latency_ms=("lat", "mean"),
        params=("params", "mean"), search_min=("search", "mean"))
    return table.reset_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--final-epochs", type=float, default=10)
    ap.add_argument("--draws", type=int, default=3, help="random children per seed (f)")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: tiny budgets (not a result)")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "supernet_search")
    ap.add_argument("--out", type=Path, default=RESULTS / "supernet_search.csv")
    args = ap.parse_args()
    out = TrialLog(args.out, COLUMNS)
    quick = ["search.num_trials=6", "supernet.epochs=0.1", "supernet.rerank_top_k=2",
             "train.epochs=0.02"] if args.quick else []
    for seed in args.seeds:
        have = {(r["config"], r["draw"]) for r in out.read() if int(r["seed"]) == seed}
        exp = open_experiment(EXPERIMENT, [f"seed={seed}"], log=say)
        cfg, splits, latency = exp.config, exp.data, exp.latency
        assert latency is not None

        def predict(arch: Arch) -> float:
            return latency.predict(arch).ms

        def record(config: str, arch: Arch, draw: int = 0, search_min: float | None = None,
                   children: int | None = None) -> None:
            if (config, str(draw)) in have:
                return
            say(f"seed {seed} {config} draw {draw}: final training ({args.final_epochs:g} "
                f"epochs), {predict(arch):.3f} ms")
            _, val, test, minutes = final_training(arch, seed, args.final_epochs, cfg.train,
                                                   splits)
            params, macs = count(arch)
            out.append({"seed": seed, "config": config, "draw": draw,
                         "arch_hash": arch.hash(), "latency_ms": round(predict(arch), 4),
                         "params": params, "macs": macs,
                         "search_min": "" if search_min is None else round(search_min, 2),
                         "children": "" if children is None else children,
                         "val_top1": val, "test_top1": test, "final_min": round(minutes, 2)})
            say(f"seed {seed} {config} draw {draw}: test top-1 {test:.4f}")

        found: dict[str, Arch] = {}
        for name, overrides in SEARCHES.items():
            run, spent = run_search(name, seed, overrides + quick, args.work)
            found[name] = load_arch(run.best_json)
            children = len(pd.read_csv(run.trials_csv))
            record(name, found[name], search_min=spent / 60, children=children)
        small = hand_designed(exp)
        record("d_mobilenet_v3_small", small)
        target = predict(found["a_supernet_rl"])
        record("e_width_multiplier", widest_multiplier(small, predict, target)[1])
        for k, arch in enumerate(random_near(exp.space, predict, target, 0.05, args.draws,
                                             seed)):
            record("f_random_same_latency", arch, draw=k)
    table = summary(out.read())
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
