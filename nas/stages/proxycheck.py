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
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from nas.experiment import Experiment, open_experiment
from nas.rundir import RunDir
from nas.search.evaluators import make_evaluator
from nas.search.evaluators.train import train_children
from search_spaces.counting import count
from search_spaces.infra.files import TrialLog, read_frame, save_figure, write_json
from search_spaces.infra.jobs import JobResult

COLUMNS = ["index", "arch_hash", "decisions", "latency_ms", "params", "macs", "evaluator",
           "accuracy", "wall_s", "error"]
LONG = "long"  # the stand-alone training every evaluator is ranked against


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


def summarise(frame: pd.DataFrame, setup_s: dict[str, float] | None = None) -> dict[str, Any]:
    """Each evaluator's tau and rho against the long training, and its cost per child
    (with its one-off training, `setup_s` by evaluator, amortised over 1,000)."""
    ok = _succeeded(frame)
    wide = ok.pivot_table(index="index", columns="evaluator", values="accuracy")
    out: dict[str, Any] = {"archs": int(wide.shape[0]), "evaluators": {}}
    if LONG not in wide:
        return out
    for name in [c for c in wide.columns if c != LONG]:
        both = wide[[name, LONG]].dropna()
        cost = ok[ok["evaluator"] == name]["wall_s"]
        entry = {"archs": len(both), "kendall_tau": kendall_tau(both[name], both[LONG]),
                 "spearman_rho": spearman_rho(both[name], both[LONG]),
                 "s_per_child": float(cost.median()) if len(cost) else float("nan")}
        setup = (setup_s or {}).get(name)
        if setup is not None:
            entry[f"{name}_train_s"] = setup
            # amortised over 1,000 children, as the benchmark counts it
            entry["s_per_child_amortised_1000"] = entry["s_per_child"] + setup / 1000
        out["evaluators"][name] = entry
    long_cost = ok[ok["evaluator"] == LONG]["wall_s"]
    out["long_s_per_child"] = float(long_cost.median()) if len(long_cost) else float("nan")
    return out


def print_table(summary: dict[str, Any], epochs: float, out: Callable[[str], None]) -> None:
    out(f"{'evaluator':<10} {'archs':>5} {'Kendall tau':>11} {'Spearman':>9} "
        f"{'s/child':>8}  vs {epochs:g}-epoch stand-alone training "
        f"({summary.get('long_s_per_child', float('nan')):.0f} s/child)")
    for name, e in summary["evaluators"].items():
        extra = ""
        if f"{name}_train_s" in e:
            extra = (f"  (+ {e[f'{name}_train_s']:.0f} s {name} training; "
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
    names = [c for c in wide.columns if c != LONG]
    if LONG not in wide or not names:
        return False
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        both = wide[[name, LONG]].dropna()
        ax.scatter(both[name], both[LONG], s=16)
        ax.set_xlabel(f"{name} evaluator: validation top-1")
        ax.set_ylabel(f"{epochs:g}-epoch stand-alone: validation top-1")
        ax.set_title(f"tau {kendall_tau(both[name], both[LONG]):.2f}")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return True


def run_proxy_check(source: str | Path, overrides: list[str] | None = None,
                    archs: int | None = None,
                    log: Callable[[str], None] | None = None) -> Path:
    """Run (a YAML) or continue (a run directory) a proxy check; returns its folder."""
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    path = Path(source)
    run: RunDir | None = None
    if RunDir.is_run(path):
        run = RunDir.open(path)
        exp = open_experiment(run.config_path, reward=False, log=say)
    else:
        extra = list(overrides or []) + ([f"proxy_check.archs={archs}"] if archs else [])
        exp = open_experiment(path, extra, reward=False, log=say)
    if run is None:
        cfg = exp.config
        assert cfg.output_dir is not None and cfg.name is not None
        run = RunDir.create(cfg.output_dir, f"{cfg.name}_proxy_check", exp.resolved_config())
        say(f"proxy check: {run.root}")
    with run.writing():
        return _check(run, exp, say)


def _check(run: RunDir, exp: Experiment, say: Callable[[str], None]) -> Path:
    """Score the proxy check's architectures in `run`, resuming what it has."""
    cfg, space, latency = exp.config, exp.space, exp.latency
    assert latency is not None
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

    def recorder(evaluator: str) -> Callable[[int, JobResult], None]:
        def record(i: int, result: JobResult) -> None:
            row = {**info[i], "evaluator": evaluator, "accuracy": result.accuracy,
                   "wall_s": round(result.wall_s, 3), "error": result.error}
            logfile.append(row)
            acc = "FAILED " + result.error if result.accuracy is None \
                else f"{result.accuracy:.3f}"
            say(f"proxy check: arch {i} ({info[i]['latency_ms']:.2f} ms) {evaluator}: {acc} "
                f"({result.wall_s:.1f} s)")
        return record

    def todo(evaluator: str) -> list[tuple[int, dict[str, Any]]]:
        return [(i, values) for i, values in enumerate(picked) if (i, evaluator) not in done]

    say(f"proxy check: {len(picked)} architectures of {space.name} from "
        f"{info[0]['latency_ms']:.2f} to {info[len(picked) - 1]['latency_ms']:.2f} ms; "
        f"evaluators {', '.join(pc.evaluators)} against {pc.epochs:g} epochs stand-alone")
    setup_s = {}
    for name in pc.evaluators:  # the same evaluators the search uses
        evaluator = make_evaluator(name)
        setup = evaluator.score_children(exp, run, todo(name), recorder(name), say)
        if setup is not None:
            setup_s[name] = setup
    train_children(exp, run, todo(LONG), recorder(LONG), epochs=pc.epochs, label=LONG)
    frame = read_frame(logfile.path, COLUMNS, ("accuracy",))
    summary = summarise(frame, setup_s)
    summary.update(epochs=pc.epochs, space=space.name, data=exp.data.summary())
    write_json(run.proxy_check_json, summary)
    print_table(summary, pc.epochs, print)
    if _plot(frame, run.proxy_check_png, pc.epochs):
        say(f"proxy check: {run.proxy_check_png}")
    return run.root
