"""Latency tables built on demand: `latency: {kind: table, path: P, build: if_missing}`.

The first run builds the table the experiment needs on this machine (every operator
its space can produce, NetAdapt's named start with its shrink grids, the report's
reference nets; `nas.coverage`), recording the machine it was timed on; later runs
reuse it, timing only operators a changed experiment adds. A table from another
machine is never silently reused nor rebuilt over: it is an error that says so.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

from latency.measure import Protocol
from latency.missing import form_differs, other_machine
from latency.model import TableModel, protocol_from_options
from latency.profiler import Coverage, build, build_meta, identity_differs
from latency.signature import Signature
from latency.table import LatencyTable
from nas.config import ExperimentConfig, LatencyConfig, target_reference
from nas.coverage import coverage_of
from search_spaces.arch import Arch
from search_spaces.factorized import FactorizedSpace
from search_spaces.infra.errors import UserError

# Networks measured end to end to fit the built table's calibration (`nas latency
# build --calibrate`'s default).
CALIBRATION_NETWORKS = 20


@dataclass(frozen=True)
class TablePlan:
    """What a `build: if_missing` table needs before the run: `build` (no file yet),
    `extend` (built here, some operators missing) or `reuse`."""

    key: str
    path: Path
    action: Literal["build", "extend", "reuse"]
    to_time: int  # operators still to time
    total: int
    coverage: Coverage
    protocol: Protocol
    channel_step: int
    # the uncalibrated price the calibration's networks are drawn around (the run's
    # target: `profiler.calibration_networks`); None: all over the coverage
    near: Callable[[TableModel], float] | None = None

    def describe(self) -> str:
        if self.action == "reuse":
            return f"{self.key}: {self.path}, built on this machine, covers the experiment"
        verb = "build" if self.action == "build" else "extend"
        return (f"{self.key}: {verb} {self.path} on this machine: {self.to_time:,} of "
                f"{self.total:,} operators to time")


def plan_table(key: str, lat: LatencyConfig, coverage: Coverage, needed: list[Signature],
               channel_step: int, source: str,
               near: Callable[[TableModel], float] | None = None) -> TablePlan:
    """The plan for `key`'s `build: if_missing` table, which must price `needed`; raises
    for a table built on another machine or with another protocol."""
    assert lat.path is not None
    protocol = protocol_from_options(asdict(lat))
    if not lat.path.exists():
        return TablePlan(key, lat.path, "build", len(needed), len(needed), coverage, protocol,
                         channel_step, near)
    table = LatencyTable.load(lat.path)
    differs = other_machine(table)
    if differs:
        name, theirs, here = differs
        raise UserError(f"{key}.path: {lat.path} was built on another machine ({name} "
                        f"'{theirs}', here '{here}'); build: if_missing neither reuses nor "
                        f"rebuilds it: move it away to build one here, or set build: never "
                        f"to use it as it is", source)
    for name, want in (("backend", protocol.backend), ("device", protocol.device),
                       ("threads", str(protocol.threads))):
        if table.meta.get(name, "") != want:
            raise UserError(f"{key}.path: {lat.path} was timed with {name} "
                            f"'{table.meta.get(name, '')}', {key}.{name} is '{want}'",
                            source)
    form = form_differs(table, protocol)
    if form:  # another dtype, ONNX Runtime version, opset, ...: not what ships from here
        name, theirs, here = form
        where = f"{key}.dtype is" if name == "dtype" else "this machine runs"
        raise UserError(f"{key}.path: {lat.path} was timed with {name} '{theirs}', "
                        f"{where} '{here}': give it another path, or delete it to rebuild",
                        source)
    to_time = sum(s not in table for s in needed)
    # Extending appends rows, which `open_for_build` allows only to a table of the same
    # identity: say so now, before any run directory exists, in the experiment's terms.
    differs = to_time and identity_differs(table.meta,
                                           build_meta(coverage, protocol, channel_step))
    if differs:
        name, theirs, ours = differs
        raise UserError(f"{key}.path: {lat.path} was built for {name} '{theirs}', this "
                        f"experiment's is '{ours}', and it lacks {to_time:,} of the "
                        f"experiment's operators: give this experiment a path of its own",
                        source)
    return TablePlan(key, lat.path, "reuse" if to_time == 0 else "extend", to_time,
                     len(needed), coverage, protocol, channel_step, near)


def build_planned(plan: TablePlan, log: Callable[[str], None] | None = None) -> None:
    """Time what `plan` lacks into its table (progress with an ETA on stderr); a killed
    build resumes from the rows already written."""
    if plan.action == "reuse":
        return
    if log:
        log(plan.describe())
    build(plan.coverage, plan.path, plan.protocol, plan.channel_step, CALIBRATION_NETWORKS,
          stream=sys.stderr, near=plan.near)


def experiment_plans(cfg: ExperimentConfig, space: FactorizedSpace,
                     needed: Callable[[], list[Signature]], start: Arch | None = None
                     ) -> list[TablePlan]:
    """The plans of `latency:` and `netadapt.latency:` with `build: if_missing` (one per
    table file). `needed` (every operator the experiment prices, `nas.coverage`: an
    enumeration) is only called when there is a plan to make. Without a search stage
    the table is built for NetAdapt's named `start`, not for the whole space."""
    step = cfg.netadapt.channel_step if cfg.netadapt is not None else 8
    sections = [("latency", cfg.latency)]
    if cfg.netadapt is not None and cfg.netadapt.latency is not None \
            and "netadapt" in cfg.stages:
        sections.append(("netadapt.latency", cfg.netadapt.latency))
    sections = [(k, lat) for k, lat in sections if lat.kind == "table" and lat.build != "never"]
    if not sections:
        return []
    sigs = needed()
    coverage = coverage_of(cfg, cfg.name or "experiment", space, start, sigs)
    plans: dict[Path, TablePlan] = {}
    for key, lat in sections:
        plan = plan_table(key, lat, coverage, sigs, step, cfg.source, target_price(cfg, key, space.num_classes))
        plans.setdefault(plan.path.resolve(), plan)
    return list(plans.values())


def target_price(cfg: ExperimentConfig, key: str, num_classes: int
                 ) -> Callable[[TableModel], float] | None:
    """The price, under a table not yet calibrated, that `key`'s calibration networks are
    drawn around: the run's target (`reward.target_ratio` x its reference priced by the
    same table; else `reward.target_ms`, or NetAdapt's `target_ms`, taken as is)."""
    rw = cfg.reward
    na = cfg.netadapt if "netadapt" in cfg.stages else None
    if key == "netadapt.latency" and na is not None and na.target_ms is not None:
        target_ms = na.target_ms
        return lambda _: target_ms
    if rw.target_ratio is not None:
        ratio, reference = rw.target_ratio, target_reference(cfg, num_classes)
        return lambda model: ratio * model.predict(reference).raw_ms
    if rw.target_ms is not None:
        target_ms = rw.target_ms
        return lambda _: target_ms
    return None
