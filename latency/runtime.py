"""The deployed form: how a torch module becomes the ONNX model ONNX Runtime runs.

One home for the exporter, its opset, int8 quantisation and the session options, used
by everything that times ONNX Runtime (table rows, whole networks, `kind: measure`)
and by the export stage that writes `final/model.onnx` and `final/model.int8.onnx`.
A table timed in this form predicts the shipped file because both are made here, the
same way; its metadata records the form (`runtime_meta`) and a run with another form is
refused (`latency.missing.form_differs`).

Int8 is static QDQ with per-channel weights (uint8 activations, int8 weights: ONNX
Runtime's recommended form on x86-64), after ONNX Runtime's own pre-processing (shape
inference and graph optimisation). Its latency is measured, never derived from fp32: on
a CPU without VNNI a QDQ graph can run slower than fp32 (BENCHMARKS.md).
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from search_spaces.infra.errors import UserError

DTYPES = ("fp32", "int8")
EXPORTER = "torchscript"
# 17: the opset every ONNX Runtime since 1.15 runs, ONNX Runtime Mobile included.
OPSET = 17
# ONNX Runtime's default (ORT_ENABLE_ALL: constant folding, conv + BN + activation
# fusion, the NCHWc layout); recorded so a table and the shipped model agree.
GRAPH_OPTIMIZATION = "all"
PROVIDER = "CPUExecutionProvider"
# Random inputs that calibrate an operator's int8 scales for timing: the scales do
# not change the kernels that run, so a handful suffice.
TIMING_CALIBRATION_INPUTS = 4


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise UserError("ONNX Runtime is not installed: pip install "
                        "'platform-aware-nas[onnx]'") from None
    return onnxruntime


def require(dtype: str = "fp32") -> None:
    """A `UserError` naming the extra to install when the deployed form of `dtype`
    cannot be made or run here."""
    _ort()
    if dtype not in DTYPES:
        raise UserError(f"dtype: unknown '{dtype}' (choose from {', '.join(DTYPES)})")
    if dtype == "int8":
        try:
            import onnx  # noqa: F401  (ONNX Runtime's quantisation tools need it)
            import onnxruntime.quantization  # noqa: F401
        except ImportError:
            raise UserError("int8 needs ONNX Runtime's quantisation tools (the onnx "
                            "package): pip install 'platform-aware-nas[onnx]'") from None


# The metadata keys of the form: a table (or an export) with another value in one of
# them was timed on something else than what this machine would run now.
FORM_KEYS = ("runtime", "onnxruntime", "exporter", "opset", "dtype", "graph_optimization",
             "provider")


def runtime_meta(dtype: str) -> dict[str, str]:
    """What a table or an export records about the deployed form."""
    return {"runtime": "onnxruntime", "onnxruntime": _ort().__version__,
            "exporter": EXPORTER, "opset": str(OPSET), "dtype": dtype,
            "graph_optimization": GRAPH_OPTIMIZATION, "provider": PROVIDER}


def onnx_bytes(module: nn.Module, x: torch.Tensor, input_name: str = "input",
               output_name: str = "output", dynamic_batch: bool = False) -> bytes:
    """`module` (eval mode) as an ONNX model with one input: the exporter and opset of
    every table row and of the shipped file."""
    buf = io.BytesIO()
    axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated but fast (the dynamo one takes seconds
        # per model, and a table exports thousands) and needs no onnxscript.
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (x,), buf, input_names=[input_name],
                          output_names=[output_name], opset_version=OPSET,
                          dynamic_axes=axes, dynamo=False)
    return buf.getvalue()


class _Feed:
    """ONNX Runtime's calibration reader: one `{input: batch}` dict at a time."""

    def __init__(self, name: str, batches: Iterable[np.ndarray]) -> None:
        self._items = iter({name: np.ascontiguousarray(b, dtype=np.float32)} for b in batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)

    def rewind(self) -> None:  # part of the reader interface; one pass is all we use
        pass


def quantize_int8(model: bytes, batches: Sequence[np.ndarray], input_name: str = "input"
                  ) -> bytes:
    """`model` as static QDQ int8 (per-channel weights), its activation ranges
    calibrated (min-max) on `batches`, after ONNX Runtime's pre-processing."""
    require("int8")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(_Feed, CalibrationDataReader):
        pass

    # The quantiser's own calibration sessions log at warning level (an unused
    # initializer now and then), which would break into the build's progress lines.
    _ort().set_default_logger_severity(3)

    with tempfile.TemporaryDirectory(prefix="nas-int8-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src, pre, out = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(model)
        quant_pre_process(str(src), str(pre))
        quantize_static(str(pre), str(out), Reader(input_name, batches),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return out.read_bytes()


def deployed_bytes(module: nn.Module, x: torch.Tensor, dtype: str) -> bytes:
    """What ONNX Runtime runs for `module` at input `x`'s shape, in `dtype` (int8:
    calibrated on random inputs of that shape, which is all timing needs)."""
    model = onnx_bytes(module, x)
    if dtype == "fp32":
        return model
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal(tuple(x.shape)).astype(np.float32)
               for _ in range(TIMING_CALIBRATION_INPUTS)]
    return quantize_int8(model, batches)


def session(model: bytes | str | os.PathLike, threads: int) -> Any:
    """An ONNX Runtime CPU session on `threads` intra-op threads, run sequentially, at the
    recorded optimisation level. With one thread it runs on the calling thread (no
    pool), so the thread clock sees it."""
    ort = _ort()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, opts, providers=[PROVIDER])


def load_file(path: str | os.PathLike, threads: int) -> Any:
    """`session` on an ONNX file a user handed in: a damaged or foreign file is one
    `UserError` naming it, not ONNX Runtime's traceback."""
    require()
    try:
        return session(path, threads)
    except Exception as err:  # ONNX Runtime's own error types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(f"ONNX Runtime cannot load it ({first})", str(path)) from None
