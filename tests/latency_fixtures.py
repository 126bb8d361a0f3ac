"""Small networks and tables shared by the latency tests (kept tiny so tests are fast)."""

from __future__ import annotations

from pathlib import Path

from latency.signature import signatures
from latency.table import LatencyTable, Row
from search_spaces.arch import Arch, BatchNorm, Head, Layer, SERule, Stem

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_TABLE = REPO / "latency" / "examples" / "example_table.csv"
EXAMPLE_ARCH = REPO / "latency" / "examples" / "example_arch.json"


def tiny_arch(resolution: int = 16) -> Arch:
    """Stem, an expanding mbconv with SE, a residual mbconv, a dsconv, a v3 head."""
    return Arch(
        resolution=resolution, num_classes=10, name="tiny",
        bn=BatchNorm(1e-3, 0.01), se=SERule(gate="hsigmoid", ratio=0.25, of="mid", divisor=8),
        stem=Stem(8, 3, 1, "hswish"),
        layers=(Layer("mbconv", 8, 16, 3, 2, "relu", 8, "none", 32, True),
                Layer("mbconv", 16, 16, 5, 1, "hswish", 0, "identity", 48, True),
                Layer("dsconv", 16, 24, 3, 2, "hswish", 0, "none")),
        head=Head("v3", 32, "hswish", 48, 0.2))


def fake_table(arch: Arch, meta: dict[str, str] | None = None) -> LatencyTable:
    """A table covering `arch` with distinct made-up latencies (no timing)."""
    rows = [Row(s, 0.01 * (i + 1) + 0.001 * s.out_ch, 0.001, 10)
            for i, s in enumerate(dict.fromkeys(signatures(arch)))]
    return LatencyTable(meta or {"se_gate": arch.se.gate}, rows)
