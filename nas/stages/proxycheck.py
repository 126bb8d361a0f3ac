"""`nas proxy-check`: does the search's evaluator rank architectures the way a longer
stand-alone training does?

Architectures are drawn spread over the latency range (a seeded pool of random
children, sorted by latency, taken at evenly spaced quantiles), each is scored by
every evaluator asked for (`train`: the proxy training of `train:`; `supernet`: the
weight-sharing supernet of `supernet:`, trained once) and by a stand-alone training
of `proxy_check.epochs`, and the report gives Kendall's tau and Spearman's rho of
each evaluator against the long training, with what each costs per child.

With `reference_seeds: 2` the long training runs twice under two seeds, and the tau
between the two is the ceiling: the best ranking any evaluator can be expected to
show against a reference that noisy. Each tau comes with a bootstrap interval (the
architectures resampled), on the whole set and inside the band the search picks
from (the reward's target +- `band`), where `band_archs` more architectures are drawn.

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
from nas.ranking import kendall_tau, spearman_rho, tau_interval
from nas.rundir import RunDir
from nas.search.evaluators import make_evaluator
from nas.search.core import trial_seed
from nas.search.evaluators.train import train_jobs
from search_spaces.counting import count
from search_spaces.infra.errors import UserError
from search_spaces.infra.files import TrialLog, read_frame, save_figure, write_json
from search_spaces.infra.strict import read_yaml
from search_spaces.infra.jobs import Job, JobResult
from search_spaces.infra.seeds import seed_for

COLUMNS = ["index", "arch_hash", "decisions", "latency_ms", "params", "macs", "evaluator",
           "accuracy", "wall_s", "error"]
LONG = "long"  # the stand-alone training every evaluator is ranked against
MIN_BAND_ARCHS = 4  # fewer architectures inside the band: no tau reported there


def reference_label(k: int) -> str:
    """The evaluator column of the k-th (1-based) stand-alone training: long, long_2, ..."""
    return LONG if k == 1 else f"{LONG}_{k}"


def reference_seed(seed: int, index: int, k: int) -> int:
    """Architecture `index`'s training seed in its k-th reference: the first is seeded as
    the search seeds trial `index` (so checks made with one reference keep their rows),
    the others each from a stream of their own."""
    if k == 1:
        return trial_seed(seed, index)
    return seed_for(seed, f"proxy_check/reference{k}/{index}")


def _evenly(count_: int, n: int) -> list[int]:
    """`n` evenly spaced positions of `count_` (all of them when there are no more)."""
    if count_ <= n:
        return list(range(count_))
    return [int(i) for i in np.linspace(0, count_ - 1, n).round().astype(int)]


def spread_over_latency(space: Any, predict: Callable[[Any], float], archs: int, pool: int,
                        seed: int, band: tuple[float, float] | None = None,
                        band_archs: int = 0) -> list[dict[str, Any]]:
    """`archs` distinct children at evenly spaced latency quantiles of a seeded pool of
    `archs * pool` random ones, then up to `band_archs` more, evenly spaced among the
    pool's children inside `band` (ms, inclusive) once `band_archs * pool` more random
    ones have joined it. The first `archs` do not depend on the band."""
    rng = random.Random(seed)
    seen: dict[str, tuple[float, dict[str, Any]]] = {}

    def draw(n: int) -> None:
        for _ in range(n):
            values = space.sample(rng)
            arch = space.decode(values)
            if arch.hash() not in seen:
                seen[arch.hash()] = (predict(arch), values)

    draw(archs * pool)
    ranked = sorted(seen.values(), key=lambda item: item[0])
    picks = [ranked[i] for i in _evenly(len(ranked), archs)]
    if band is not None and band_archs:
        draw(band_archs * pool)
        taken = {id(p) for p in picks}
        inside = sorted((item for item in seen.values()
                         if band[0] <= item[0] <= band[1] and id(item) not in taken),
                        key=lambda item: item[0])
        picks += [inside[j] for j in _evenly(len(inside), band_archs)]
    return [values for _, values in picks]


def _succeeded(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["error"].isna() | (frame["error"].astype(str) == "")]


def _references(columns: Sequence[str]) -> list[str]:
    """The reference columns present, in seed order (long, long_2, ...)."""
    return [reference_label(k) for k in range(1, len(columns) + 1)
            if reference_label(k) in columns]


def _ranking(x: pd.Series, y: pd.Series, resamples: int, seed: int) -> dict[str, Any]:
    return {"archs": len(x), "kendall_tau": kendall_tau(x, y),
            "tau_ci95": tau_interval(x, y, resamples, seed)}


def summarise(frame: pd.DataFrame, setup_s: dict[str, float] | None = None,
              band: tuple[float, float] | None = None, resamples: int = 1000,
              seed: int = 0) -> dict[str, Any]:
    """Each evaluator's tau (with its bootstrap interval) and rho against the first long
    training, on the whole set and inside `band` (ms), and its cost per child (with its
    one-off training, `setup_s` by evaluator, amortised over 1,000); with a second long
    training, the ceiling: its tau against the first, and each evaluator's share of it."""
    ok = _succeeded(frame)
    wide = ok.pivot_table(index="index", columns="evaluator", values="accuracy")
    latency = ok.groupby("index")["latency_ms"].first()
    out: dict[str, Any] = {"archs": int(wide.shape[0]), "evaluators": {}}
    if band is not None:
        out["band_ms"] = [float(band[0]), float(band[1])]
    if LONG not in wide:
        return out
    references = _references(list(wide.columns))

    def score(name: str) -> dict[str, Any]:
        both = wide[[name, LONG]].dropna()
        entry = _ranking(both[name], both[LONG], resamples, seed)
        entry["spearman_rho"] = spearman_rho(both[name], both[LONG])
        if band is not None:
            ms = latency.reindex(both.index)
            inside = both[(ms >= band[0]) & (ms <= band[1])]
            entry["band"] = (_ranking(inside[name], inside[LONG], resamples, seed)
                             if len(inside) >= MIN_BAND_ARCHS else {"archs": len(inside)})
        cost = ok[ok["evaluator"] == name]["wall_s"]
        entry["s_per_child"] = float(cost.median()) if len(cost) else float("nan")
        return entry

    if len(references) > 1:
        out["ceiling"] = {**score(references[1]), "between": [LONG, references[1]]}
    for name in [c for c in wide.columns if c not in references]:
        entry = score(name)
        setup = (setup_s or {}).get(name)
        if setup is not None:
            entry[f"{name}_train_s"] = setup
            # amortised over 1,000 children, as the benchmark counts it
            entry["s_per_child_amortised_1000"] = entry["s_per_child"] + setup / 1000
        if "ceiling" in out and out["ceiling"]["kendall_tau"] > 0:  # else no share
            entry["of_ceiling"] = entry["kendall_tau"] / out["ceiling"]["kendall_tau"]
        out["evaluators"][name] = entry
    long_cost = ok[ok["evaluator"].isin(references)]["wall_s"]
    out["long_s_per_child"] = float(long_cost.median()) if len(long_cost) else float("nan")
    return out


