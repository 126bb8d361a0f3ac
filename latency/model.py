"""The latency model interface, `predict(arch) -> LatencyEstimate`, and its three kinds."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from latency.measure import Protocol, measure_arch
from latency.missing import POLICIES, interpolate, measure_missing, missing_error
from latency.signature import Signature, signatures
from latency.table import LatencyTable
from search_spaces.arch import Arch
from search_spaces.counting import count
from search_spaces.infra.errors import UserError

Source = Literal["table", "table_interpolated", "measured", "flops"]


@dataclass(frozen=True)
class LatencyEstimate:
    """Milliseconds for one network at batch 1, and where the number came from.

    `raw_ms` is the uncalibrated value (the plain sum of table rows, or MMACs for an
    uncalibrated FLOPs proxy); `interpolated` counts pieces whose row was interpolated.
    """

    ms: float
    source: Source
    raw_ms: float
    interpolated: int = 0

    def __post_init__(self) -> None:
        # Every reward and NetAdapt step divides by or compares latencies: a zero,
        # negative or NaN one (a negative offset, a bad calibration) is stopped here.
        if not (math.isfinite(self.ms) and self.ms > 0):
            raise UserError(f"the latency model ({self.source}) predicted {self.ms} ms; a "
                            f"latency must be a positive number (check its offset_ms or "
                            f"calibration)")


class LatencyModel(ABC):
    """Turns an `Arch` (at its resolution, batch 1) into milliseconds."""

    @abstractmethod
    def predict(self, arch: Arch) -> LatencyEstimate:
        """The latency of `arch`."""

    @classmethod
    @abstractmethod
    def from_options(cls, opts: dict[str, Any]) -> "LatencyModel":
        """Build from the options of a `latency:` config section."""


class TableModel(LatencyModel):
    """Sum of per-operator rows of a lookup table plus its per-network constant
    (`network_ms`: ONNX Runtime tables), then the table's calibration, times `level`
    (the drift probe's rescaling, `latency.drift`)."""

    def __init__(self, table: LatencyTable, policy: str = "error",
                 calibrated: bool = True, level: float = 1.0) -> None:
        if policy not in POLICIES:
            raise UserError(f"policy: unknown '{policy}' (choose from {', '.join(POLICIES)})")
        self.table = table
        self.policy = policy
        self.calibration = table.calibration if calibrated else None
        self.level = level
        self.network_ms = float(table.meta.get("network_ms") or 0.0)
        self._interpolated: dict[Signature, float] = {}

    @classmethod
    def load(cls, path: str | Path, policy: str = "error",
             calibrated: bool = True) -> "TableModel":
        return cls(LatencyTable.load(path), policy, calibrated)

    @classmethod
    def from_options(cls, opts: dict[str, Any]) -> "TableModel":
        if not opts.get("path"):
            raise UserError("path: a table latency model needs the table file")
        return cls.load(opts["path"], opts.get("policy", "error"), opts.get("calibrated", True))

    def predict(self, arch: Arch) -> LatencyEstimate:
        sigs = signatures(arch)
        gate = self.table.meta.get("se_gate")
        if gate and any(s.se_ch for s in sigs) and gate != arch.se.gate:
            raise UserError(f"the table was timed with {gate} SE gates, the network uses "
                            f"{arch.se.gate}", self.table.source)
        rows = self.table.rows
        missing = [s for s in sigs if s not in rows and s not in self._interpolated]
        built_for = self.table.meta.get("resolution", "")
        if missing and missing[0] == sigs[0] and built_for not in ("", str(arch.resolution)):
            # No stem row at this input size: the whole network is at the wrong size.
            raise UserError(f"the table covers {built_for}x{built_for} inputs, the network "
                            f"is {arch.resolution}x{arch.resolution}", self.table.source)
        if missing:
            self._fill(missing, sigs, arch.se.gate)
        total, n_interp = self.network_ms, 0
        for s in sigs:
            row = rows.get(s)
            if row is None:
                total += self._interpolated[s]
                n_interp += 1
            else:
                total += row.latency_ms
        ms = (self.calibration.apply(total) if self.calibration else total) * self.level
        return LatencyEstimate(ms, "table_interpolated" if n_interp else "table", total, n_interp)

    def _fill(self, missing: list[Signature], context: list[Signature], se_gate: str) -> None:
        if self.policy == "error":
            raise missing_error(self.table, missing[0])
        if self.policy == "measure":
            measure_missing(self.table, missing, context, se_gate)
            return
        for sig in dict.fromkeys(missing):
            value = interpolate(self.table, sig)
            if value is None:
                raise missing_error(self.table, sig)
            self._interpolated[sig] = value


def protocol_from_options(opts: dict[str, Any]) -> Protocol:
    """The measurement protocol that a `latency:` section's options describe."""
    keys = ("backend", "device", "dtype", "threads", "warmup", "repeats", "percentile",
            "clock")
    return Protocol(**{k: opts[k] for k in keys if opts.get(k) is not None})


class MeasureModel(LatencyModel):
    """Build the network and time it end to end with the measurement protocol."""

    def __init__(self, protocol: Protocol | None = None) -> None:
        self.protocol = protocol or Protocol()
        self.protocol.check()

    @classmethod
    def from_options(cls, opts: dict[str, Any]) -> "MeasureModel":
        return cls(protocol_from_options(opts))

    def predict(self, arch: Arch) -> LatencyEstimate:
        t = measure_arch(arch, self.protocol)
        return LatencyEstimate(t.ms, "measured", t.ms)


class FlopsModel(LatencyModel):
    """A MACs proxy: `ms = ms_per_mmac * MMACs + offset_ms`.

    Uncalibrated (the defaults 1 and 0) the "milliseconds" are MMACs: fine for
    ranking, not for a target in ms.
    """

    def __init__(self, ms_per_mmac: float = 1.0, offset_ms: float = 0.0,
                 protocol: Protocol | None = None) -> None:
        if ms_per_mmac <= 0:
            raise UserError(f"ms_per_mmac: must be > 0, got {ms_per_mmac}")
        self.ms_per_mmac = ms_per_mmac
        self.offset_ms = offset_ms
        # The runtime whose ms the scale was fitted to (the section's backend, dtype,
        # threads): what the export measures to compare with.
        self.protocol = protocol or Protocol()

    @classmethod
    def from_options(cls, opts: dict[str, Any]) -> "FlopsModel":
        return cls(opts.get("ms_per_mmac", 1.0), opts.get("offset_ms", 0.0),
                   protocol_from_options(opts))

    def predict(self, arch: Arch) -> LatencyEstimate:
        mmacs = count(arch)[1] / 1e6
        return LatencyEstimate(self.ms_per_mmac * mmacs + self.offset_ms, "flops", mmacs)


# kind -> class (a plain dict, no registry magic); each builds from `latency:` options.
KINDS: dict[str, type[LatencyModel]] = {"table": TableModel, "measure": MeasureModel,
                                        "flops": FlopsModel}


def make_model(kind: str, **options: Any) -> LatencyModel:
    """The latency model of `kind` (`table`, `measure`, `flops`) from config options."""
    if kind not in KINDS:
        raise UserError(f"kind: unknown latency model '{kind}' (choose from {', '.join(KINDS)})")
    return KINDS[kind].from_options(options)
