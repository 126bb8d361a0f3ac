"""The fidelity check: how far a table's predictions can be trusted on this machine.

Samples networks (half from the space, half NetAdapt-style shrunk versions of them,
so interpolated and narrow rows are exercised), measures each end to end twice with
the table's own protocol, and compares with the table's prediction, raw (the sum of
rows) and calibrated (the table's calibration, fitted at build time on other
networks, which are excluded here).
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import Any, Callable

import numpy as np
import pandas as pd

from latency.drift import TOLERANCE, level_factor, measure_drift
from latency.measure import measure_archs
from latency.missing import require_form, table_protocol
from latency.model import TableModel
from latency.profiler import Coverage
from latency.table import LatencyTable
from search_spaces.arch import Arch
from search_spaces.counting import count
from search_spaces.infra.errors import UserError


BAND = 0.10 + 1e-9  # +-10%, with room for floating-point rounding at the edge
NARROW = 0.05 + 1e-9  # +-5%


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation: Pearson correlation of average ranks (ties shared)."""
    ra = pd.Series(a).rank(method="average").to_numpy()
    rb = pd.Series(b).rank(method="average").to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def scores(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """MAPE and share within +-10% (fractions), Spearman, of predictions vs measurements."""
    rel = np.abs(predicted - measured) / measured
    return {"mape": float(rel.mean()), "within_10pct": float(np.mean(rel <= BAND)),
            "within_5pct": float(np.mean(rel <= NARROW)),
            "spearman": spearman(predicted, measured)}


def draw(coverage: Coverage, n: int, seed: int, channel_step: int,
         exclude: set[str], near: Callable[[Arch], float] | None = None
         ) -> list[tuple[Arch, str]]:
    """`n` distinct networks (with how each was made), none with a hash in `exclude`;
    with `near` (a network's distance from a target), a third of them are the closest of
    ten times as many (`near`), the rest sampled and shrunk."""
    rng = random.Random(seed)
    out: list[tuple[Arch, str]] = []
    seen = set(exclude)
    if near is not None:
        pool = [a for a in coverage.pool(10 * n, rng, channel_step) if a.hash() not in seen]
        for arch in sorted(pool, key=near)[:n // 3]:
            seen.add(arch.hash())
            out.append((arch, "near"))
    for _ in range(20):
        for arch, kind in coverage.sample(n, rng, channel_step):
            if arch.hash() not in seen:
                seen.add(arch.hash())
                out.append((arch, kind))
        if len(out) >= n:
            return out[:n]
    raise UserError(f"could only draw {len(out)} distinct networks for the check, "
                    f"{n} were asked for")


def run_check(table: LatencyTable, coverage: Coverage, samples: int = 50,
              policy: str = "interpolate", seed: int = 0, channel_step: int = 8,
              repeats: int | None = None, worst: int = 5,
              near_ms: float | None = None) -> dict[str, Any]:
    """Score `table` on `samples` networks of `coverage` (a third near `near_ms` under
    the table, when given); a JSON-ready dict. Beside the table: the FLOPs model fitted
    on the table's calibration networks, and the drift probe timed again."""
    if samples < 2:
        raise UserError(f"--samples must be >= 2, got {samples}")
    for key in ("backend", "device", "threads"):
        if not table.meta.get(key):
            # The check times networks here; a table from another device (a filled
            # export-ops template) says nothing about this machine.
            raise UserError(f"has no '{key}' metadata: the check measures on this machine "
                            f"with the table's backend, device and threads, so it only "
                            f"applies to tables built here", str(table.path))
    protocol = table_protocol(table)
    if repeats:
        protocol = replace(protocol, repeats=repeats)
    protocol.check()
    require_form(table, protocol, "the check")
    drift = measure_drift(table)
    cal = table.calibration
    model = TableModel(table, policy, calibrated=False)
    calibrated = TableModel(table, policy)
    near = None if near_ms is None else \
        (lambda a: abs(float(np.log(calibrated.predict(a).ms / near_ms))))
    nets = draw(coverage, samples, seed, channel_step, set(cal.nets) if cal else set(), near)
    archs = [a for a, _ in nets]
    estimates = [model.predict(a) for a in archs]
    raw = np.array([e.raw_ms for e in estimates])
    started = time.monotonic()
    first = np.array([t.ms for t in measure_archs(archs, protocol)])
    second = np.array([t.ms for t in measure_archs(archs, protocol)])
    seconds = time.monotonic() - started
    measured = (first + second) / 2
    noise = float(np.mean(np.abs(first - second) / np.minimum(first, second) <= BAND))
    raw_scores = scores(raw, measured)
    cal_scores = scores(np.array([cal.apply(r) for r in raw]), measured) if cal else None
    primary = cal_scores or raw_scores
    # Diagnostic, not a prediction: one scale fitted on these very networks. What it
    # still gets wrong is the table's shape (which nets are relatively slow); what it
    # fixes is the level, which on a shared machine moves between build and check.
    level = float(np.median(measured / raw))
    same_level = scores(raw * level, measured)
    predicted = np.array([cal.apply(r) for r in raw]) if cal else raw
    rel = (predicted - measured) / measured
    # What a run prices with under `latency.drift: rescale`: the calibrated prediction
    # times the probe's ratio (a probe within tolerance leaves it as it is).
    rescaled = None
    if drift is not None:
        factor = level_factor(drift, "rescale", TOLERANCE, table.source)
        rescaled = {**scores(predicted * factor, measured), "factor": factor}
    flops = None
    if cal is not None and cal.flops is not None:
        mmacs = np.array([count(a)[1] / 1e6 for a in archs])
        flops = {**scores(cal.flops[0] * mmacs + cal.flops[1], measured),
                 "ms_per_mmac": cal.flops[0], "offset_ms": cal.flops[1]}
    order = np.argsort(-np.abs(rel))[:worst]
    return {
        "samples": len(archs),
        "table": table.source, "coverage": coverage.label,
        "resolution": archs[0].resolution, "backend": protocol.backend,
        "device": protocol.device, "threads": protocol.threads,
        "clock": protocol.effective_clock, "policy": policy,
        "within_10pct": primary["within_10pct"], "mape": primary["mape"],
        "spearman": primary["spearman"], "noise_within_10pct": noise,
        "calibrated_used": cal is not None,
        "raw": raw_scores, "calibrated": cal_scores,
        "within_5pct": primary["within_5pct"],
        "level_fitted": {**same_level, "scale": level},
        "flops": flops,
        "rescaled": rescaled,
        "drift": None if drift is None else
        {"ratio": drift.ratio, "built_ms": drift.built_ms, "now_ms": drift.now_ms},
        "near_ms": near_ms,
        "kinds": {k: sum(kind == k for _, kind in nets) for k in ("sampled", "shrunk", "near")},
        "calibration": None if cal is None else
        {"formula": cal.formula(), "scale": cal.scale, "offset_ms": cal.offset_ms,
         "networks": cal.networks,
         "fit": cal.fit, "loo": dict(cal.loo),
         "near_ms": table.meta.get("calibration_near_ms") or None},
        "interpolated_nets": int(sum(e.interpolated > 0 for e in estimates)),
        "measured_ms_range": [float(measured.min()), float(measured.max())],
        "measure_seconds": round(seconds, 1),
        "worst": [{"hash": archs[i].hash(), "kind": nets[i][1],
                   "mmacs": round(count(archs[i])[1] / 1e6, 2),
                   "predicted_ms": round(float(predicted[i]), 4),
                   "measured_ms": round(float(measured[i]), 4),
                   "measured_twice_ms": [round(float(first[i]), 4), round(float(second[i]), 4)],
                   "error": round(float(rel[i]), 4),
                   "interpolated_rows": estimates[i].interpolated} for i in order],
    }


def format_report(result: dict[str, Any]) -> str:
    """The human-readable form of `run_check`'s result."""
    lines = [f"table {result['table']}  ({result['coverage']}, {result['resolution']}px, "
             f"{result['backend']}/{result['device']}, {result['threads']} thread(s), "
             f"{result['clock']} clock, "
             f"policy {result['policy']})",
             f"{result['samples']} networks, {result['interpolated_nets']} with interpolated "
             f"rows; measured {result['measured_ms_range'][0]:.3f}-"
             f"{result['measured_ms_range'][1]:.3f} ms in {result['measure_seconds']} s",
             "",
             f"{'':<12} {'within 10%':>10} {'within 5%':>10} {'MAPE':>8} {'Spearman':>9}"]
    for name in ("raw", "calibrated", "rescaled", "flops"):
        s = result[name]
        if s is None:
            if name in ("raw", "calibrated"):
                lines.append(f"{name:<12} {'(the table has no calibration)':>29}")
            continue
        lines.append(f"{name:<12} {100 * s['within_10pct']:>9.1f}% {100 * s['within_5pct']:>9.1f}% "
                     f"{100 * s['mape']:>7.2f}% {s['spearman']:>9.4f}")
    lv = result["level_fitted"]
    lines.append(f"{'(level fit)':<12} {100 * lv['within_10pct']:>9.1f}% "
                 f"{100 * lv['within_5pct']:>9.1f}% {100 * lv['mape']:>7.2f}%"
                 f"           diagnostic: raw x {lv['scale']:.3f}, the median of measured/raw "
                 f"over these networks")
    lines.append(f"{'noise floor':<12} {100 * result['noise_within_10pct']:>9.1f}%   "
                 f"(two end-to-end measurements of a net agree within 10%)")
    if result["calibration"]:
        c = result["calibration"]
        near = f" near {float(c['near_ms']):.3f} ms" if c.get("near_ms") else ""
        lines.append(f"calibration: {c['formula']} ({c['fit']}, fitted on {c['networks']} "
                     f"other networks{near})")
    if result["flops"]:
        f = result["flops"]
        lines.append(f"flops: the baseline, ms = {f['ms_per_mmac']:.5f} * MMACs + "
                     f"{f['offset_ms']:.4f}, fitted on the same calibration networks")
    if result["drift"]:
        d = result["drift"]
        lines.append(f"drift: the probe runs {d['ratio'] - 1:+.1%} against the table's build "
                     f"({d['now_ms']:.4f} ms now, {d['built_ms']:.4f} ms then); rescaled: "
                     f"calibrated x {result['rescaled']['factor']:.3f}, what a run prices with "
                     f"(latency.drift: rescale, tolerance {TOLERANCE:g})")
    lines += ["", "worst cases:"]
    for w in result["worst"]:
        lines.append(f"  {w['hash']} {w['kind']:<8} {w['mmacs']:>8.2f} MMACs  predicted "
                     f"{w['predicted_ms']:.3f} ms, measured {w['measured_ms']:.3f} ms "
                     f"({100 * w['error']:+.1f}%), {w['interpolated_rows']} interpolated rows")
    return "\n".join(lines)
