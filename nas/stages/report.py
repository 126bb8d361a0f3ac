"""`report.md` (and `pareto.png` with matplotlib) from what a run directory holds.

Written after every stage from the files alone, so it is always current and
`nas report RUN_DIR` can rebuild it at any time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pandas as pd

from latency.model import LatencyModel
from nas.experiment import Experiment
from nas.resolve import run_net
from nas.rundir import RunDir
from nas.search.predictor import predictor_summary
from search_spaces.arch import Arch
from search_spaces.counting import count, count_rows
from search_spaces.infra.errors import UserError
from search_spaces.infra.files import atomic_write, read_frame, read_record, save_figure
from search_spaces.reference import BASELINES, load_reference
from search_spaces.transforms import with_input

def _table(frame: pd.DataFrame) -> str:
    """A markdown table (no tabulate dependency)."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"
    return str(value)


# What final/metrics.json holds (the final stage writes it, the report reads it).
FINAL_METRICS = ("test_top1", "val_top1", "latency_ms", "latency_source", "params", "macs",
                 "source", "init", "steps", "epochs", "train_wall_s", "wall_s", "test_images")
TRIALS = ("trial_id", "status", "accuracy", "latency_ms", "reward", "params", "macs",
          "arch_hash")
HISTORY = ("iteration", "proposal", "layers", "width_before", "width_after", "latency_ms",
           "accuracy", "metric", "chosen")


def _read_json(path: Path, keys: tuple[str, ...] = ()) -> dict | None:
    return read_record(path, keys) if path.is_file() else None


