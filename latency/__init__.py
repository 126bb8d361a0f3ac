"""Latency models behind one interface (`predict(arch) -> LatencyEstimate`): lookup
tables, on-device measurement, a FLOPs proxy; the table format, the profiler that
builds tables, export-ops for phones, and the fidelity check."""

from latency.measure import Protocol, Timing, compute_lock, measure_arch, measure_archs, timing_lock
from latency.model import (KINDS, FlopsModel, LatencyEstimate, LatencyModel, MeasureModel,
                           TableModel, make_model)
from latency.signature import Signature, signatures
from latency.table import Calibration, LatencyTable, Row

__all__ = [
    "KINDS", "Calibration", "FlopsModel", "LatencyEstimate", "LatencyModel", "LatencyTable",
    "MeasureModel", "Protocol", "Row", "Signature", "TableModel", "Timing", "compute_lock",
    "make_model", "measure_arch", "measure_archs", "signatures", "timing_lock",
]
