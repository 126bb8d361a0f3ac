"""`nas proxy-check`: does the search's evaluator rank architectures the way a longer
stand-alone training does?

Architectures are drawn spread over the latency range (a seeded pool of random
children, sorted by latency, taken at evenly spaced quantiles), each is scored by
every evaluator asked for (`train`: the proxy training of `train:`; `supernet`: the
weight-sharing supernet of `supernet:`, trained once) and by a stand-alone training
of `proxy_check.epochs`, and the report gives Kendall's tau and Spearman's rho of
each evaluator against the long training, with what each costs per child.

Results go into a run directory of their own (`<name>_proxy_check/<stamp>/`):
`proxy_check.csv` (append-only, so a killed check resumes with `nas proxy-check
RUN_DIR`), `proxy_check.json` (the summary) and `proxy_check.png` (a scatter plot,
with matplotlib).
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import numpy as np
import pandas as pd

from search_spaces.infra.checks import positive
from search_spaces.infra.files import save_figure

if TYPE_CHECKING:
    from latency.model import LatencyModel
    from nas.config import ExperimentConfig
    from nas.data import Splits
    from nas.rundir import RunDir
    from search_spaces.factorized import FactorizedSpace

EVALUATORS = ("train", "supernet")
COLUMNS = ["index", "arch_hash", "decisions", "latency_ms", "params", "macs", "evaluator",
           "accuracy", "wall_s", "error"]


@dataclass
class ProxyCheckConfig:
    """`proxy_check:` what `nas proxy-check` measures."""

    archs: int = field(default=20, metadata={"check": positive})
    epochs: float = field(default=10.0, metadata={"check": positive})  # the long training
    evaluators: list[Literal["train", "supernet"]] = field(
        default_factory=lambda: ["train", "supernet"])
    pool: int = field(default=10, metadata={"check": positive})  # random children per arch


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either ranking handled); NaN for fewer than 2 pairs."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    n = len(a)
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        da, db = np.sign(a[i + 1:] - a[i]), np.sign(b[i + 1:] - b[i])
        both = da * db
        concordant += int((both > 0).sum())
        discordant += int((both < 0).sum())
        ties_a += int(((da == 0) & (db != 0)).sum())
        ties_b += int(((db == 0) & (da != 0)).sum())
    denom = np.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return float((concordant - discordant) / denom) if denom else float("nan")


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's correlation of the (average-tie) ranks."""
    rx, ry = pd.Series(x).rank(), pd.Series(y).rank()
    return float(rx.corr(ry))


def spread_over_latency(space: Any, predict: Callable[[Any], float], archs: int, pool: int,
                        seed: int) -> list[dict[str, Any]]:
    """`archs` distinct children at evenly spaced latency quantiles of a seeded pool of
    `archs * pool` random ones."""
    rng = random.Random(seed)
    seen: dict[str, tuple[float, dict[str, Any]]] = {}
    for _ in range(archs * pool):
        values = space.sample(rng)
        arch = space.decode(values)
        if arch.hash() not in seen:
            seen[arch.hash()] = (predict(arch), values)
    ranked = sorted(seen.values(), key=lambda item: item[0])
    if len(ranked) < archs:
        return [values for _, values in ranked]
    picks = np.linspace(0, len(ranked) - 1, archs).round().astype(int)
    return [ranked[i][1] for i in picks]


def _succeeded(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["error"].isna() | (frame["error"].astype(str) == "")]


def summarise(frame: pd.DataFrame, supernet_train_s: float | None) -> dict[str, Any]:
    """Each evaluator's tau and rho against the long training, and its cost per child."""
    ok = _succeeded(frame)
    wide = ok.pivot_table(index="index", columns="evaluator", values="accuracy")
    out: dict[str, Any] = {"archs": int(wide.shape[0]), "evaluators": {}}
    if "long" not in wide:
        return out
    for name in [c for c in wide.columns if c != "long"]:
        both = wide[[name, "long"]].dropna()
        cost = ok[ok["evaluator"] == name]["wall_s"]
        entry = {"archs": len(both), "kendall_tau": kendall_tau(both[name], both["long"]),
                 "spearman_rho": spearman_rho(both[name], both["long"]),
                 "s_per_child": float(cost.median()) if len(cost) else float("nan")}
        if name == "supernet" and supernet_train_s is not None:
            entry["supernet_train_s"] = supernet_train_s
            # amortised over 1,000 children, as the benchmark counts it
            entry["s_per_child_amortised_1000"] = entry["s_per_child"] + supernet_train_s / 1000
        out["evaluators"][name] = entry
    long_cost = ok[ok["evaluator"] == "long"]["wall_s"]
    out["long_s_per_child"] = float(long_cost.median()) if len(long_cost) else float("nan")
    return out


def print_table(summary: dict[str, Any], epochs: float, out: Callable[[str], None]) -> None:
    out(f"{'evaluator':<10} {'archs':>5} {'Kendall tau':>11} {'Spearman':>9} "
        f"{'s/child':>8}  vs {epochs:g}-epoch stand-alone training "
        f"({summary.get('long_s_per_child', float('nan')):.0f} s/child)")
    for name, e in summary["evaluators"].items():
        extra = ""
        if "supernet_train_s" in e:
            extra = (f"  (+ {e['supernet_train_s']:.0f} s supernet training; "
                     f"{e['s_per_child_amortised_1000']:.2f} s/child over 1,000)")
        out(f"{name:<10} {e['archs']:>5} {e['kendall_tau']:>11.3f} {e['spearman_rho']:>9.3f} "
            f"{e['s_per_child']:>8.2f}{extra}")


