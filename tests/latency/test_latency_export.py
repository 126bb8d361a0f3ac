"""export-ops: one ONNX model per signature and a template that, filled, is a table."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from latency.export_ops import export_ops
from latency.model import TableModel
from latency.profiler import resolve_coverage
from latency.signature import signatures
from latency.table import LatencyTable
from latency_fixtures import tiny_arch
from search_spaces.infra.errors import UserError


def test_template_round_trip(tmp_path: Path) -> None:
    arch_path = tmp_path / "tiny.json"
    tiny_arch(8).save(arch_path)
    cov = resolve_coverage(str(arch_path))
    template = export_ops(cov, tmp_path / "dev", channel_step=8, stream=io.StringIO())
    sigs = cov.signatures(8)
    models = sorted((tmp_path / "dev" / "ops").glob("*.onnx"))
    assert len(models) == len(sigs)

    # Unfilled, the template is not yet a table, and says why.
    with pytest.raises(UserError, match="latency_ms: empty"):
        LatencyTable.load(template)

    # "Time" every model on the device (here: onnxruntime, once) and fill the column.
    lines = template.read_text().splitlines(keepends=True)
    head = [l for l in lines if l.startswith("#")]
    reader = csv.DictReader(l for l in lines if not l.startswith("#"))
    rows = list(reader)
    for row in rows:
        session = ort.InferenceSession(str(tmp_path / "dev" / row["file"]),
                                       providers=["CPUExecutionProvider"])
        (inp,) = session.get_inputs()
        assert inp.name == "input"
        session.run(None, {"input": np.zeros(inp.shape, dtype=np.float32)})
        row["latency_ms"] = str(0.001 * int(row["out_ch"]))
    filled = tmp_path / "dev" / "my_device.csv"
    with open(filled, "w", newline="") as f:
        f.writelines(h.replace("# device: ", "# device: test phone") if "device:" in h else h
                     for h in head)
        writer = csv.DictWriter(f, fieldnames=reader.fieldnames, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    table = LatencyTable.load(filled)
    assert len(table) == len(sigs) and table.meta["device"] == "test phone"
    est = TableModel(table).predict(tiny_arch(8))
    assert est.ms == pytest.approx(sum(0.001 * s.out_ch for s in signatures(tiny_arch(8))))


def test_export_resumes_without_rewriting_models(tmp_path: Path) -> None:
    arch_path = tmp_path / "tiny.json"
    tiny_arch(8).save(arch_path)
    cov = resolve_coverage(str(arch_path))
    export_ops(cov, tmp_path / "dev", stream=io.StringIO())
    first = sorted((tmp_path / "dev" / "ops").glob("*.onnx"))[0]
    stamp = first.stat().st_mtime_ns
    export_ops(cov, tmp_path / "dev", stream=io.StringIO())
    assert first.stat().st_mtime_ns == stamp
