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
import csv
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from torch import nn  # noqa: E402

from nas.config import build_latency_model, build_space, load_config  # noqa: E402
from nas.data import load_data  # noqa: E402
from nas.pipeline import resume, start  # noqa: E402
from nas.rundir import RunDir  # noqa: E402
from nas.stages.final import train_and_score  # noqa: E402
from search_spaces.arch import Arch, load_arch  # noqa: E402
from search_spaces.counting import count  # noqa: E402
from search_spaces.reference import load_reference  # noqa: E402
from search_spaces.transforms import with_input, with_width_multiplier  # noqa: E402

EXPERIMENT = ROOT / "benchmarks" / "supernet_search.yaml"
COLUMNS = ["seed", "config", "draw", "arch_hash", "latency_ms", "params", "macs",
           "search_min", "children", "val_top1", "test_top1", "final_min"]
SEARCHES = {  # config -> overrides of the experiment YAML
    "a_supernet_rl": ["search.evaluator=supernet", "search.strategy=rl"],
    "b_supernet_random": ["search.evaluator=supernet", "search.strategy=random"],
    # as many proxy trainings (about 20 s each) as fit the supernet searches' time
    "c_train_rl": ["search.evaluator=train", "search.strategy=rl", "search.num_trials=54"],
}


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def done_rows(out: Path) -> list[dict[str, str]]:
    if not out.is_file():
        return []
    with open(out, newline="") as fh:
        return list(csv.DictReader(fh))


def append(out: Path, row: dict) -> None:
    new = not out.is_file()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in COLUMNS})


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
        cfg = load_config(EXPERIMENT, overrides + [f"seed={seed}", f"output_dir={folder}",
                                                   "stages=[search]"])
        run = start(cfg, log=say)
    spent += time.perf_counter() - t0
    folder.mkdir(parents=True, exist_ok=True)
    timing.write_text(json.dumps({"s": spent}))
    return run, spent


def final_training(arch: Arch, seed: int, epochs: float, exp_cfg, splits
                   ) -> tuple[nn.Module, float, float, float]:
    """The trained model, its val and test top-1 after the benchmark's one final
    training (the pipeline's, `nas.stages.final.train_and_score`), and the minutes it
    took."""
    cfg = replace(exp_cfg.train, epochs=epochs, steps=None)
    t0 = time.perf_counter()
    model, _, val, test = train_and_score(arch, cfg, splits, seed)
    return model, val, test, (time.perf_counter() - t0) / 60


def widest_multiplier(arch: Arch, predict, limit_ms: float) -> Arch:
    """The widest width multiplier of `arch` (steps of 0.01) at most `limit_ms`."""
    for m in np.arange(1.5, 0.05, -0.01):
        cand = with_width_multiplier(arch, float(m))
        if predict(cand) <= limit_ms:
            return cand.replace(name=f"{arch.name} x{m:.2f}")
    raise RuntimeError(f"no width multiplier reaches {limit_ms:.3f} ms")


def random_near(space, predict, target_ms: float, tolerance: float, n: int, seed: int
                ) -> list[Arch]:
    """`n` distinct uniform children of `space` within `tolerance` of `target_ms`."""
    rng = random.Random(seed)
    found: dict[str, Arch] = {}
    for _ in range(200_000):
        arch = space.decode(space.sample(rng))
        if abs(predict(arch) / target_ms - 1) <= tolerance:
            found.setdefault(arch.hash(), arch)
            if len(found) == n:
                return list(found.values())
    raise RuntimeError(f"fewer than {n} children within {tolerance:.0%} of {target_ms} ms")


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
    ap.add_argument("--out", type=Path,
                    default=ROOT / "benchmarks" / "results" / "supernet_search.csv")
    args = ap.parse_args()
    out = args.out
    quick = ["search.num_trials=6", "supernet.epochs=0.1", "supernet.rerank_top_k=2",
             "train.epochs=0.02"] if args.quick else []
    for seed in args.seeds:
        have = {(r["config"], r["draw"]) for r in done_rows(out) if int(r["seed"]) == seed}
        cfg = load_config(EXPERIMENT, [f"seed={seed}"])
        splits = load_data(cfg.data, cfg.search.resolution, cfg.source,
                           cfg.limits.max_data_gib)
        space = build_space(cfg, splits.num_classes)
        latency = build_latency_model(cfg)
        predict = lambda a: latency.predict(a).ms  # noqa: E731

        def record(config: str, arch: Arch, draw: int = 0, search_min: float | None = None,
                   children: int | None = None) -> None:
            if (config, str(draw)) in have:
                return
            say(f"seed {seed} {config} draw {draw}: final training ({args.final_epochs:g} "
                f"epochs), {predict(arch):.3f} ms")
            _, val, test, minutes = final_training(arch, seed, args.final_epochs, cfg, splits)
            params, macs = count(arch)
            append(out, {"seed": seed, "config": config, "draw": draw,
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
        small = with_input(load_reference("mobilenet_v3_small"), cfg.search.resolution,
                           splits.num_classes, cfg.search.stem_stride)
        record("d_mobilenet_v3_small", small)
        target = predict(found["a_supernet_rl"])
        record("e_width_multiplier", widest_multiplier(small, predict, target))
        for k, arch in enumerate(random_near(space, predict, target, 0.05, args.draws,
                                             seed)):
            record("f_random_same_latency", arch, draw=k)
    table = summary(done_rows(out))
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
