"""What a table model does about a signature the table lacks: the three policies.

- `error`: a `UserError` naming the missing signature and the nearest rows present;
- `interpolate`: linear between rows that agree on everything but channel counts;
- `measure`: time the missing operators now on this machine and append them.
"""

from __future__ import annotations

import platform
from itertools import combinations
from pathlib import Path
from typing import Sequence

import numpy as np

from latency import runtime
from latency.measure import DEVICES, Protocol, timing_lock
from latency.rows import time_rows
from latency.signature import Signature
from latency.table import LatencyTable, Row, write_template
from search_spaces.counting import activation_elements
from search_spaces.infra.errors import UserError

POLICIES = ("error", "interpolate", "measure")
CHANNELS = ("in_ch", "exp_ch", "out_ch", "se_ch")


def missing_error(table: LatencyTable, sig: Signature) -> UserError:
    near = "; ".join(f"line {r.line}: {r.sig.describe()}" if r.line else r.sig.describe()
                     for r in table.nearest(sig, 3))
    return UserError(f"no row for {sig.describe()} (nearest rows present: {near or 'none'}; "
                     f"policy 'interpolate' or 'measure' fills such gaps)", table.source)


def unfillable(table: LatencyTable, sigs: Sequence[Signature], policy: str
               ) -> list[Signature]:
    """The signatures of `sigs` that `table` can neither look up nor fill under
    `policy`: all missing ones under `error`; under `interpolate`, those with no row of
    their shape; under `measure`, all missing ones unless the table was timed here."""
    missing = [s for s in dict.fromkeys(sigs) if s not in table]
    if policy == "interpolate":
        return [s for s in missing if interpolate(table, s) is None]
    if policy == "measure":
        try:
            require_this_machine(table, "policy 'measure'")
        except UserError:
            return missing
        return []
    return missing


def write_missing(table: LatencyTable, sigs: Sequence[Signature], path: Path) -> None:
    """`sigs` as rows to fill in (the table's format, empty `latency_ms`), at `path`."""
    write_template(path, table.meta, sigs,
                   "Operators the experiment needs that the table cannot price: time each on\n"
                   "the device (batch 1), fill latency_ms, and append the rows to the table.")


# ------------------------------------------------------------------ interpolate

def _work(sig: Signature) -> float:
    # MACs are linear in each channel count with the others fixed, so "linear in
    # MACs" between two rows differing in one width is linear in that width, and it
    # also handles widths that move together (a residual group: in and out; an
    # expansion with its SE). Pooling has no MACs: it scales with its input.
    return float(sig.macs() or sig.in_ch * sig.input_hw ** 2)


def interpolate(table: LatencyTable, sig: Signature) -> float | None:
    """Latency of `sig` from rows of the same shape, or None if there are none.

    Between a row with all channel counts <= the target and one with all >= (the
    closest such pair), linear in MACs. With no bracketing pair (narrower or wider
    than the rows in some width), a fit over all rows of the shape (`family_fit`):
    extrapolating along two neighbouring rows went wrong by up to 10x at 224x224.
    """
    rows = table.same_shape(sig)
    if not rows:
        return None
    target = _work(sig)
    below = [r for r in rows if all(getattr(r.sig, c) <= getattr(sig, c) for c in CHANNELS)]
    above = [r for r in rows if all(getattr(r.sig, c) >= getattr(sig, c) for c in CHANNELS)]
    if below and above:
        lo = max(below, key=lambda r: (_work(r.sig), -r.latency_ms))
        hi = min(above, key=lambda r: (_work(r.sig), r.latency_ms))
        return _line(lo, hi, target)
    value = family_fit(rows, sig)
    if value is not None:
        return value
    near = min(rows, key=lambda r: abs(_work(r.sig) - target))
    return near.latency_ms * target / _work(near.sig)


