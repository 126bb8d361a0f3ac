"""Int8 against fp32 under ONNX Runtime, network by network (issue 28): is the static QDQ
int8 model faster here, and where is it slower?

    python benchmarks/int8_ratio.py --samples 30 runs/cifar10_int8/*/final/arch.json

Networks: `--samples` drawn from the space as `nas latency check` draws them (sampled
and NetAdapt-shrunk), MobileNetV3-Small and -Large with the space's input adaptation and
their width multipliers, and any Arch JSON given. Each network's fp32 and int8 forms are
timed side by side in one interleaved group (the latency protocol: 1 thread, batch 1,
steady state, p10), so a slow spell of the machine hits both alike; each group is timed
twice and the two timings averaged.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np

from common import say
from latency.check import draw, spearman
from latency.measure import STEADY, Protocol, arch_runner, time_interleaved
from latency.profiler import resolve_coverage
from search_spaces.arch import Arch, load_arch
from search_spaces.counting import count
from search_spaces.reference import BASELINES, load_reference
from search_spaces.transforms import with_input, with_width_multiplier

# Networks per interleaved group: fp32 and int8 of each, so 16 runners, as the check's
# groups of networks.
GROUP = 8


def networks(args: argparse.Namespace) -> list[tuple[Arch, str]]:
    small = args.resolution <= 64
    stem, classes = (1, 10) if small else (2, 1000)
    coverage = resolve_coverage(args.space, args.resolution, stem, classes,
                                skeleton=args.skeleton)
    out = [(a.replace(name=f"{kind} {i}"), kind)
           for i, (a, kind) in enumerate(draw(coverage, args.samples, args.seed, 8, set()))]
    for name in BASELINES:
        ref = with_input(load_reference(name), args.resolution, classes, stem)
        for m in (0.5, 1.0):
            out.append((with_width_multiplier(ref, m).replace(name=f"{name} x{m:g}"),
                        "reference"))
    for path in args.arch:
        final = Path(path).resolve().parent  # <experiment>/<run>/final/arch.json
        out.append((load_arch(path).replace(name=f"{final.parent.parent.name} {final.name}"),
                    "given"))
    return out


def time_pair(archs: list[Arch], threads: int, passes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """fp32 and int8 ms of each network, the two forms interleaved in one group, each
    group timed `passes` times (averaged)."""
    forms = {d: Protocol(backend="onnxruntime", dtype=d, threads=threads) for d in ("fp32", "int8")}
    fp32, int8 = [], []
    for start in range(0, len(archs), GROUP):
        chunk = archs[start:start + GROUP]
        say(f"networks {start + 1}-{start + len(chunk)} of {len(archs)}")
        runners = [arch_runner(a, forms[d], seed=i)
                   for i, a in enumerate(chunk) for d in ("fp32", "int8")]
        ms = np.mean([[t.ms for t in time_interleaved(runners, forms["fp32"], settle=STEADY)]
                      for _ in range(passes)], axis=0)
        fp32 += list(ms[0::2])
        int8 += list(ms[1::2])
    return np.array(fp32), np.array(int8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("arch", nargs="*", help="Arch JSON files to time as well (a run's final)")
    p.add_argument("--space", default="mobilenetv3")
    p.add_argument("--skeleton", default="mobilenetv3_small")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    nets = networks(args)
    archs = [a for a, _ in nets]
    load = os.getloadavg()[0]
    say(f"{len(archs)} networks, fp32 and int8 (quantising each takes about a second)")
    fp32, int8 = time_pair(archs, args.threads)
    ratio = int8 / fp32
    mmacs = np.array([count(a)[1] / 1e6 for a in archs])
    print("| network | kind | MMACs | fp32 ms | int8 ms | int8 / fp32 |")
    print("|---|---|---:|---:|---:|---:|")
    for (a, kind), m, f, q, r in zip(nets, mmacs, fp32, int8, ratio):
        flag = " (slower)" if r > 1 else ""
        print(f"| {a.name} | {kind} | {m:.1f} | {f:.4f} | {q:.4f} | {r:.2f}{flag} |")
    q10, q50, q90 = np.percentile(ratio, [10, 50, 90])
    print(f"\n{len(archs)} networks at {args.resolution}x{args.resolution}, "
          f"{args.threads} thread(s), on {platform.processor() or platform.machine()} "
          f"(load {load:.2f} -> {os.getloadavg()[0]:.2f}): int8 / fp32 median {q50:.2f} "
          f"(p10 {q10:.2f}, p90 {q90:.2f}); int8 slower on {int((ratio > 1).sum())}; "
          f"Spearman(ratio, MMACs) {spearman(ratio, mmacs):.2f}")


if __name__ == "__main__":
    main()
