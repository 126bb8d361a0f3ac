"""Latency table fidelity on this machine (issue 3): build a table per space and
resolution, then `nas latency check` it, and time `predict`.

    python benchmarks/latency_fidelity.py --spaces mnasnet mobilenetv3 --resolutions 32 224
    python benchmarks/latency_fidelity.py --backend onnxruntime --dtype int8 --resolutions 32

Tables land in --out-dir (default runs/latency_bench/, git-ignored); an existing table
is resumed or reused, its build time read from the sidecar `<table>.build.json`.
At resolution <= 64 the spaces use a stride-1 stem and 10 classes (CIFAR-size), at
larger ones the papers' stride-2 stem and 1000 classes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from latency.check import draw, run_check
from latency.measure import Protocol
from latency.missing import cpu_model
from latency.model import TableModel
from latency.profiler import build, resolve_coverage
from latency.table import LatencyTable


def one(space: str, resolution: int, args: argparse.Namespace) -> dict:
    small = resolution <= 64
    coverage = resolve_coverage(space, resolution, 1 if small else 2, 10 if small else 1000)
    form = "" if args.backend == "torch" else f"_ort_{args.dtype}"
    out = Path(args.out_dir) / f"{space}_{resolution}{form}.csv"
    sidecar = out.with_name(out.name + ".build.json")
    protocol = Protocol(backend=args.backend, dtype=args.dtype, threads=args.threads,
                        repeats=args.repeats, warmup=args.warmup)
    info = json.loads(sidecar.read_text()) if sidecar.exists() else {"seconds": 0.0}
    load_before = os.getloadavg()[0]
    start = time.monotonic()
    build(coverage, out, protocol, calibrate=args.calibrate, stream=sys.stderr)
    info["seconds"] += time.monotonic() - start
    sidecar.write_text(json.dumps(info))
    table = LatencyTable.load(out)
    print(f"[bench] {space}@{resolution}: table {len(table)} rows in {info['seconds']:.0f} s; "
          f"checking {args.samples} networks", file=sys.stderr, flush=True)
    result = run_check(table, coverage, args.samples, "interpolate", seed=args.seed)
    # predict time: a loaded table, networks already seen once (interpolations cached).
    archs = [a for a, _ in draw(coverage, args.samples, args.seed, 8, set())]
    model = TableModel(table, "interpolate")
    for a in archs:
        model.predict(a)
    n = 20
    t0 = time.perf_counter()
    for _ in range(n):
        for a in archs:
            model.predict(a)
    predict_us = (time.perf_counter() - t0) / (n * len(archs)) * 1e6
    result.update(space=space, rows=len(table), build_seconds=round(info["seconds"], 1),
                  predict_us=round(predict_us, 1),
                  loadavg_1min=[round(load_before, 2), round(os.getloadavg()[0], 2)])
    return result


def _pair(scores: dict | None, second: str | None) -> str:
    """`within10 / second` of a score block, `-` when the check had none."""
    if not scores:
        return "-"
    text = f"{100 * scores['within_10pct']:.0f}%"
    return f"{text} / {scores[second]:.3f}" if second else text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spaces", nargs="+", default=["mnasnet", "mobilenetv3"])
    p.add_argument("--resolutions", nargs="+", type=int, default=[32, 224])
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    p.add_argument("--dtype", choices=("fp32", "int8"), default="fp32")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=Protocol.repeats)
    p.add_argument("--warmup", type=int, default=Protocol.warmup)
    p.add_argument("--calibrate", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default="runs/latency_bench")
    p.add_argument("--json", action="store_true", help="also print one JSON object")
    args = p.parse_args()
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    results = []
    for resolution in args.resolutions:
        for space in args.spaces:
            results.append(one(space, resolution, args))
    print(f"machine: {platform.machine()} {cpu_model()}, {os.cpu_count()} cores; "
          f"{args.backend} backend ({args.dtype}), {args.threads} thread(s), batch 1, "
          f"{args.samples} networks per row")
    head = (f"{'space':<12} {'res':>4} {'rows':>5} {'build':>7} {'within10 raw/cal':>17} "
            f"{'MAPE raw/cal':>14} {'Spearman raw/cal':>17} {'level fit':>16} {'noise':>6} {'scale':>6} {'fit':>5} "
            f"{'flops w10/sp':>13} {'rescaled w10':>12} {'predict':>8} {'load':>10}")
    print(head)
    print("-" * len(head))
    for r in results:
        raw, cal = r["raw"], r["calibrated"] or r["raw"]
        scale = r["calibration"]["scale"] if r["calibration"] else 1.0
        fit = r["calibration"]["fit"] if r["calibration"] else "-"
        print(f"{r['space']:<12} {r['resolution']:>4} {r['rows']:>5} {r['build_seconds']:>6.0f}s "
              f"{100 * raw['within_10pct']:>7.0f}% /{100 * cal['within_10pct']:>4.0f}% "
              f"{100 * raw['mape']:>6.1f}% /{100 * cal['mape']:>4.1f}% "
              f"{raw['spearman']:>8.3f} /{cal['spearman']:>6.3f} "
              f"{100 * r['level_fitted']['within_10pct']:>4.0f}% x{r['level_fitted']['scale']:.3f} "
              f"{100 * r['noise_within_10pct']:>5.0f}% {scale:>6.3f} {fit:>5} "
              f"{_pair(r['flops'], 'spearman'):>13} {_pair(r['rescaled'], None):>12} "
              f"{r['predict_us']:>6.0f}us "
              f"{r['loadavg_1min'][0]:>4.1f}-{r['loadavg_1min'][1]:<4.1f}")
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