def _plot(frame: pd.DataFrame, path: Path, epochs: float) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ok = _succeeded(frame)
    wide = ok.pivot_table(index="index", columns="evaluator", values="accuracy")
    names = [c for c in wide.columns if c != "long"]
    if "long" not in wide or not names:
        return False
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        both = wide[[name, "long"]].dropna()
        ax.scatter(both[name], both["long"], s=16)
        ax.set_xlabel(f"{name} evaluator: validation top-1")
        ax.set_ylabel(f"{epochs:g}-epoch stand-alone: validation top-1")
        ax.set_title(f"tau {kendall_tau(both[name], both['long']):.2f}")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return True


def run_proxy_check(source: str | Path, overrides: list[str] | None = None,
                    archs: int | None = None,
                    log: Callable[[str], None] | None = None) -> Path:
    """Run (a YAML) or continue (a run directory) a proxy check; returns its folder."""
    from nas.config import build_latency_model, build_space, load_config
    from nas.data import load_data
    from nas.rundir import RunDir

    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    path = Path(source)
    if RunDir.is_run(path):
        run = RunDir.open(path)
        cfg = load_config(run.config_path)
    else:
        extra = list(overrides or []) + ([f"proxy_check.archs={archs}"] if archs else [])
        cfg = load_config(path, extra)
        run = None
    splits = load_data(cfg.data, cfg.search.resolution, cfg.source,
                       cfg.limits.max_data_gib)
    space = build_space(cfg, splits.num_classes)
    latency = build_latency_model(cfg)
    if run is None:
        assert cfg.output_dir is not None and cfg.name is not None
        run = RunDir.create(cfg.output_dir, f"{cfg.name}_proxy_check", cfg.to_dict())
        say(f"proxy check: {run.root}")
    with run.writing():
        return _check(run, cfg, splits, space, latency, say)


def _check(run: "RunDir", cfg: "ExperimentConfig", splits: "Splits",
           space: "FactorizedSpace", latency: "LatencyModel", say: Callable[[str], None]
           ) -> Path:
    """Score the proxy check's architectures in `run`, resuming what it has."""
    from nas.pipeline import Prepared, load_or_train_supernet
    from nas.raytune import make_executor
    from nas.search.core import trial_seed
    from nas.search.supernet import ChildScorer
    from nas.step import make_step
    from search_spaces.infra.jobs import Job, JobResult
    from search_spaces.counting import count
    from search_spaces.infra.files import TrialLog, read_frame, read_record, write_json

    pc = cfg.proxy_check
    picked = spread_over_latency(space, lambda a: latency.predict(a).ms, pc.archs, pc.pool,
                                 cfg.seed)
    logfile = TrialLog(run.proxy_check_csv, COLUMNS)
    done = {(int(r["index"]), r["evaluator"]) for r in logfile.read()}
    info = {}
    for i, values in enumerate(picked):
        arch = space.decode(values)
        params, macs = count(arch)
        info[i] = {"index": i, "arch_hash": arch.hash(),
                   "decisions": space.indices_from_values(values),
                   "latency_ms": latency.predict(arch).ms, "params": params, "macs": macs}

    def record(i: int, evaluator: str, result: JobResult) -> None:
        row = {**info[i], "evaluator": evaluator, "accuracy": result.accuracy,
               "wall_s": round(result.wall_s, 3), "error": result.error}
        logfile.append(row)
        acc = "FAILED " + result.error if result.accuracy is None else f"{result.accuracy:.3f}"
        say(f"proxy check: arch {i} ({info[i]['latency_ms']:.2f} ms) {evaluator}: {acc} "
            f"({result.wall_s:.1f} s)")

    say(f"proxy check: {len(picked)} architectures of {space.name} from "
        f"{info[0]['latency_ms']:.2f} to {info[len(picked) - 1]['latency_ms']:.2f} ms; "
        f"evaluators {', '.join(pc.evaluators)} against {pc.epochs:g} epochs stand-alone")
    supernet_s = None
    if "supernet" in pc.evaluators:
        prep = Prepared(cfg, splits, space, latency, None)
        start = time.perf_counter()
        had = run.supernet_pt.is_file()
        scorer = ChildScorer(load_or_train_supernet(prep, run, say), splits, cfg.train,
                             cfg.supernet.bn_batches, cfg.seed)
        timing = run.supernet_train_s_json
        if not had:
            write_json(timing, {"wall_s": time.perf_counter() - start})
        supernet_s = read_record(timing, ("wall_s",))["wall_s"] if timing.is_file() else None
        for i, values in enumerate(picked):
            if (i, "supernet") not in done:
                t0 = time.perf_counter()
                acc = scorer.score(values)
                record(i, "supernet", JobResult(acc, "", time.perf_counter() - t0))
    for evaluator, budget in (("train", None), ("long", pc.epochs)):
        if evaluator == "train" and "train" not in pc.evaluators:
            continue
        jobs = [Job(f"{evaluator}_{i}", space.decode(values), trial_seed(cfg.seed, i),
                    epochs=budget)
                for i, values in enumerate(picked) if (i, evaluator) not in done]
        executor = make_executor(cfg.search.executor, make_step(splits, cfg.train), cfg.ray,
                                 run.ray_dir, "proxy_check")
        if jobs:
            executor(jobs, lambda job, r: record(int(job.name.split("_")[1]),
                                                 job.name.split("_")[0], r))
    frame = read_frame(logfile.path, COLUMNS, ("accuracy",))
    summary = summarise(frame, supernet_s)
    summary.update(epochs=pc.epochs, space=space.name, data=splits.summary())
    write_json(run.proxy_check_json, summary)
    print_table(summary, pc.epochs, print)
    if _plot(frame, run.proxy_check_png, pc.epochs):
        say(f"proxy check: {run.proxy_check_png}")
    return run.root