def tau_text(entry: dict[str, Any] | None) -> str:
    """`0.220 [0.05, 0.40]`, or `- (n)` when too few architectures were there."""
    if not entry or "kendall_tau" not in entry:
        return f"- ({entry['archs']} archs)" if entry else "-"
    lo, hi = entry["tau_ci95"]
    ci = "" if np.isnan(lo) else f" [{lo:.2f}, {hi:.2f}]"
    return f"{entry['kendall_tau']:.3f}{ci}"


def print_table(summary: dict[str, Any], epochs: float, out: Callable[[str], None]) -> None:
    band = summary.get("band_ms")
    band_head = f"in band {band[0]:.3g}-{band[1]:.3g} ms" if band else "in band"
    out(f"{'evaluator':<10} {'archs':>5} {'Kendall tau [95% CI]':>22} {band_head:>26} "
        f"{'Spearman':>9} {'s/child':>8}  vs {epochs:g}-epoch stand-alone training "
        f"({summary.get('long_s_per_child', float('nan')):.0f} s/child)")
    rows = dict(summary["evaluators"])
    if "ceiling" in summary:
        rows = {"ceiling": summary["ceiling"], **rows}
    for name, e in rows.items():
        extra = ""
        if "of_ceiling" in e:
            extra += f"  ({e['of_ceiling']:.2f} of the ceiling)"
        if f"{name}_train_s" in e:
            extra += (f"  (+ {e[f'{name}_train_s']:.0f} s {name} training; "
                      f"{e['s_per_child_amortised_1000']:.2f} s/child over 1,000)")
        out(f"{name:<10} {e['archs']:>5} {tau_text(e):>22} {tau_text(e.get('band')):>26} "
            f"{e['spearman_rho']:>9.3f} {e['s_per_child']:>8.2f}{extra}")
    if "ceiling" in summary:
        out(f"ceiling: the {summary['ceiling']['between'][1]} training (another seed) "
            f"ranked against the {LONG} one")


