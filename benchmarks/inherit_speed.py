"""NetAdapt weight inheritance: wall time of `inherit(old, state, new)` per proposal.

NetAdapt slices the current network's weights into every proposal of every iteration,
so this runs once per proposal. Two cases on MobileNetV3-Large at 32x32 (stride-1
stem, 10 classes): the uniform x0.5 width multiplier (every width narrowed), and one
expansion-cut proposal per expandable layer (distinct new networks, as one NetAdapt
iteration makes). Prints a table of medians; runs against whatever tree is on the
path (PYTHONPATH=... to compare commits).

    python benchmarks/inherit_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from latency.shrink import expandable, set_expansion
from netadapt.inherit import inherit
from search_spaces import build_model, load_reference, with_input, with_width_multiplier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    arch = with_input(load_reference("mobilenet_v3_large"), 32, 10, 1)
    state = build_model(arch).state_dict()
    half = with_width_multiplier(arch, 0.5)
    proposals = [set_expansion(arch, i, arch.layers[i].exp_ch - 8) for i in expandable(arch)]

    rows = []
    inherit(arch, state, half)  # warm-up (imports, allocator)
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        inherit(arch, state, half)
        times.append(time.perf_counter() - t)
    rows.append(("x0.5 width multiplier", 1, statistics.median(times)))
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        for new in proposals:
            inherit(arch, state, new)
        times.append((time.perf_counter() - t) / len(proposals))
    # The first pass meets every proposal for the first time; report it apart.
    rows.append(("expansion cuts, first pass", len(proposals), times[0]))
    rows.append(("expansion cuts, later passes", len(proposals), statistics.median(times[1:])
                 if len(times) > 1 else times[0]))
    print(f"{'case':<32} {'proposals':>9} {'ms per inherit':>15}")
    for name, n, sec in rows:
        print(f"{name:<32} {n:>9} {sec * 1000:>15.1f}")


if __name__ == "__main__":
    main()