def reference_rows(arch: Arch, latency: LatencyModel | None,
                   accuracies: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """The reference nets at the run's input size and classes, under the same latency
    model (their accuracy only where trained on the same budget)."""
    rows = []
    for name in BASELINES:
        ref = with_input(load_reference(name), arch.resolution, arch.num_classes,
                         arch.stem.stride)
        params, macs = count(ref)
        try:
            ms: float | str = latency.predict(ref).ms if latency else float("nan")
        except UserError:  # the table cannot price it: say so, never fail the report
            ms = "not priced (the latency table lacks its rows)"
        rows.append({"network": name, "test top-1": (accuracies or {}).get(name, "not trained"),
                     "latency_ms": ms, "params": f"{params:,}", "MMACs": round(macs / 1e6, 2)})
    return rows


def result_target(exp: Experiment, run: RunDir) -> float | None:
    """The latency the final network was meant to meet: NetAdapt's target when it ran
    (its summary holds the one it resolved), else the search's reward target."""
    cfg = exp.config
    target = exp.reward_target_ms if "search" in cfg.stages else None
    if "netadapt" in cfg.stages:
        summary = _read_json(run.netadapt.summary_json) or {}
        target = summary.get("target_ms", target)
    return target


def write_report(exp: Experiment, run: RunDir,
                 log: Callable[[str], None] | None = None) -> Path:
    """Write `report.md` (+ `pareto.png` when matplotlib is installed) for the run `run`
    of `exp` (its own config.yaml); returns its path."""
    cfg, latency = exp.config, exp.latency
    out = [f"# {cfg.name}: run `{run.root.name}`", ""]
    metrics = _read_json(run.final.metrics_json, FINAL_METRICS)
    target_ms = result_target(exp, run)
    refs: list[dict[str, Any]] = []
    if metrics is not None:
        arch = run_net(run, "final").arch
        refs = reference_rows(arch, latency, _read_json(run.final.references_json))
        out += _result_section(metrics, refs, target_ms)
    out += [f"Run directory: `{run.root}`; the resolved configuration is "
            f"`{run.config_path.name}` beside this file.", ""]
    s, lat, rw = cfg.search, cfg.latency, cfg.reward
    facts = [("stages", " -> ".join(cfg.stages)),
             ("space", f"{s.space}, skeleton {s.skeleton or 'default'}, {s.resolution}x"
                       f"{s.resolution} input, stem stride {s.stem_stride}"),
             ("data", f"{cfg.data.kind} {cfg.data.path or ''}".strip()),
             ("latency model", lat.kind + (f" ({lat.path})" if lat.kind == "table" else ""))]
    if "search" in cfg.stages:
        facts += [("search", f"{s.strategy}, {s.num_trials} children, {s.executor} executor, "
                             f"{s.evaluator} evaluator"),
                  ("reward", f"{rw.kind}, target {exp.reward_target_ms} ms"
                             + (f", preset {rw.preset}" if rw.preset else "")
                             + "".join(f", {k} {v}" for k, v in
                                       (("alpha", rw.alpha), ("beta", rw.beta)) if v is not None))]
    if cfg.netadapt is not None and "netadapt" in cfg.stages:
        na = exp.netadapt
        na_target = f"{na.target_ms} ms" if na.target_ms else f"{na.target_ratio} x L0"
        facts.append(("netadapt", f"target {na_target}, delta {na.delta_ratio} x L0, "
                                  f"T = {na.short_term_steps} steps, metric {na.metric}"))
    out += ["## Experiment", "", _table(pd.DataFrame(facts, columns=["", "setting"])), ""]

    trials = run.trials_csv
    frame = read_frame(trials, TRIALS, ("accuracy", "latency_ms", "reward")) \
        if trials.is_file() else None
    if frame is not None and len(frame):
        ok = frame[frame["status"].isin(["ok", "cached"])]
        out += ["## Search", "",
                f"{len(frame)} children ({(frame['status'] == 'failed').sum()} failed, "
                f"{(frame['status'] == 'cached').sum()} cached"
                + (f", {(frame['status'] == 'predicted').sum()} rewarded by the accuracy "
                   f"predictor, none of them a candidate" if exp.config.predictor.real_every
                   else "") + "). Top 10 by reward:", ""]
        top = ok.sort_values("reward", ascending=False).head(10)
        out += [_table(top[["trial_id", "accuracy", "latency_ms", "reward", "params", "macs",
                            "arch_hash"]]), ""]
        if exp.config.predictor.real_every:
            out += [predictor_summary(frame.to_dict("records")) + ".", ""]
        if run.rerank_csv.is_file():
            out += _rerank_section(run)

    history = run.netadapt.history_csv
    hist = read_frame(history, HISTORY, ("latency_ms", "accuracy", "chosen")) \
        if history.is_file() else None
    summary = _read_json(run.netadapt.summary_json) or {}
    if hist is not None:
        chosen = hist[hist["chosen"] == 1]
        out += ["## NetAdapt", "",
                f"L0 {summary.get('L0_ms', float('nan')):.4g} ms, target "
                f"{summary.get('target_ms', float('nan')):.4g} ms, delta "
                f"{summary.get('delta_ms', float('nan')):.4g} ms; "
                f"{len(hist) - 1} proposals evaluated. The chosen path:", "",
                _table(chosen[["iteration", "proposal", "layers", "width_before", "width_after",
                               "latency_ms", "accuracy", "metric"]]), ""]

    if metrics is not None:
        out += ["## Final network", "",
                f"Trained from {metrics['init']} ({metrics['source']}'s network), "
                f"{metrics['epochs']:.3g} epochs. Test top-1 **{_fmt(metrics['test_top1'])}** "
                f"on {metrics['test_images']} held-out images (never seen by search or "
                f"NetAdapt); validation top-1 {metrics['val_top1']:.4f}.", ""]
        layers = pd.DataFrame([{"piece": r.name, "op": r.desc, "in": r.in_hw, "out": r.out_hw,
                                "channels": r.out_ch, "params": r.params, "MACs": r.macs}
                               for r in count_rows(arch)])
        out += ["Layers:", "", _table(layers), ""]
        exports = [p.name for p in run.final.root.glob("model.*")]
        if exports:
            beside = (run.final.arch_json, run.final.weights_pt, run.final.preprocessing_json)
            out += [f"Exported: {', '.join(sorted(exports))} (beside "
                    f"{', '.join(f'`{p.name}`' for p in beside)}).", ""]
    if _plot(run, frame, hist, target_ms, metrics, refs):
        out += ["![accuracy vs latency](pareto.png)", ""]
    path = run.report_md
    atomic_write(path, "\n".join(out))
    if log:
        log(f"report: {path}")
    return path


def _result_section(metrics: dict, refs: list[dict[str, Any]], target_ms: float | None
                    ) -> list[str]:
    """The answer first: the final network's test accuracy, its latency predicted and
    (after export) measured here against the target, its size, beside the reference
    nets (`refs`: `reference_rows`) at the same input size under the same latency model."""
    measured = metrics.get("latency_measured_ms") or {}
    lines = ["## Result", ""]
    target = f"target {target_ms:.4g} ms" if target_ms is not None else "no latency target"
    verdict = ""
    if target_ms is not None:
        verdict = " (meets it)" if metrics["latency_ms"] <= target_ms else " (misses it)"
    lines.append(f"Test top-1 **{_fmt(metrics['test_top1'])}**, latency "
                 f"**{metrics['latency_ms']:.4g} ms** predicted, {target}{verdict}; "
                 f"{metrics['params']:,} params, {metrics['macs'] / 1e6:.2f} MMACs.")
    if measured:
        shown = ", ".join(f"{ms:.4g} ms ({b})" for b, ms in measured.items())
        error = metrics.get("latency_relative_error")
        against = (f"; the prediction is {error:+.1%} against {metrics['latency_compared_backend']}"
                   if error is not None else
                   f"; not compared: the latency model is the {metrics['latency_model']}")
        lines.append(f"Measured on this machine ({metrics['latency_measured_on']}): "
                     f"{shown}{against}.")
    else:
        lines.append("Not measured on this machine (the export stage, with `export.measure`, "
                     "times the exported model).")
    if "latency_table_drift" in metrics:
        lines.append(f"The latency table's drift probe ran {metrics['latency_table_drift']:+.1%} "
                     f"against its build at that measurement (the machine's level).")
    if "int8_test_top1" in metrics:
        int8_ms, fp32_ms = measured.get("onnxruntime_int8"), measured.get("onnxruntime")
        speed = (f"; under ONNX Runtime int8 runs {int8_ms:.4g} ms against fp32's "
                 f"{fp32_ms:.4g} ms ({int8_ms / fp32_ms:.2f}x"
                 f"{', slower' if int8_ms > fp32_ms else ''})" if int8_ms and fp32_ms else "")
        drop = 100 * metrics["int8_top1_drop"]
        lines.append(f"Int8 (`model.int8.onnx`, static QDQ): test top-1 "
                     f"**{_fmt(metrics['int8_test_top1'])}**, {abs(drop):.2f} points "
                     f"{'below' if drop >= 0 else 'above'} fp32{speed}.")
    lines += ["", f"Beside the reference nets at the same input size, under the same latency "
              f"model ({metrics['latency_source']}):", ""]
    rows = [{"network": "this run", "test top-1": metrics["test_top1"],
             "latency_ms": metrics["latency_ms"], "params": f"{metrics['params']:,}",
             "MMACs": round(metrics["macs"] / 1e6, 2)}]
    return lines + [_table(pd.DataFrame(rows + refs)), ""]


def _rerank_section(run: RunDir) -> list[str]:
    """Both rankings of the supernet search's top children: by the supernet's reward
    and by the reward of their stand-alone proxy training, which picked the result."""
    rr = read_frame(run.rerank_csv, ("trial_id", "supernet_reward", "reward"),
                    ("supernet_reward", "reward"))
    best = _read_json(run.best_metrics_json) or {}
    rr["chosen"] = ["yes" if t == best.get("trial_id") and best.get("selected_by") == "rerank"
                    else "" for t in rr["trial_id"]]
    rr["supernet rank"] = rr["supernet_reward"].rank(ascending=False, method="min")
    rr["trained rank"] = rr["reward"].rank(ascending=False, method="min")
    cols = ["trial_id", "latency_ms", "supernet_accuracy", "supernet_reward", "supernet rank",
            "accuracy", "reward", "trained rank", "status", "chosen"]
    return ["The top children by supernet reward, each proxy-trained stand-alone "
            "(`train:`); the best by trained reward is the search's result:", "",
            _table(rr[cols]), ""]


def _plot(run: RunDir, frame: pd.DataFrame | None, hist: pd.DataFrame | None,
          target_ms: float | None, final: dict | None, refs: list[dict[str, Any]]) -> bool:
    """pareto.png: every child, the front, the NetAdapt path, the final network (and
    where it measured, when compared), the reference nets and the latency target;
    False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if (frame is None or not len(frame)) and hist is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if frame is not None and len(frame):
        ok = frame[frame["status"] == "ok"]
        ax.scatter(ok["latency_ms"], ok["accuracy"], s=12, alpha=0.5, label="search children")
        pareto = run.pareto_csv
        if pareto.is_file():
            front = read_frame(pareto, ("latency_ms", "accuracy"),
                               ("latency_ms", "accuracy")).sort_values("latency_ms")
            ax.plot(front["latency_ms"], front["accuracy"], "k-", lw=1, label="Pareto front")
    if hist is not None:
        path = hist[hist["chosen"] == 1]
        ax.plot(path["latency_ms"], path["accuracy"], "o-", color="tab:red", ms=4,
                label="NetAdapt path")
    if final is not None:
        ax.scatter([final["latency_ms"]], [final["val_top1"]], marker="*", s=160,
                   color="tab:green", zorder=3, label="final network (predicted)")
        backend = final.get("latency_compared_backend")
        if backend:  # measured here, on the device the latency model describes
            ax.scatter([final["latency_measured_ms"][backend]], [final["val_top1"]],
                       marker="*", s=160, facecolors="none", edgecolors="tab:green",
                       zorder=3, label=f"final network (measured, {backend})")
    for ref in refs:  # predicted latency; accuracy only where trained on the same budget
        if not isinstance(ref["latency_ms"], float) or ref["latency_ms"] != ref["latency_ms"]:
            continue
        acc = ref["test top-1"]
        if isinstance(acc, float):
            ax.scatter([ref["latency_ms"]], [acc], marker="s", s=40,
                       label=f"{ref['network']} (test top-1)")
        else:
            ax.axvline(ref["latency_ms"], color="tab:purple", ls=":", lw=1,
                       label=f"{ref['network']} (latency; not trained)")
    if target_ms is not None:
        ax.axvline(target_ms, color="grey", ls="--", lw=1, label=f"target {target_ms:.3g} ms")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("validation top-1")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, run.pareto_png)
    return True