def _plot(frame: pd.DataFrame, path: Path, epochs: float) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ok = _succeeded(frame)
    wide = ok.pivot_table(index="index", columns="evaluator", values="accuracy")
    names = [c for c in wide.columns if c != LONG]  # a second reference: the ceiling
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
    target_band(exp)  # refused before anything is written
    reference_source(exp)
    if run is None:
        cfg = exp.config
        assert cfg.output_dir is not None and cfg.name is not None
        run = RunDir.create(cfg.output_dir, f"{cfg.name}_proxy_check", exp.resolved_config())
        say(f"proxy check: {run.root}")
    with run.writing():
        return _check(run, exp, say)


def target_band(exp: Experiment) -> tuple[float, float] | None:
    """The band the search picks from, in ms: the reward's target +- `proxy_check.band`
    (None without a target, which `band_archs` cannot do without)."""
    pc, target = exp.config.proxy_check, exp.reward_target_ms
    if target is None:
        if pc.band_archs:
            raise UserError("proxy_check.band_archs: the band lies around the reward's "
                            "target; set reward.target_ms or reward.target_ratio",
                            exp.config.source)
        return None
    return target * (1 - pc.band), target * (1 + pc.band)


# What a stand-alone reference training depends on besides its architecture and seed:
# two checks that differ here do not share references. The space's keys, and every key
# of `data:` and `train:` but these: train.epochs (the job sets them), threads and
# device (no result changes), and data.val_subset, a prefix of the validation split
# that no training sees (how many images the evaluators score on is theirs to vary;
# the copied references keep the images they were scored on).
_SPACE_KEYS = ("space", "skeleton", "ops", "resolution", "stem_stride")
_FREE_KEYS = {"data": ("val_subset",), "train": ("epochs", "threads", "device")}


