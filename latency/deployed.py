"""The shipped model timed on this machine beside the latency model's prediction.

The search and NetAdapt price networks with a latency model; what ships is an ONNX
file and a torch model. This times both with the measurement protocol (batch 1, the
model's thread count, the steady allocator; `latency.measure`) and says how far the
prediction was off. A prediction is compared only with a measurement of the device it
describes: a table built on another device (a phone) is reported as such, with no
error computed, since this machine's time says nothing about the phone's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from latency.measure import STEADY, Protocol, Timing, onnx_file_runner, prepare, time_interleaved
from latency.missing import cpu_model, other_machine, table_protocol
from latency.model import FlopsModel, LatencyModel, MeasureModel, TableModel


@dataclass(frozen=True)
class Pricing:
    """What a latency model's milliseconds are: the device they describe, whether that
    is this machine, and the protocol to time here with to compare."""

    describes: str
    here: bool
    protocol: Protocol


def pricing(model: LatencyModel) -> Pricing:
    """Where `model`'s predictions apply and how to measure to compare with them."""
    if isinstance(model, MeasureModel):
        return Pricing("this machine, measured", True, model.protocol)
    if isinstance(model, TableModel):
        table = model.table
        name = Path(table.source).name
        if other_machine(table) is None:
            return Pricing(f"table {name}, built on this machine", True, table_protocol(table))
        device = table.meta.get("device") or "unnamed"
        host = table.meta.get("host")
        where = f"device '{device}'" + (f" (host {host})" if host else "")
        return Pricing(f"table {name} of {where}, not this machine", False, Protocol())
    if isinstance(model, FlopsModel):
        if model.ms_per_mmac == 1.0 and model.offset_ms == 0.0:
            return Pricing("MMACs (flops without ms_per_mmac: not milliseconds)", False,
                           Protocol())
        return Pricing(f"MACs x {model.ms_per_mmac:g} ms/MMAC + {model.offset_ms:g} ms, "
                       "a proxy", True, model.protocol)
    return Pricing(type(model).__name__, False, Protocol())


def timing_key(protocol: Protocol) -> str:
    """The key of `time_exported`'s timings a latency model of `protocol` describes."""
    if protocol.backend == "onnxruntime" and protocol.dtype != "fp32":
        return f"onnxruntime_{protocol.dtype}"
    return protocol.backend


def time_exported(module: nn.Module, input_shape: tuple[int, ...],
                  onnx_path: str | os.PathLike | None, protocol: Protocol,
                  int8_path: str | os.PathLike | None = None) -> dict[str, Timing]:
    """The torch model (on the protocol's device) and, given them, the ONNX file and its
    int8 form (CPU), each timed end to end in steady state under `protocol`; by
    `torch`, `onnxruntime` and `onnxruntime_int8`."""
    out: dict[str, Timing] = {}
    torch_protocol = replace(protocol, backend="torch", dtype="fp32")
    torch_protocol.check()
    runner = prepare(module, input_shape, torch_protocol)
    out["torch"] = time_interleaved([runner], torch_protocol, settle=STEADY)[0]
    files = {"onnxruntime": onnx_path, "onnxruntime_int8": int8_path}
    ort_protocol = replace(protocol, backend="onnxruntime", device="cpu", dtype="fp32")
    for key, path in files.items():
        if path is not None:
            ort_protocol.check()
            runner = onnx_file_runner(path, input_shape, ort_protocol.threads)
            out[key] = time_interleaved([runner], ort_protocol, settle=STEADY)[0]
    return out


def relative_error(predicted_ms: float, measured_ms: float) -> float:
    """(predicted - measured) / measured: positive when the model over-predicts."""
    return (predicted_ms - measured_ms) / measured_ms


def latency_record(predicted_ms: float, target_ms: float | None, timings: dict[str, Timing],
                   price: Pricing) -> dict[str, Any]:
    """The fields `final/metrics.json` gets: measured per backend, predicted, target and
    the prediction's error against the backend the latency model describes (None where
    the model describes another device)."""
    protocol = price.protocol
    # the backend the model's milliseconds are for; none when it was not timed (a table
    # of ONNX Runtime timings and no ONNX export) or the model prices another device
    key = timing_key(protocol)
    backend = key if price.here and key in timings else None
    describes = price.describes
    if price.here and backend is None:
        describes += f", timed with {key}, which was not exported"
    return {
        "latency_predicted_ms": predicted_ms,
        "latency_target_ms": target_ms,
        "latency_measured_ms": {b: t.ms for b, t in timings.items()},
        "latency_measured_std_ms": {b: t.std_ms for b, t in timings.items()},
        "latency_measured_on": (f"{cpu_model()}, {protocol.device}, {protocol.threads} "
                                f"thread(s), batch 1, p{protocol.percentile:g} of "
                                f"{protocol.repeats} runs ({protocol.effective_clock} clock)"),
        "latency_model": describes,
        "latency_compared_backend": backend,
        "latency_relative_error": (relative_error(predicted_ms, timings[backend].ms)
                                   if backend else None),
    }
