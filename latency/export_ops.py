"""Tables for devices that cannot run Python: one small ONNX model per operator
signature, and `template.csv`, a table with every row and an empty `latency_ms`.

The user times each `ops/<signature>.onnx` on the device with its own tools, fills
`latency_ms` (and, if known, `std_ms` and `count`), and the filled template is a
valid table (docs/latency.md walks through it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import torch

from latency import runtime
from latency.profiler import Coverage, Progress
from latency.signature import Signature, build_op
from latency.table import write_template
from search_spaces.infra.files import atomic_write


def export_op(sig: Signature, path: Path, se_gate: str, dtype: str = "fp32") -> None:
    """One operator in its deployed form (`latency.runtime`: the shipped model's
    exporter and opset; int8: static QDQ): input `input`, batch 1, fixed shape, random
    weights."""
    x = torch.randn(sig.input_shape(), generator=torch.Generator().manual_seed(0))
    data = runtime.deployed_bytes(build_op(sig, se_gate), x, dtype)
    atomic_write(path, data)  # a killed export never leaves a half-written model behind


def export_ops(coverage: Coverage, out_dir: Path, channel_step: int = 8,
               stream: TextIO | None = None, dtype: str = "fp32") -> Path:
    """Write `out_dir/ops/*.onnx` and `out_dir/template.csv` (int8: `*.int8.onnx` and
    `template.int8.csv`, so both dtypes can share a folder);
    returns the template path. Models already present are kept, so a killed export
    resumes.
    """
    if dtype != "fp32":
        runtime.require(dtype)
    suffix = ".onnx" if dtype == "fp32" else f".{dtype}.onnx"
    sigs = coverage.signatures(channel_step)
    ops = out_dir / "ops"
    ops.mkdir(parents=True, exist_ok=True)
    progress = Progress(len(sigs), 0, stream or sys.stderr)
    for sig in sigs:
        path = ops / f"{sig.slug()}{suffix}"
        if not path.exists():
            export_op(sig, path, coverage.se_gate, dtype)
        progress.update(1, sig.describe())
    meta = {"device": "", "backend": "", "threads": "", "batch": "1", "date": "",
            **coverage.meta(channel_step), "dtype": dtype, "exporter": runtime.EXPORTER,
            "opset": str(runtime.OPSET), "onnxruntime": "",
            "exported_with": f"torch {torch.__version__}, ONNX opset {runtime.OPSET}"}
    template = out_dir / ("template.csv" if dtype == "fp32" else f"template.{dtype}.csv")
    write_template(template, meta, sigs,
                   "Fill in device, backend, threads, date and the runtime's version above\n"
                   "(onnxruntime: the ONNX Runtime Mobile version), and latency_ms (ms,\n"
                   "batch 1) for every row by timing the model named in its file column.",
                   [f"ops/{sig.slug()}{suffix}" for sig in sigs])
    return template