def _reference_setup(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a resolved config (`config.yaml`) its reference trainings depend on."""
    search = config.get("search") or {}
    setup = {"proxy_check.epochs": (config.get("proxy_check") or {}).get("epochs"),
             **{f"search.{k}": search.get(k) for k in _SPACE_KEYS}}
    for section, free in _FREE_KEYS.items():
        setup.update({f"{section}.{k}": v for k, v in (config.get(section) or {}).items()
                      if k not in free})
    return setup


def reference_source(exp: Experiment) -> tuple[RunDir, dict[str, Any]] | None:
    """The check named by `proxy_check.references` and its config, refused (before
    anything is written) when it is not a run directory or trained its references
    under another setup."""
    cfg = exp.config
    if cfg.proxy_check.references is None:
        return None
    other = RunDir.open(cfg.proxy_check.references)
    config = read_yaml(other.config_path) or {}
    mine, theirs = _reference_setup(exp.resolved_config()), _reference_setup(config)
    differ = [k for k in mine if mine[k] != theirs.get(k)]
    if differ:
        key = differ[0]
        raise UserError(f"proxy_check.references: {other.root} trained its references with "
                        f"{key} = {theirs.get(key)!r}, this check with {mine[key]!r}",
                        cfg.source)
    return other, config


def reuse_references(exp: Experiment, info: dict[int, dict[str, Any]],
                     done: set[tuple[int, str]], logfile: TrialLog,
                     say: Callable[[str], None]) -> int:
    """Copy into this check the stand-alone trainings that `proxy_check.references`
    (another check's run directory) made of the same architectures (by hash) under
    the same data, training and epochs; returns how many rows were copied. What it
    lacks trains here."""
    source = reference_source(exp)
    if source is None:
        return 0
    other, config = source
    labels = [reference_label(k) for k in range(1, exp.config.proxy_check.reference_seeds + 1)]
    rows = read_frame(other.proxy_check_csv, COLUMNS, ("accuracy",)) \
        if other.proxy_check_csv.is_file() else pd.DataFrame(columns=COLUMNS)
    rows = _succeeded(rows[rows["evaluator"].isin(labels)])
    found = {(r.arch_hash, r.evaluator): r for r in rows.itertuples()}
    copied = 0
    for i, arch in info.items():
        for label in labels:
            r = found.get((arch["arch_hash"], label))
            if r is None or (i, label) in done:
                continue
            logfile.append({**arch, "evaluator": label, "accuracy": r.accuracy,
                            "wall_s": r.wall_s, "error": ""})
            done.add((i, label))
            copied += 1
    if copied:
        say(f"proxy check: {copied} stand-alone trainings copied from {other.root}")
        theirs = (config.get("data") or {}).get("val_subset")
        if theirs != exp.config.data.val_subset:
            say(f"proxy check: the copied references were scored on val_subset {theirs}, "
                f"this check's evaluators on {exp.config.data.val_subset}")
    return copied


def _check(run: RunDir, exp: Experiment, say: Callable[[str], None]) -> Path:
    """Score the proxy check's architectures in `run`, resuming what it has."""
    cfg, space, latency = exp.config, exp.space, exp.latency
    assert latency is not None
    pc = cfg.proxy_check
    target, band = exp.reward_target_ms, target_band(exp)
    picked = spread_over_latency(space, lambda a: latency.predict(a).ms, pc.archs, pc.pool,
                                 cfg.seed, band, pc.band_archs)
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

    ms = [row["latency_ms"] for row in info.values()]
    say(f"proxy check: {len(picked)} architectures of {space.name} from "
        f"{min(ms):.2f} to {max(ms):.2f} ms; evaluators {', '.join(pc.evaluators)} against "
        f"{pc.epochs:g} epochs stand-alone"
        + (f" x {pc.reference_seeds} seeds" if pc.reference_seeds > 1 else ""))
    if band is not None:
        inside = sum(band[0] <= m <= band[1] for m in ms)
        say(f"proxy check: {inside} of them inside the band {band[0]:.3g}-{band[1]:.3g} ms "
            f"(target {target:.3g} ms +- {pc.band:.0%})")
    setup_s = {}
    for name in pc.evaluators:  # the same evaluators the search uses
        evaluator = make_evaluator(name)
        setup = evaluator.score_children(exp, run, todo(name), recorder(name), say)
        if setup is not None:
            setup_s[name] = setup
    reuse_references(exp, info, done, logfile, say)
    # The references interleaved by architecture: a check cut short still has every
    # seed of the architectures it reached, so a partial ceiling means something.
    references = [Job(f"{reference_label(k)}_{i}", space.decode(values),
                      reference_seed(cfg.seed, i, k), epochs=pc.epochs)
                  for i, values in enumerate(picked) for k in range(1, pc.reference_seeds + 1)
                  if (i, reference_label(k)) not in done]
    train_jobs(exp, run, references, lambda job, result: recorder(
        job.name.rpartition("_")[0])(int(job.name.rpartition("_")[2]), result))
    frame = read_frame(logfile.path, COLUMNS, ("accuracy",))
    summary = summarise(frame, setup_s, band, pc.bootstrap, cfg.seed)
    summary.update(epochs=pc.epochs, space=space.name, data=exp.data.summary(),
                   target_ms=target, reference_seeds=pc.reference_seeds)
    write_json(run.proxy_check_json, summary)
    print_table(summary, pc.epochs, print)
    if _plot(frame, run.proxy_check_png, pc.epochs):
        say(f"proxy check: {run.proxy_check_png}")
    return run.root
