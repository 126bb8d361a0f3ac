"""The drift probe: how far this machine's level has moved since a table was built.

On a shared machine every network runs some percent faster or slower in one hour than
in another, alike (a torch table checked 3 minutes after its build: 26% of 50 networks
within +-10%, 90% once the level alone was refitted; BENCHMARKS.md). A table carries a
probe: one fixed network (`Coverage.probe`), its Arch in the metadata (`probe_arch`)
and its latency measured at build (`probe_ms`). Timing it again says, in one line, how
far the level has moved; `latency.drift` decides what a run does past
`latency.drift_tolerance`: `rescale` prices with the table times the probe's ratio,
`refuse` stops, `warn` only says so. Relative targets (`reward.target_ratio`) are
immune either way: target and prices move together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from latency.measure import Protocol, measure_archs
from latency.missing import other_machine, table_protocol
from latency.table import LatencyTable
from search_spaces.arch import Arch, arch_from_dict
from search_spaces.infra.errors import UserError

ACTIONS = ("rescale", "refuse", "warn")
TOLERANCE = 0.10


def measure_probe(arch: Arch, protocol: Protocol, passes: int = 5) -> float:
    """The probe's latency: the median of `passes` end-to-end measurements (on this
    guest one pass in ten or so runs 20-50% slow, for a few seconds)."""
    return float(np.median([measure_archs([arch], protocol)[0].ms for _ in range(passes)]))


def record_probe(table: LatencyTable, arch: Arch, ms: float) -> None:
    """Store `arch`, measured at `ms`, as `table`'s probe (the caller saves the table)."""
    table.meta["probe_ms"] = f"{ms:.6g}"
    table.meta["probe_arch"] = json.dumps(arch.to_dict(), separators=(",", ":"))


@dataclass(frozen=True)
class Drift:
    """The probe measured now against at build: `ratio = now / built`."""

    built_ms: float
    now_ms: float

    @property
    def ratio(self) -> float:
        return self.now_ms / self.built_ms

    def describe(self, name: str) -> str:
        return (f"{name}: this machine runs the table's probe {self.ratio - 1:+.1%} against "
                f"its build ({self.now_ms:.4f} ms now, {self.built_ms:.4f} ms then)")


def probe_arch(table: LatencyTable) -> Arch | None:
    """The table's probe network, or None when it has none (an older table, a phone's)."""
    text = table.meta.get("probe_arch")
    if not text or not table.meta.get("probe_ms"):
        return None
    try:
        return arch_from_dict(json.loads(text), table.source)
    except (ValueError, UserError) as err:
        raise UserError(f"probe_arch: not a network ({str(err)[:80]})", table.source) from None


def measure_drift(table: LatencyTable) -> Drift | None:
    """Time the table's probe here with the table's protocol; None where that says
    nothing (no probe, or a table of another machine)."""
    arch = probe_arch(table)
    if arch is None or other_machine(table) is not None:
        return None
    protocol = table_protocol(table)
    protocol.check()
    return Drift(float(table.meta["probe_ms"]), measure_probe(arch, protocol))


def level_factor(drift: Drift | None, action: str, tolerance: float, name: str) -> float:
    """The factor a run prices `name`'s table with, after the probe says `drift`: 1
    within `tolerance` (or with `warn`), the probe's ratio with `rescale`; `refuse`
    past it raises."""
    if drift is None or abs(drift.ratio - 1) <= tolerance or action == "warn":
        return 1.0
    if action == "refuse":
        raise UserError(f"{drift.describe(name)}, past latency.drift_tolerance "
                        f"{tolerance:g}: run `nas latency calibrate --table {name}` to "
                        f"re-anchor it, or set latency.drift: rescale")
    return drift.ratio
