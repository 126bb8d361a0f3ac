"""Latency tables built on demand: `latency: {kind: table, path: P, build: if_missing}`.

The first run builds the table the experiment needs on this machine (every operator
its space can produce, NetAdapt's named start with its shrink grids, the report's
reference nets; `nas.coverage`), recording the machine it was timed on; later runs
reuse it, timing only operators a changed experiment adds. A table from another
machine is never silently reused nor rebuilt over: it is an error that says so.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

from latency.measure import Protocol
from latency.missing import machine_id
from latency.profiler import Coverage, build
from latency.table import LatencyTable
from search_spaces.errors import UserError

if TYPE_CHECKING:
    from nas.config import ExperimentConfig, LatencyConfig

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

    def describe(self) -> str:
        if self.action == "reuse":
            return f"{self.key}: {self.path}, built on this machine, covers the experiment"
        verb = "build" if self.action == "build" else "extend"
        return (f"{self.key}: {verb} {self.path} on this machine: {self.to_time:,} of "
                f"{self.total:,} operators to time (about {_minutes(self.to_time)})")


def _minutes(operators: int) -> str:
    # about 50 operators a second at 32x32 on one core, plus the calibration's
    # networks (BENCHMARKS.md, issue 3: 1,446-2,311 rows in 23-32 s, then ~20 s)
    return f"{max(1, round((operators / 50 + 20) / 60))} min"


def protocol_of(lat: "LatencyConfig") -> Protocol:
    """The measurement protocol a `latency:` section describes."""
    return Protocol(lat.backend, lat.device, lat.threads, lat.warmup, lat.repeats,
                    lat.percentile, lat.clock)


def plan_table(key: str, lat: "LatencyConfig", coverage: Coverage, channel_step: int,
               source: str) -> TablePlan | None:
    """The plan for `key`'s table (None unless `build: if_missing`); raises for a table
    built on another machine or with another protocol."""
    if lat.kind != "table" or lat.build != "if_missing":
        return None
    assert lat.path is not None
    protocol = protocol_of(lat)
    sigs = coverage.signatures(channel_step)
    if not lat.path.exists():
        return TablePlan(key, lat.path, "build", len(sigs), len(sigs), coverage, protocol,
                         channel_step)
    table = LatencyTable.load(lat.path)
    for name, here in machine_id().items():
        if table.meta.get(name) != here:
            raise UserError(f"{key}.path: {lat.path} was built on another machine ({name} "
                            f"'{table.meta.get(name, '')}', here '{here}'); build: "
                            f"if_missing neither reuses nor rebuilds it: move it away to "
                            f"build one here, or set build: never to use it as it is",
                            source)
    for name, want in (("backend", protocol.backend), ("device", protocol.device),
                       ("threads", str(protocol.threads))):
        if table.meta.get(name, "") != want:
            raise UserError(f"{key}.path: {lat.path} was timed with {name} "
                            f"'{table.meta.get(name, '')}', {key}.{name} is '{want}'",
                            source)
    to_time = sum(s not in table for s in sigs)
    return TablePlan(key, lat.path, "reuse" if to_time == 0 else "extend", to_time,
                     len(sigs), coverage, protocol, channel_step)


def build_planned(plan: TablePlan, log: Callable[[str], None] | None = None) -> None:
    """Time what `plan` lacks into its table (progress on stderr); a killed build
    resumes from the rows already written."""
    if plan.action == "reuse":
        return
    if log:
        log(plan.describe())
    build(plan.coverage, plan.path, plan.protocol, plan.channel_step, CALIBRATION_NETWORKS,
          stream=sys.stderr)


def experiment_plans(cfg: "ExperimentConfig", coverage: Callable[[], Coverage]
                     ) -> list[TablePlan]:
    """The plans of `latency:` and `netadapt.latency:` (one per table file); `coverage`
    (what the experiment prices: an enumeration) is only computed when one is needed."""
    step = cfg.netadapt.channel_step if cfg.netadapt is not None else 8
    sections = [("latency", cfg.latency)]
    if cfg.netadapt is not None and cfg.netadapt.latency is not None \
            and "netadapt" in cfg.stages:
        sections.append(("netadapt.latency", cfg.netadapt.latency))
    sections = [(k, lat) for k, lat in sections if lat.kind == "table" and lat.build != "never"]
    if not sections:
        return []
    covered = coverage()
    plans: dict[Path, TablePlan] = {}
    for key, lat in sections:
        plan = plan_table(key, lat, covered, step, cfg.source)
        if plan is not None:
            plans.setdefault(plan.path.resolve(), plan)
    return list(plans.values())
