"""What a table model does about a signature the table lacks: the three policies.

- `error`: a `UserError` naming the missing signature and the nearest rows present;
- `interpolate`: linear between rows that agree on everything but channel counts;
- `measure`: time the missing operators now on this machine and append them.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Sequence

from latency.measure import DEVICES, Protocol, prepare, time_interleaved
from latency.signature import Signature, build_op
from latency.table import LatencyTable, Row
from search_spaces.errors import UserError

POLICIES = ("error", "interpolate", "measure")
CHANNELS = ("in_ch", "exp_ch", "out_ch", "se_ch")


def missing_error(table: LatencyTable, sig: Signature) -> UserError:
    near = "; ".join(f"line {r.line}: {r.sig.describe()}" if r.line else r.sig.describe()
                     for r in table.nearest(sig, 3))
    return UserError(f"no row for {sig.describe()} (nearest rows present: {near or 'none'}; "
                     f"policy 'interpolate' or 'measure' fills such gaps)", table.source)


# ------------------------------------------------------------------ interpolate

def _same_shape(a: Signature, b: Signature) -> bool:
    return (a.op, a.input_hw, a.kernel, a.stride, a.act, a.skip,
            a.exp_ch > 0, a.se_ch > 0) == (b.op, b.input_hw, b.kernel, b.stride, b.act, b.skip,
                                          b.exp_ch > 0, b.se_ch > 0)


def _work(sig: Signature) -> float:
    # MACs are linear in each channel count with the others fixed, so "linear in
    # MACs" between two rows differing in one width is linear in that width, and it
    # also handles widths that move together (a residual group: in and out; an
    # expansion with its SE). Pooling has no MACs: it scales with its input.
    return float(sig.macs() or sig.in_ch * sig.input_hw ** 2)


def interpolate(table: LatencyTable, sig: Signature) -> float | None:
    """Latency of `sig` from rows of the same shape, or None if there are none.

    Between a row with all channel counts <= the target and one with all >= (the
    closest such pair), linear in MACs; with no bracketing pair, extrapolate along
    the two closest rows (proportionally from a single row).
    """
    rows = [r for r in table.rows.values() if _same_shape(r.sig, sig)]
    if not rows:
        return None
    target = _work(sig)
    below = [r for r in rows if all(getattr(r.sig, c) <= getattr(sig, c) for c in CHANNELS)]
    above = [r for r in rows if all(getattr(r.sig, c) >= getattr(sig, c) for c in CHANNELS)]
    if below and above:
        lo = max(below, key=lambda r: (_work(r.sig), -r.latency_ms))
        hi = min(above, key=lambda r: (_work(r.sig), r.latency_ms))
        return _line(lo, hi, target)
    pool = below or above or rows
    pool = sorted(pool, key=lambda r: abs(_work(r.sig) - target))
    distinct = [pool[0]] + [r for r in pool[1:] if _work(r.sig) != _work(pool[0].sig)][:1]
    if len(distinct) == 2:
        value = _line(distinct[0], distinct[1], target)
        if value > 0:
            return value
    near = pool[0]
    return near.latency_ms * target / _work(near.sig)


def _line(a: Row, b: Row, x: float) -> float:
    xa, xb = _work(a.sig), _work(b.sig)
    if xa == xb:
        return (a.latency_ms + b.latency_ms) / 2
    return a.latency_ms + (b.latency_ms - a.latency_ms) * (x - xa) / (xb - xa)


# ------------------------------------------------------------------ measure

def machine_id() -> dict[str, str]:
    """What identifies the machine a table was built on (written into its metadata)."""
    return {"host": platform.node(), "cpu": cpu_model()}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def require_this_machine(table: LatencyTable, what: str) -> None:
    """A UserError unless `table` was built on this machine (its `host` and `cpu`)."""
    for key, value in machine_id().items():
        if table.meta.get(key) != value:
            raise UserError(f"{what} needs the machine the table was built on "
                            f"(table {key}: '{table.meta.get(key, '')}', here: '{value}')",
                            table.source)


def table_protocol(table: LatencyTable) -> Protocol:
    """The protocol a table was built with, from its metadata (defaults otherwise)."""
    m = table.meta
    base = Protocol()
    device = m.get("device", "")
    return Protocol(backend=m.get("backend") or base.backend,
                    device=device if device in DEVICES else base.device,
                    threads=table.meta_int("threads") or base.threads,
                    warmup=table.meta_int("warmup") or base.warmup,
                    repeats=table.meta_int("repeats") or base.repeats,
                    percentile=float(m.get("percentile") or base.percentile),
                    clock=m.get("clock") or base.clock)


def measure_missing(table: LatencyTable, missing: Sequence[Signature],
                    context: Sequence[Signature], se_gate: str) -> None:
    """Time `missing` on this machine, interleaved with `context` (the rest of the
    network, so caches are in the state they have inside it), and append the rows."""
    require_this_machine(table, "policy 'measure'")
    protocol = table_protocol(table)
    protocol.check()
    todo = list(dict.fromkeys(missing))
    others = [s for s in dict.fromkeys(context) if s not in set(todo)]
    group = todo + others
    runners = [prepare(build_op(s, se_gate), s.input_shape(), protocol) for s in group]
    timings = time_interleaved(runners, protocol)[:len(todo)]
    table.append(Row(s, t.ms, t.std_ms, t.count) for s, t in zip(todo, timings))