def _features(sig: Signature) -> np.ndarray:
    """A call's fixed cost, its MACs (millions), and the activation elements it reads
    and writes (1e5s): narrow layers are memory- and overhead-bound, wide ones compute."""
    hw, out = sig.input_hw, -(-sig.input_hw // sig.stride)
    if sig.is_layer:
        memory = activation_elements(sig.layer(), hw)
    else:
        memory = sig.in_ch * hw * hw + sig.out_ch * out * out
    return np.array([1.0, sig.macs() / 1e6, memory / 1e5])


def family_fit(rows: Sequence[Row], sig: Signature) -> float | None:
    """`a + b * MACs + c * memory` with a, b, c >= 0, least squares in relative error
    over `rows` (one shape), evaluated at `sig`; None with fewer than 3 distinct rows.

    Non-negative least squares by trying every subset of the three terms: a negative
    coefficient would let a narrow extrapolation fall to zero or below."""
    x = np.array([_features(r.sig) for r in rows])
    y = np.array([r.latency_ms for r in rows])
    if len({tuple(f) for f in x}) < 3 or (y <= 0).any():
        return None
    xw, yw = x / y[:, None], np.ones_like(y)  # relative error: divide each row by its y
    best: tuple[float, np.ndarray] | None = None
    for k in (1, 2, 3):
        for subset in combinations(range(3), k):
            cols = list(subset)
            coef, *_ = np.linalg.lstsq(xw[:, cols], yw, rcond=None)
            if (coef < 0).any():
                continue
            full = np.zeros(3)
            full[cols] = coef
            residual = float(np.sum((xw @ full - yw) ** 2))
            if best is None or residual < best[0]:
                best = (residual, full)
    if best is None:
        return None
    value = float(_features(sig) @ best[1])
    return value if value > 0 else None


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


def other_machine(table: LatencyTable) -> tuple[str, str, str] | None:
    """How `table`'s machine differs from this one, `(key, the table's, here)`, or None
    when it was built here (its `host` and `cpu` metadata)."""
    for key, value in machine_id().items():
        if table.meta.get(key) != value:
            return key, table.meta.get(key, ""), value
    return None


def require_this_machine(table: LatencyTable, what: str) -> None:
    """A UserError unless `table` was built on this machine."""
    differs = other_machine(table)
    if differs:
        key, theirs, here = differs
        raise UserError(f"{what} needs the machine the table was built on "
                        f"(table {key}: '{theirs}', here: '{here}')", table.source)


def table_protocol(table: LatencyTable) -> Protocol:
    """The protocol a table was built with, from its metadata (defaults otherwise)."""
    m = table.meta
    base = Protocol()
    device = m.get("device", "")
    return Protocol(backend=m.get("backend") or base.backend,
                    device=device if device in DEVICES else base.device,
                    dtype=m.get("dtype") or base.dtype,
                    threads=table.meta_int("threads") or base.threads,
                    warmup=table.meta_int("warmup") or base.warmup,
                    repeats=table.meta_int("repeats") or base.repeats,
                    percentile=float(m.get("percentile") or base.percentile),
                    clock=m.get("clock") or base.clock)


def form_differs(table: LatencyTable, protocol: Protocol) -> tuple[str, str, str] | None:
    """How the deployed form `table` was timed in differs from what `protocol` would
    time here now, `(key, the table's, here)`: the runtime's version, exporter, opset,
    dtype, optimisation level or execution provider (`latency.runtime.FORM_KEYS`);
    None when they agree, and for backends without a form (torch)."""
    if protocol.backend != "onnxruntime":
        return None
    here = runtime.runtime_meta(protocol.dtype)
    for key in runtime.FORM_KEYS:
        theirs = table.meta.get(key, "")
        if key == "dtype" and not theirs:
            theirs = "fp32"  # tables from before int8 were all fp32
        if theirs != here[key]:
            return key, theirs, here[key]
    return None


def require_form(table: LatencyTable, protocol: Protocol, what: str) -> None:
    """A UserError when `table` was timed in another deployed form than `protocol`'s."""
    differs = form_differs(table, protocol)
    if differs:
        key, theirs, here = differs
        raise UserError(f"{what}: the table was timed with {key} '{theirs}', here it is "
                        f"'{here}'; rebuild it (or build one per form)", table.source)


def measure_missing(table: LatencyTable, missing: Sequence[Signature],
                    context: Sequence[Signature], se_gate: str) -> None:
    """Time `missing` on this machine, interleaved with `context` (the rest of the
    network, so caches are in the state they have inside it), and append the rows."""
    require_this_machine(table, "policy 'measure'")
    protocol = table_protocol(table)
    protocol.check()
    require_form(table, protocol, "policy 'measure'")
    with timing_lock():
        # Other processes (a run's Ray trials, a second run) time into the same file; a
        # row one of them added since this table was loaded is taken from the file, not
        # timed and appended again (a duplicate row makes the file unreadable).
        _take_rows_added_since(table, missing)
        todo = [s for s in dict.fromkeys(missing) if s not in table]
        if not todo:
            return
        others = [s for s in dict.fromkeys(context) if s not in set(todo)]
        table.append(time_rows(todo + others, protocol, se_gate)[:len(todo)])


def _take_rows_added_since(table: LatencyTable, wanted: Sequence[Signature]) -> None:
    """Add to `table` the rows of `wanted` that its file has and it has not."""
    if table.path is None or not Path(table.path).exists() or all(s in table for s in wanted):
        return
    on_disk = LatencyTable.load(table.path).rows
    for sig in dict.fromkeys(wanted):
        if sig not in table and sig in on_disk:
            table.add(on_disk[sig])
