"""The framework's own overhead per child, and training speed inside Ray vs inline.

1. Per-trial overhead on trivial trials (train function returns at once), through
   the real `SearchCore` (controller sample + update, decode, latency prediction,
   trial log, summaries) with the inline executor and with Ray Tune (one trial at a
   time, actors reused), Ray start-up excluded.
2. Training images/second of the same child (MobileNetV3-Small at 32x32, stride-1
   stem) inline and inside a Ray trial, with 1 and 2 CPUs per trial, and the thread
   count torch actually had there.

    python benchmarks/search_overhead.py --trials 40 --steps 30
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from nas.data import DataConfig, SyntheticConfig, load_data
from nas.raytune import RayConfig, run_ray
from nas.rundir import RunDir
from nas.search.controller import ControllerConfig
from nas.search.core import SearchCore, run_inline
from nas.search.rewards import Reward
from nas.search.strategies import EvolutionConfig, make_strategy
from nas.train import TrainConfig, train_and_evaluate
from search_spaces.counting import count
from search_spaces.factorized import make_space
from search_spaces.infra.jobs import Job, JobResult
from search_spaces.reference import load_reference
from search_spaces.transforms import with_input

REWARD = Reward("mnas", 5.0, -0.07, -0.07)


def trivial(job: Job) -> JobResult:
    return JobResult(0.5, images_per_s=0.0)


def core_for(root: Path, name: str, trials: int) -> SearchCore:
    space = make_space("mobilenetv3", "mobilenetv3_small", resolution=32, stem_stride=1,
                       num_classes=10)
    strategy = make_strategy("rl", space, 0, ControllerConfig(), EvolutionConfig())
    run = RunDir.create(root, name, {"name": name})
    return SearchCore(space, strategy, lambda a: (count(a)[1] / 2e6, "flops"), REWARD, run,
                      trials, 0, log=lambda msg: None)


def overhead(trials: int) -> dict[str, float]:
    import ray

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        core = core_for(Path(tmp), "inline", trials)
        t0 = time.perf_counter()
        run_inline(core, trivial, 0)
        out["inline"] = (time.perf_counter() - t0) / trials
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False,
                 log_to_driver=False)
        out["ray_start"] = time.perf_counter() - t0
        core = core_for(Path(tmp), "ray", trials)
        t0 = time.perf_counter()
        run_ray(core, trivial, 0, RayConfig(max_concurrent_trials=1), Path(tmp) / "ray")
        out["ray"] = (time.perf_counter() - t0) / trials
    return out


def child_speed(steps: int) -> list[dict]:
    import ray
    from ray import tune

    arch = with_input(load_reference("mobilenet_v3_small"), 32, 10, 1)
    splits = load_data(DataConfig(kind="synthetic", synthetic=SyntheticConfig(train_size=6000),
                                  val_subset=200), 32, "bench")
    rows = []

    def trainable(config: dict, splits) -> None:
        cfg = TrainConfig(steps=steps, batch_size=128, threads=config["threads"],
                          bn_recalibration=0)
        r = train_and_evaluate(arch, splits, cfg, 0)
        tune.report({"images_per_s": r.images_per_s, "threads": r.threads})

    for cpus in (1, 2):
        r = train_and_evaluate(arch, splits, TrainConfig(steps=steps, batch_size=128,
                                                         threads=cpus, bn_recalibration=0), 0)
        rows.append({"where": "inline", "cpus": cpus, "images_per_s": r.images_per_s,
                     "threads": r.threads})
        for threads in (None, cpus):  # None: what a Ray trial gives torch by itself
            with tempfile.TemporaryDirectory() as tmp:
                tuner = tune.Tuner(
                    tune.with_resources(tune.with_parameters(trainable, splits=splits),
                                        {"cpu": cpus}),
                    param_space={"threads": threads},
                    run_config=tune.RunConfig(storage_path=tmp, name="speed", verbose=0))
                res = tuner.fit().get_best_result(metric="images_per_s", mode="max").metrics
            rows.append({"where": f"ray (threads={'auto' if threads is None else threads})",
                         "cpus": cpus, "images_per_s": res["images_per_s"],
                         "threads": res["threads"]})
    ray.shutdown()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(2)
    oh = overhead(args.trials)
    print(f"{'executor':<10} {'s per trivial trial':>20}")
    print(f"{'inline':<10} {oh['inline']:>20.3f}")
    print(f"{'ray':<10} {oh['ray']:>20.3f}   (Ray start-up {oh['ray_start']:.1f} s, once)")
    worst = max(oh["inline"], oh["ray"])
    print(f"overhead vs a 30-s trial: {100 * worst / 30:.2f}%")
    print()
    rows = child_speed(args.steps)
    base = {r["cpus"]: r["images_per_s"] for r in rows if r["where"] == "inline"}
    print(f"{'where':<22} {'cpus':>4} {'torch threads':>13} {'images/s':>9} {'vs inline':>9}")
    for r in rows:
        print(f"{r['where']:<22} {r['cpus']:>4} {r['threads']:>13} {r['images_per_s']:>9.0f} "
              f"{r['images_per_s'] / base[r['cpus']]:>9.2f}")
    print(f"(child: mobilenet_v3_small at 32x32, stride-1 stem, 10 classes; batch 128, "
          f"{args.steps} steps)")


if __name__ == "__main__":
    main()
