"""The profiler: enumerate the operator signatures a space (or one network) can reach,
time them on this machine, and write a table, resumably.

A table covers either a search space at an input size, or one network (an ARCH.json)
plus its one-dimensional NetAdapt shrink grids.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
import random
import sys
import time
from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path
from typing import Callable, Sequence, TextIO

import numpy as np
import torch

from latency import runtime
from latency.drift import measure_probe, record_probe
from latency.fit import choose_form, fit_form, robust_line
from latency.measure import Protocol, Runner, measure_archs, prepare, steady_allocator, time_interleaved
from latency.missing import machine_id, require_this_machine, table_protocol
from latency.model import TableModel
from latency.rows import RowGroup, subtracts_boundary, time_network_boundary
from latency.shrink import random_shrink, shrink_variants
from latency.signature import Signature, build_op, signatures
from latency.table import Calibration, LatencyTable, format_header
from search_spaces.arch import Arch
from search_spaces.counting import count
from search_spaces.factorized import CONV_OPS, SPACE_NAMES, FactorizedSpace, make_space
from search_spaces.infra.errors import UserError
from search_spaces.infra.files import cut_torn_line
from search_spaces.reference import resolve_arch
from search_spaces.skeletons import PRESETS
from search_spaces.transforms import with_input

# Keys that must agree for a table file to be resumed (or reused) for a build.
# A resumed build must time with the same protocol, or rows would mix statistics
# (the repeat count may differ: each row records its own `count`).
IDENTITY_KEYS = ("space", "arch_hash", "skeleton", "ops", "resolution", "stem_stride",
                 "num_classes",
                 "channel_step", "backend", "device", "threads", "clock", "warmup",
                 "percentile", "allocator", *runtime.FORM_KEYS)


PROBE_SEED = 28  # the drift probe's sample, apart from calibration's and check's seeds


@dataclass(frozen=True)
class Coverage:
    """What a table is built for: a search space at an input size, or one network."""

    label: str
    space: FactorizedSpace | None = None
    arch: Arch | None = None
    # Signatures beyond the space's or the network's: what an experiment prices besides
    # them (the reference nets of its report, NetAdapt's start), for export-ops EXP.yaml.
    extra: tuple[Signature, ...] = ()

    @property
    def se_gate(self) -> str:
        return self.space.family.se.gate if self.space else self.arch.se.gate  # type: ignore[union-attr]

    def meta(self, channel_step: int) -> dict[str, str]:
        if self.space is not None:
            sp = self.space
            skeleton = sp.skeleton
            preset = next((k for k, v in _presets().items() if v == skeleton), "custom")
            meta = {"space": sp.name, "skeleton": preset}
            if sp.ops != CONV_OPS:  # tables of the default ops keep their old header
                meta["ops"] = ",".join(sp.ops)
            return {**meta, "resolution": str(sp.resolution),
                    "stem_stride": str(sp.stem_stride), "num_classes": str(sp.num_classes),
                    "se_gate": self.se_gate}
        assert self.arch is not None
        a = self.arch
        return {"space": self.label, "arch_hash": a.hash(), "resolution": str(a.resolution),
                "stem_stride": str(a.stem.stride), "num_classes": str(a.num_classes),
                "channel_step": str(channel_step), "se_gate": self.se_gate}

    def signatures(self, channel_step: int) -> list[Signature]:
        """Every reachable signature, in a deterministic order."""
        if self.space is not None:
            seen = dict.fromkeys(space_signatures(self.space))
        else:
            assert self.arch is not None
            seen = dict.fromkeys(signatures(self.arch))
            for variant in shrink_variants(self.arch, channel_step):
                seen.update(dict.fromkeys(signatures(variant)))
        seen.update(dict.fromkeys(self.extra))
        return list(seen)

    def probe(self, channel_step: int) -> Arch:
        """The fixed network a table's drift probe times (`latency.drift`): for a space a
        seeded sample of it, for one network that network."""
        return self.sample(1, random.Random(PROBE_SEED), channel_step)[0][0]

    def sample(self, n: int, rng: random.Random, channel_step: int) -> list[tuple[Arch, str]]:
        """`n` networks, each with how it was made: half `sampled` from the space (for
        one network: the network itself, once), half `shrunk` NetAdapt-style from them."""
        if self.space is not None:
            space = self.space
            base = [space.decode(space.sample(rng)) for _ in range((n + 1) // 2)]
        else:
            assert self.arch is not None
            base = [self.arch]
        shrunk = [random_shrink(base[i % len(base)], rng, channel_step, rng.randint(1, 4))
                  for i in range(n - len(base))]
        return ([(a, "sampled") for a in base] + [(a, "shrunk") for a in shrunk])[:n]

    def pool(self, n: int, rng: random.Random, channel_step: int) -> list[Arch]:
        """The distinct networks of `sample(n, ...)`, in order: candidates to pick the
        ones near a target from (a calibration's, a check's)."""
        return list({a.hash(): a for a, _ in self.sample(n, rng, channel_step)}.values())


def _presets() -> dict:
    return PRESETS


def resolve_coverage(spec: str, resolution: int | None = None, stem_stride: int | None = None,
                     num_classes: int | None = None, skeleton: str | None = None,
                     ops: Sequence[str] | None = None) -> Coverage:
    """`mnasnet` / `mobilenetv3` (a space), or an Arch JSON path / reference net name."""
    if spec in SPACE_NAMES:
        if resolution is None:
            raise UserError(f"--resolution is needed for the space '{spec}'")
        space = make_space(spec, skeleton, resolution, stem_stride or 2, num_classes or 1000,
                           ops)
        return Coverage(spec, space=space)
    if skeleton or ops:
        raise UserError("--skeleton and --ops apply to a search space, not to an ARCH.json")
    arch = with_input(resolve_arch(spec), resolution, num_classes, stem_stride)
    return Coverage(str(spec), arch=arch)


def space_signatures(space: FactorizedSpace) -> list[Signature]:
    """Every signature reachable in `space`, found block by block with its own decoder.

    A layer's signature depends only on its block's decisions and the width entering
    the block (the previous block's width decision); spatial sizes are fixed by the
    skeleton's strides. So for each block, vary its own decisions and the previous
    block's width over all their options (the others stay at any value) and decode:
    a few thousand decodes instead of the space's ~1e30 architectures. The deepest
    layer count covers every shallower one, so `layers` stays at its maximum.
    """
    names = {d.name: d for d in space.decisions}
    base = {d.name: d.options[0] for d in space.decisions}
    for name, d in names.items():
        if name.endswith("/layers"):
            base[name] = max(d.options)
    seen: dict[Signature, None] = {}
    for i in range(len(space.skeleton.blocks)):
        own = [d for d in space.decisions
               if d.name.startswith(f"block{i}/") and not d.name.endswith("/layers")]
        prev = names.get(f"block{i - 1}/width")
        varied = own + ([prev] if prev else [])
        for combo in product(*(d.options for d in varied)):
            values = dict(base)
            values.update((d.name, v) for d, v in zip(varied, combo))
            seen.update(dict.fromkeys(signatures(space.decode(values))))
    return list(seen)


# ------------------------------------------------------------------ building

class Progress:
    """`done/total rows, elapsed, ETA` on stderr: in place on a terminal, else a line
    every ~10 s."""

    def __init__(self, total: int, done: int, stream: TextIO | None = None) -> None:
        self.total, self.done, self.start_done = total, done, done
        self.stream = stream or sys.stderr
        self.start = self.last = time.monotonic()
        self.tty = self.stream.isatty()

    def update(self, n: int, what: str = "") -> None:
        self.done += n
        now = time.monotonic()
        if not self.tty and now - self.last < 10 and self.done < self.total:
            return
        self.last = now
        elapsed = now - self.start
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        line = (f"[latency build] {self.done}/{self.total} rows "
                f"({100 * self.done / max(self.total, 1):.1f}%), {_clock(elapsed)} elapsed, "
                f"ETA {_clock(eta)}  {what}")
        end = "\r" if self.tty and self.done < self.total else "\n"
        print(line[:160].ljust(160) if self.tty else line, end=end, file=self.stream, flush=True)


def _clock(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def build_meta(coverage: Coverage, protocol: Protocol, channel_step: int) -> dict[str, str]:
    meta = {"device": protocol.device, **machine_id(), "backend": protocol.backend,
            "threads": str(protocol.threads), "batch": "1", "warmup": str(protocol.warmup),
            "repeats": str(protocol.repeats), "percentile": f"{protocol.percentile:g}",
            "clock": protocol.effective_clock, "allocator": steady_allocator(),
            "torch": torch.__version__}
    if protocol.backend == "onnxruntime":  # the deployed form the rows were timed in
        meta.update(runtime.runtime_meta(protocol.dtype))
    meta["python"] = sys.version.split()[0]
    meta["date"] = dt.date.today().isoformat()
    meta.update(coverage.meta(channel_step))
    return meta


def identity_differs(theirs: dict[str, str], ours: dict[str, str]
                     ) -> tuple[str, str, str] | None:
    """The first identity key (`IDENTITY_KEYS`) on which a table's metadata and a
    build's differ, with both values: rows are appended only to a table of the same
    identity."""
    for key in IDENTITY_KEYS:
        if theirs.get(key, "") != ours.get(key, ""):
            return key, theirs.get(key, ""), ours.get(key, "")
    return None


def open_for_build(out: Path, meta: dict[str, str]) -> LatencyTable:
    """The table at `out` to continue (rows already timed are kept), or a new one.

    A killed build can leave half a line at the end: it is cut off before resuming.
    """
    if out.exists() and out.stat().st_size > 0:
        cut_torn_line(out)
        table = LatencyTable.load(out)
        differs = identity_differs(table.meta, meta)
        if differs:
            key, theirs, ours = differs
            raise UserError(f"exists and was built with {key} '{theirs}', this build has "
                            f"'{ours}' (use another --out or delete the file)", str(out))
        return table
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(format_header(meta))
    return LatencyTable(meta, (), out)


# Build steps between two bouts of one group (`latency.rows.BOUTS`): each step prepares
# the next group (exporting its pieces: about a second at 32x32), so a row's bouts lie
# seconds apart and one slow spell of the host rarely covers them all.
BOUT_SPACING = 2


def time_signatures(sigs: Sequence[Signature], protocol: Protocol, se_gate: str,
                    table: LatencyTable, chunk: int = 24, seed: int = 0,
                    progress: Progress | None = None) -> None:
    """Time `sigs` in random groups of `chunk`, round-robin, appending as they finish.

    A random group looks like a network to the caches (operators of all depths and
    widths), which is what makes the sum of rows track whole networks. Each group is
    timed in bouts `BOUT_SPACING` groups apart; a crash loses the few groups in flight.
    """
    todo = [s for s in sigs if s not in table]
    random.Random(seed).shuffle(todo)
    groups = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
    pending: deque[tuple[int, RowGroup]] = deque()
    step = 0
    while groups or pending:
        if groups:
            group = groups.pop(0)
            if step == 0:
                # A fresh process runs its first timings slow (allocator, clocks): spin ~1 s.
                spin([prepare(build_op(s, se_gate), s.input_shape(), protocol)
                      for s in group], protocol, 1.0)
            pending.append((step, RowGroup(group, protocol, se_gate)))
        for born, g in pending:
            if (step - born) % BOUT_SPACING == 0:
                g.bout()
        while pending and not pending[0][1].bouts_left:
            done = pending.popleft()[1]
            rows = done.rows()
            table.append(rows)
            if progress:
                progress.update(len(rows), done.sigs[-1].describe())
        step += 1


def spin(runners: Sequence[Runner], protocol: Protocol, seconds: float) -> None:
    """Run `runners` untimed for about `seconds` (process warm-up)."""
    spin_protocol = replace(protocol, warmup=0, repeats=1)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time_interleaved(runners, spin_protocol)


def fit_calibration(table: LatencyTable, archs: Sequence[Arch], protocol: Protocol,
                    probe: Arch | None = None) -> Calibration:
    """The whole-network correction, fitted on `archs` measured end to end (twice).

    torch tables: `measured = scale * sum_of_rows`, the median ratio. A ratio, not a
    least-squares line: on a noisy machine a slope and an offset fitted on ten networks
    of similar size swing wildly (we saw 2.6x - 5.5 ms), while the median ratio shrugs
    off a few disturbed measurements; the round-robin row timings leave a bias close to
    a pure scale (BENCHMARKS.md). ONNX Runtime tables: a robust line (Theil-Sen): the
    rows less their boundaries leave a bias with an offset as well as a scale, which one
    ratio cannot follow (BENCHMARKS.md, issue 28; a weight-count term, tried beside it on
    networks timed in steady state, did not help). Fitted on networks near the price the
    run will ask about (`build(near=...)`), the line is a local one.

    Which form is kept is decided on networks left out (`latency.fit.choose_form`):
    the raw sum, the ratio and (ONNX Runtime, a slope within 0.67-1.5) the line, each
    fitted on all networks but one and scored on that one; the lowest median error
    wins, the simpler on a tie. A fitted form always matches its own networks, and
    on int8 the line did worse on new ones than the sum it corrected (issue 28).

    Beside it, what a FLOPs model fitted on the same networks gets (`ms = a * MMACs +
    b`, the same fit): `nas latency check` prints both on the networks it checks.

    With `probe`, the drift probe is measured in the same passes, among the networks,
    and recorded in `table` (`latency.drift`): its later ratio then re-anchors the level
    this calibration saw, even where that level was a passing spell.
    """
    model = TableModel(table, policy="interpolate", calibrated=False)
    raw = np.array([model.predict(a).raw_ms for a in archs])
    # Three passes, the median of each network's: one pass caught in a noisy spell (on
    # this guest 20-50% slow for seconds at a time) would tilt every prediction.
    timed = list(archs) + ([probe] if probe is not None else [])
    passes = [np.array([t.ms for t in measure_archs(timed, protocol)]) for _ in range(3)]
    measured = np.median(passes, axis=0)
    if probe is not None:
        record_probe(table, probe, float(measured[-1]))
        measured = measured[:-1]
    mmacs = np.array([count(a)[1] / 1e6 for a in archs])
    flops = robust_line(mmacs, measured)
    if len(archs) < 3:  # too few to leave one out
        scale, offset = fit_form("ratio", raw, measured)
        return Calibration(scale, offset, len(archs), tuple(a.hash() for a in archs),
                           "ratio", flops)
    forms = ("sum", "ratio")
    if subtracts_boundary(protocol):
        # a slope far from 1 is noise fitted on networks of too similar a price: the
        # rows' own level (the ratio) is the better guess then
        if 0.67 <= robust_line(raw, measured)[0] <= 1.5:
            forms += ("line",)
    fit, errors = choose_form(raw, measured, forms)
    scale, offset = fit_form(fit, raw, measured)
    return Calibration(scale, offset, len(archs), tuple(a.hash() for a in archs), fit,
                       flops, tuple(errors.items()))


# The band around a target that near-target calibration networks are drawn from: wide
# enough that a line through them has a slope to find (networks all at one price
# fit a level, not a slope: 20 of them within a few percent gave 0.43 x sum + 0.19 ms).
NEAR_BAND = 1.5


def calibration_networks(coverage: Coverage, n: int, seed: int, channel_step: int,
                         price: TableModel | None = None, near_ms: float | None = None
                         ) -> list[Arch]:
    """`n` networks to fit a calibration on: drawn from `coverage`, half sampled and half
    NetAdapt-shrunk; with `near_ms`, `n` of ten times as many whose uncalibrated price
    under `price` lies within `NEAR_BAND` of it, spread evenly over that band (the run
    prices networks around its target, and a calibration fitted on the whole space
    misses them: issue 28, cifar10_large's +25%); the nearest others fill up a band
    with too few."""
    rng = random.Random(seed)
    if near_ms is None or price is None:
        return [a for a, _ in coverage.sample(n, rng, channel_step)]
    pool = coverage.pool(10 * n, rng, channel_step)
    distance = {a.hash(): float(np.log(price.predict(a).raw_ms / near_ms)) for a in pool}
    inside = sorted((a for a in pool if abs(distance[a.hash()]) <= np.log(NEAR_BAND)),
                    key=lambda a: distance[a.hash()])
    if len(inside) > n:  # evenly over the band, its ends included
        inside = [inside[round(i)] for i in np.linspace(0, len(inside) - 1, n)]
    chosen = {a.hash() for a in inside}
    rest = sorted((a for a in pool if a.hash() not in chosen),
                  key=lambda a: abs(distance[a.hash()]))
    return (inside + rest)[:n]


def build(coverage: Coverage, out: Path, protocol: Protocol, channel_step: int = 8,
          calibrate: int = 20, chunk: int = 24, seed: int = 0,
          stream: TextIO | None = None,
          near: Callable[[TableModel], float] | None = None) -> LatencyTable:
    """Build (or resume) the table at `out`, then fit a calibration on `calibrate`
    measured networks (0: none) near the uncalibrated price `near` gives (None: all over
    the coverage), and time the drift probe. Returns the finished table."""
    protocol.check()
    if channel_step < 1:
        raise UserError(f"--channel-step must be >= 1, got {channel_step}")
    meta = build_meta(coverage, protocol, channel_step)
    table = open_for_build(out, meta)
    sigs = coverage.signatures(channel_step)
    progress = Progress(len(sigs), sum(s in table for s in sigs), stream)
    time_signatures(sigs, protocol, coverage.se_gate, table, chunk, seed, progress)
    if subtracts_boundary(protocol) and "network_ms" not in table.meta:
        probe = coverage.probe(channel_step)
        shape = (1, probe.in_ch, probe.resolution, probe.resolution)
        table.meta["network_ms"] = f"{time_network_boundary(shape, protocol):.6g}"
        table.save()
    if calibrate and table.calibration is None:
        # A seed apart from the checker's default, and the nets are recorded, so a
        # check never scores the networks the calibration was fitted on.
        raw = TableModel(table, policy="interpolate", calibrated=False)
        _calibrate(table, coverage, calibrate, 1_000_003 + seed, protocol, channel_step,
                   near(raw) if near else None)
    if "probe_ms" not in table.meta:  # no calibration to time it with
        probe = coverage.probe(channel_step)
        record_probe(table, probe, measure_probe(probe, protocol))
        table.save()
    return table


def _calibrate(table: LatencyTable, coverage: Coverage, networks: int, seed: int,
               protocol: Protocol, channel_step: int, near_ms: float | None = None
               ) -> Calibration:
    """Fit the calibration on `networks` networks of `coverage` and save the table."""
    price = TableModel(table, policy="interpolate", calibrated=False)
    archs = calibration_networks(coverage, networks, seed, channel_step, price, near_ms)
    cal = fit_calibration(table, archs, protocol, coverage.probe(channel_step))
    table.set_calibration(cal)
    if near_ms is not None:
        table.meta["calibration_near_ms"] = f"{near_ms:.6g}"
    table.save()
    return cal


def recalibrate(table: LatencyTable, coverage: Coverage, networks: int = 20, seed: int = 0,
                channel_step: int = 8, near_ms: float | None = None) -> Calibration:
    """Re-fit `table`'s calibration on `networks` fresh networks measured now with its
    own protocol, and save it: the level of a shared machine drifts (BENCHMARKS.md),
    so re-anchor a table on the day it is used."""
    if networks < 1:
        raise UserError(f"--networks must be >= 1, got {networks}")
    require_this_machine(table, "calibrate")
    protocol = table_protocol(table)
    protocol.check()
    # Its own seed stream, apart from the build's and the check's defaults.
    if near_ms is None and table.meta.get("calibration_near_ms"):
        near_ms = float(table.meta["calibration_near_ms"])
    # the level is re-anchored now, and so is the probe, timed among the networks
    return _calibrate(table, coverage, networks, 2_000_003 + seed, protocol, channel_step,
                      near_ms)
