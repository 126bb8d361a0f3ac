"""Latency-aware against FLOPs-aware search (MnasNet's claim): issue 13's benchmark.

Per seed, the shipped weight-sharing experiment (`runs/cifar10_supernet.yaml`: one
supernet scores 600 children for the RL controller, the top 5 are re-ranked by proxy
training, the result is trained from scratch and exported) runs twice, with the same
budget, seed, final training and test split:

  table   rewarded with this machine's latency table (the YAML's `latency:`,
          runs/tables/mobilenetv3_small_32.csv, built on the first run)
  flops   rewarded with MACs, scaled so that MobileNetV3-Small (stride-1 stem, 32x32)
          has the same latency as in that table (so `reward.target_ratio` resolves to
          the same target in ms)
  random  (with `--configs ... random`) the `table` run with random sampling in place
          of the controller: the same 600 children's budget, reward and re-ranking

and two hand-designed baselines given the same final training (from scratch, the YAML's
`final:` budget, the same seed and test split), no search:

  mobilenet_v3_small   MobileNetV3-Small with the CIFAR stem (stride 1)
  width_multiplier     its widest width multiplier (`common.widest_multiplier`) at most the `table`
                       run's final latency in the table; x0.1 when none is that fast

The supernet's training does not involve the latency model nor the strategy, so the
`flops` and `random` runs start from the `table` run's trained supernet
(`search/supernet.pt`; the same seed trains the same weights) and differ from it only
in the reward or in the sampler. Every run is a run directory
under `--work` (a killed benchmark resumes them).

Then `--measure`, run alone on the machine, times every final network end to end (the
exported ONNX file under ONNX Runtime, the torch model under eager torch; 1 thread,
batch 1; the median of 30 runs, and the table's own protocol, p10 of 30, for the
prediction error), `--passes` times over, into `--measured` (every pass), and prints the
median over passes per network and their mean and std per config. `off_target` and
`table_error` compare with the runtime the table prices (ONNX Runtime fp32 since issue
28; the issue-13 results in benchmarks/results/latency_aware*.csv priced eager torch,
reproduced with `--work`, `--measured` and `--kept` naming them and
`--set latency.backend=torch latency.path=runs/tables/mobilenetv3_small_32.csv`, run
from the repository root: a `--set` path is read from the working directory). Needs
../shared/data/cifar10/train.npz. On a machine without the run directories,
`--measure --from-kept` times the networks kept in `--kept` instead (their arch.json
with fresh weights, priced by this machine's table, built first if missing).

    # seeds side by side share the one timing lock (the default NAS_TIMING_LOCK): a lock
    # per process would time the table's missing rows beside the other seeds' training
    taskset -c 0 python benchmarks/latency_aware.py --seeds 0 2 &
    taskset -c 1 python benchmarks/latency_aware.py --seeds 1
    python benchmarks/latency_aware.py --baselines --seeds 0 1 2   # after the table runs
    python benchmarks/latency_aware.py --configs random --seeds 0 1 2   # likewise
    python benchmarks/latency_aware.py --measure        # alone: prints the table
    python benchmarks/latency_aware.py --measure --from-kept \
        --measured benchmarks/results/latency_aware_here.csv   # another machine
    python benchmarks/latency_aware.py --seeds 0 --work /tmp/la --measured /tmp/la.csv \
        --kept /tmp/la_kept \
        --set search.num_trials=6 supernet.epochs=0.05 train.epochs=0.02 final.epochs=0.05
                                  # a smoke run, not a result (--kept: not over the tracked ones)
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from torch import nn

from common import NARROWEST, RESULTS, ROOT, final_training, hand_designed, say, widest_multiplier
from latency.deployed import pricing, time_exported, timing_key
from latency.measure import Protocol
from nas.config import load_config
from nas.experiment import Experiment, open_experiment
from nas.pipeline import resume, run_stages
from nas.rundir import RunDir, write_json
from nas.stages.export import export, load_model
from search_spaces.arch import Arch, load_arch
from search_spaces.counting import count
from search_spaces.infra.files import atomic_write
from search_spaces.infra.weights import write_weights
from search_spaces.transforms import with_width_multiplier

EXPERIMENT = ROOT / "runs" / "cifar10_supernet.yaml"
CONFIGS = ("table", "flops", "random")


def experiment(overrides: list[str]) -> Experiment:
    return open_experiment(load_config(EXPERIMENT, EXTRA + overrides), log=say)


def flops_scale(exp: Experiment) -> float:
    """ms per MMAC at which MobileNetV3-Small (the search's input) costs what the table
    says it does."""
    assert exp.latency is not None
    small = hand_designed(exp)
    return exp.latency.predict(small).ms / (count(small)[1] / 1e6)


def runs_of(config: str, seed: int, work: Path) -> list[Path]:
    return sorted(p.parent for p in (work / f"{config}_s{seed}").glob("*/*/config.yaml"))


EXTRA: list[str] = []  # --set: overrides for every run (a smoke run's budgets)


def keep(final: Path, kept: Path, name: str) -> None:
    """Copy a finished network's arch.json and metrics.json into `kept` as `name`.*:
    the run directories are scratch that a new machine does not have, but a network's
    latency needs only its architecture (benchmarks/results/latency_aware_ort/, tracked)."""
    kept.mkdir(parents=True, exist_ok=True)
    for what in ("arch", "metrics"):
        shutil.copyfile(final / f"{what}.json", kept / f"{name}.{what}.json")


def run_one(config: str, seed: int, work: Path) -> RunDir:
    """The finished run of `config` for `seed` (resumed, or started)."""
    folder = work / f"{config}_s{seed}"
    existing = runs_of(config, seed, work)
    if existing:
        say(f"{config} seed {seed}: resuming {existing[-1]}")
        return resume(existing[-1], log=say)
    overrides = [f"seed={seed}", f"output_dir={folder}"]
    if config == "flops":
        exp = experiment([f"seed={seed}"])
        scale, form = flops_scale(exp), pricing(exp.latency).protocol
        say(f"flops seed {seed}: {scale:.4f} ms/MMAC (MobileNetV3-Small as in the table)")
        # ms of the runtime the table prices: the export compares with that runtime
        overrides.append(f"latency={{kind: flops, ms_per_mmac: {scale:.6f}, "
                         f"backend: {form.backend}, dtype: {form.dtype}}}")
    if config == "random":
        overrides.append("search.strategy=random")
    exp = experiment(overrides)
    run = RunDir.create(folder, exp.config.name, exp.resolved_config())
    say(f"{config} seed {seed}: run directory {run.root}")
    if config != "table":
        # the same seed's supernet, trained once by the table run
        tables = runs_of("table", seed, work)
        if not tables:
            raise SystemExit(f"{config} seed {seed}: reuses the table run's supernet; "
                             f"run --configs table first")
        trained = RunDir(tables[-1]).supernet_pt
        run.supernet_pt.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(trained, run.supernet_pt)
    with run.writing():
        run_stages(exp, run, say)
    return run


def run_baselines(seed: int, work: Path, kept: Path) -> None:
    """MobileNetV3-Small and its width multiplier at the `table` run's latency, each
    trained like the runs' final network into `<work>/<baseline>_s<seed>/final/` (arch,
    weights, ONNX and metrics, as a run's `final/` has them); done ones are skipped.
    The `table` run's latency comes from its run directory, else from its metrics kept
    in `kept` (a machine without the run directories)."""
    tables = runs_of("table", seed, work)
    metrics = (RunDir(tables[-1]).final.metrics_json if tables
               else kept / f"table_s{seed}.metrics.json")
    if not metrics.is_file():
        raise SystemExit(f"baselines seed {seed}: need the table run's latency; run "
                         f"--configs table --seeds {seed} first")
    searched = json.loads(metrics.read_text())
    exp = experiment([f"seed={seed}"])  # the table and the resolved target, as the runs had
    cfg, splits, latency = exp.config, exp.data, exp.latency
    assert latency is not None

    def predict(arch: Arch) -> float:
        return latency.predict(arch).ms

    small = hand_designed(exp)
    try:
        narrow = widest_multiplier(small, predict, searched["latency_ms"])[1]
    except RuntimeError:  # below the multiplier's floor: the nearest it comes
        narrow = with_width_multiplier(small, NARROWEST).replace(
            name=f"{small.name} x{NARROWEST:.2f}")
        say(f"seed {seed}: no width multiplier reaches the searched {searched['latency_ms']:.3f}"
            f" ms; x{NARROWEST} costs {predict(narrow):.3f} ms")
    nets: dict[str, Arch] = {"mobilenet_v3_small": small, "width_multiplier": narrow}
    for name, arch in nets.items():
        folder = work / f"{name}_s{seed}" / "final"
        if (folder / "metrics.json").is_file():
            say(f"{name} seed {seed}: already done ({folder})")
            continue
        say(f"{name} seed {seed}: {arch.name}, {predict(arch):.3f} ms, final training "
            f"({cfg.final.epochs:g} epochs from scratch)")
        model, val, test, minutes = final_training(arch, seed, cfg.final.epochs, cfg.train,
                                                   splits)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "arch.json", arch.to_json())
        write_weights(model.state_dict(), folder / "weights.pt")
        export(arch, folder / "weights.pt", "onnx", folder / "model.onnx")
        params, macs = count(arch)
        write_json(folder / "metrics.json", {  # last: the baseline is complete
            "test_top1": test, "val_top1": val, "latency_ms": predict(arch),
            "params": params, "macs": macs, "latency_target_ms": searched["latency_target_ms"],
            "train_min": minutes})
        say(f"{name} seed {seed}: test top-1 {test:.4f} ({minutes:.1f} min)")
    for name in nets:
        keep(work / f"{name}_s{seed}" / "final", kept, f"{name}_s{seed}")


def finished(work: Path) -> Iterator[tuple[str, Path, Path, Path | None, Path]]:
    """(name, arch.json, metrics.json, weights.pt, model.onnx) of every final network
    under `work`."""
    for metrics_json in sorted(work.glob("*_s*/**/final/metrics.json")):
        final = metrics_json.parent
        name = metrics_json.relative_to(work).parts[0]
        yield name, final / "arch.json", metrics_json, final / "weights.pt", final / "model.onnx"


def kept_networks(kept: Path, scratch: Path
                  ) -> Iterator[tuple[str, Path, Path, Path | None, Path]]:
    """Likewise for the networks kept in `kept`, each exported to ONNX in `scratch` with
    freshly initialised weights (None): a machine without the run directories can time
    them, since latency depends on the shapes, not on the trained values."""
    for arch_json in sorted(kept.glob("*_s*.arch.json")):
        name = arch_json.name.removesuffix(".arch.json")
        onnx = scratch / f"{name}.onnx"
        export(load_arch(arch_json), None, "onnx", onnx)
        yield name, arch_json, kept / f"{name}.metrics.json", None, onnx


def measure(work: Path, out: Path, passes: int, kept: Path | None = None) -> pd.DataFrame:
    """Every finished final network under `work` (or, given `kept`, every network kept
    there), timed end to end here `passes` times over (this machine's level drifts
    between minutes more than within one network's 30 runs); all passes into `out`, and
    returned as the median over passes per network. Each timing gives the median and the
    table's p10 of the same 30 runs. `table_ms` prices each network in this machine's
    table (built first if missing) and `target_ms` is the experiment's target resolved
    in it; `run_target_ms` is the one the network's run had (on the machine it ran on)."""
    exp = experiment([])
    table, target = exp.latency, exp.reward_target_ms
    priced = timing_key(pricing(table).protocol)  # the runtime the table's ms are for
    with tempfile.TemporaryDirectory() as scratch:
        sources = finished(work) if kept is None else kept_networks(kept, Path(scratch))
        nets = []  # loaded once, timed every pass
        for name, arch_json, metrics_json, weights, onnx in sources:
            config, seed = name.rsplit("_s", 1)
            m = json.loads(metrics_json.read_text())
            arch = load_arch(arch_json)
            row = {"config": config, "seed": int(seed), "test_top1": m["test_top1"],
                   "params": m["params"], "macs": m["macs"],
                   "table_ms": table.predict(arch).ms, "target_ms": target,
                   "run_target_ms": m["latency_target_ms"]}
            nets.append((row, arch, load_model(arch, weights), onnx))
        return _time_passes(nets, out, passes, priced)


def _time_passes(nets: list[tuple[dict, Arch, nn.Module, Path]], out: Path, passes: int,
                 priced: str) -> pd.DataFrame:
    """`nets` (row, arch, model, ONNX file) timed `passes` times over; see `measure`."""
    rows = []
    for p in range(passes):
        for base, arch, model, onnx in nets:
            row = {"pass": p, **base}
            t = time_exported(model, (1, arch.in_ch, arch.resolution, arch.resolution), onnx,
                              Protocol(threads=1, repeats=30, percentile=10.0))
            for backend, timing in t.items():
                row[f"{backend}_median_ms"] = timing.median_ms
                row[f"{backend}_p10_ms"] = timing.ms
            rows.append(row)
            say(f"pass {p + 1}/{passes} {row['config']} seed {row['seed']}: {json.dumps(row)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)
    frame = (pd.DataFrame(rows).drop(columns="pass").groupby(["seed", "config"])
             .median().reset_index())
    frame["priced"] = priced
    frame["off_target"] = (frame[f"{priced}_median_ms"] / frame["target_ms"] - 1).abs()
    frame["table_error"] = frame["table_ms"] / frame[f"{priced}_p10_ms"] - 1
    return frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--configs", nargs="+", choices=CONFIGS, default=["table", "flops"],
                    help="the searches per seed (table first: the others reuse its "
                         "supernet)")
    ap.add_argument("--measure", action="store_true",
                    help="time the finished runs' final networks (run it alone)")
    ap.add_argument("--baselines", action="store_true",
                    help="train the hand-designed baselines of --seeds (after their "
                         "table runs)")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "latency_aware_ort")
    ap.add_argument("--measured", type=Path,
                    default=RESULTS / "latency_aware_ort.csv")
    ap.add_argument("--kept", type=Path,
                    default=RESULTS / "latency_aware_ort",
                    help="where each finished network's arch.json and metrics.json are "
                         "kept (tracked; the run directories are scratch)")
    ap.add_argument("--from-kept", action="store_true",
                    help="--measure: time the networks in --kept (their arch.json, fresh "
                         "weights) instead of --work's run directories: for a machine "
                         "that lacks them")
    ap.add_argument("--passes", type=int, default=5,
                    help="--measure: timing passes over all networks (medians reported)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="overrides for every run, e.g. a smoke run's small budgets")
    args = ap.parse_args()
    EXTRA.extend(args.set)
    kept = args.kept
    if args.baselines:
        for seed in args.seeds:
            run_baselines(seed, args.work, kept)
        return
    if not args.measure:
        for seed in args.seeds:
            for config in args.configs:
                run = run_one(config, seed, args.work)
                keep(run.final.root, kept, f"{config}_s{seed}")
        return
    frame = measure(args.work, args.measured, args.passes,
                    kept if args.from_kept else None)
    cols = ["test_top1", "table_ms", "torch_median_ms", "onnxruntime_median_ms",
            "off_target", "table_error", "params"]
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print()
        print(frame.groupby("config")[cols].agg(["mean", "std"]).to_string(
            float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
