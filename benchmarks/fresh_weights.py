"""Does latency depend on the trained weights' values? (`latency_aware.py --from-kept`
times kept architectures with fresh weights.)

Each final folder given (arch.json, weights.pt, model.onnx) is timed with its trained
weights and with fresh ones (a new ONNX export), alternating, `--rounds` times, under the
measurement protocol (1 thread, batch 1, median of 30 runs); prints the medians over
rounds and their ratio. Run it alone:

    python benchmarks/fresh_weights.py runs/cifar10_small/*/final runs/quickstart/*/final
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from latency.deployed import time_exported
from latency.measure import Protocol
from nas.stages.export import export, load_model
from search_spaces.arch import load_arch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("finals", type=Path, nargs="+", help="folders with arch.json, "
                    "weights.pt and model.onnx (a run's final/)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    protocol = Protocol(threads=1, repeats=30, percentile=10.0)
    print("| network | backend | trained ms | fresh ms | fresh / trained |")
    print("|---|---|---:|---:|---:|")
    for final in args.finals:
        arch = load_arch(final / "arch.json")
        shape = (1, arch.in_ch, arch.resolution, arch.resolution)
        with tempfile.TemporaryDirectory() as scratch:
            fresh_onnx = Path(scratch) / "model.onnx"
            export(arch, None, "onnx", fresh_onnx)
            nets = {"trained": (load_model(arch, final / "weights.pt"), final / "model.onnx"),
                    "fresh": (load_model(arch, None), fresh_onnx)}
            ms: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.rounds):
                for which, (model, onnx) in nets.items():
                    for backend, t in time_exported(model, shape, onnx, protocol).items():
                        ms.setdefault((which, backend), []).append(t.median_ms)
        for backend in ("torch", "onnxruntime"):
            trained = statistics.median(ms["trained", backend])
            fresh = statistics.median(ms["fresh", backend])
            print(f"| {final} | {backend} | {trained:.4f} | {fresh:.4f} | "
                  f"{fresh / trained:.3f} |")


if __name__ == "__main__":
    main()
