"""The exported model timed here beside its prediction (`latency.deployed`) and
`nas latency measure`."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import strict_json
from latency.deployed import latency_record, pricing, time_exported, timing_key
from latency.measure import Protocol, Timing
from latency.missing import machine_id
from latency.model import FlopsModel, MeasureModel, TableModel
from latency_fixtures import fake_table, tiny_arch
from nas.cli import main
from nas.stages.export import export
from search_spaces.builder import build_model

SHAPE = (1, 3, 16, 16)


def test_what_each_latency_model_describes() -> None:
    arch = tiny_arch()
    here = fake_table(arch, {"se_gate": "hsigmoid", **machine_id(), "threads": "1",
                             "backend": "onnxruntime", "repeats": "7"})
    price = pricing(TableModel(here))
    assert price.here and price.describes.endswith("built on this machine")
    assert price.protocol.backend == "onnxruntime" and price.protocol.repeats == 7
    phone = fake_table(arch, {"se_gate": "hsigmoid", "device": "pixel4-cpu"})
    price = pricing(TableModel(phone))
    assert not price.here and "device 'pixel4-cpu'" in price.describes
    assert pricing(MeasureModel(Protocol(repeats=3))).here
    flops = pricing(FlopsModel(0.378))
    assert flops.here and flops.describes.endswith("a proxy")
    assert not pricing(FlopsModel()).here  # uncalibrated: its "ms" are MMACs
    # a scale fitted to a runtime's ms is compared with that runtime, not eager torch
    ort = pricing(FlopsModel.from_options({"ms_per_mmac": 0.03, "backend": "onnxruntime"}))
    assert ort.protocol.backend == "onnxruntime" and timing_key(ort.protocol) == "onnxruntime"


def test_the_record_compares_only_with_the_device_the_model_describes() -> None:
    timings = {"torch": Timing(2.0, 0.1, 30), "onnxruntime": Timing(1.0, 0.1, 30)}
    arch = tiny_arch()
    here = pricing(TableModel(fake_table(arch, {"se_gate": "hsigmoid", **machine_id(),
                                               "backend": "onnxruntime"})))
    record = latency_record(1.1, 1.5, timings, here)
    assert record["latency_compared_backend"] == "onnxruntime"
    assert record["latency_relative_error"] == pytest.approx(0.1)
    assert record["latency_measured_ms"] == {"torch": 2.0, "onnxruntime": 1.0}
    assert record["latency_target_ms"] == 1.5 and record["latency_predicted_ms"] == 1.1
    phone = pricing(TableModel(fake_table(arch, {"se_gate": "hsigmoid", "device": "phone"})))
    record = latency_record(1.1, None, timings, phone)
    assert record["latency_relative_error"] is None
    assert record["latency_compared_backend"] is None


def test_time_exported_times_the_file_and_the_torch_model(tmp_path: Path) -> None:
    arch = tiny_arch()
    onnx = tmp_path / "model.onnx"
    export(arch, None, "onnx", onnx)
    timings = time_exported(build_model(arch), SHAPE, onnx, Protocol(repeats=3, warmup=1))
    assert set(timings) == {"torch", "onnxruntime"}
    assert all(t.ms > 0 and t.count == 3 for t in timings.values())


def test_nas_latency_measure(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    arch = tiny_arch()
    folder = tmp_path / "final"
    folder.mkdir()
    (folder / "arch.json").write_text(arch.to_json())
    export(arch, None, "onnx", folder / "model.onnx")
    table = tmp_path / "t.csv"
    fake_table(arch, {"se_gate": "hsigmoid"}).save(table)

    assert main(["latency", "measure", str(folder / "model.onnx"), "--repeats", "3",
                 "--table", str(table), "--json"]) == 0
    out = strict_json(capsys.readouterr().out)
    assert out["backend"] == "onnxruntime" and out["runs"] == 3 and out["measured_ms"] > 0
    want = TableModel(fake_table(arch, {"se_gate": "hsigmoid"})).predict(arch).ms
    assert out["predicted_ms"] == pytest.approx(want)
    assert out["relative_error"] == pytest.approx((want - out["measured_ms"]) / out["measured_ms"])

    assert main(["latency", "measure", str(folder), "--repeats", "3"]) == 0  # the folder
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{folder / 'model.onnx'}: ") and "(onnxruntime, 1 thread(s)" in line
    assert main(["latency", "measure", str(folder / "arch.json"), "--repeats", "3"]) == 0
    assert "(torch, 1 thread(s)" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["{onnx}", "--backend", "torch"], "{onnx}: --backend torch: an ONNX file runs under "
                                       "onnxruntime"),
    (["{bad}", "--resolution", "16"], "{bad}: ONNX Runtime cannot load it"),
    (["{bad}", "--arch", "{arch}", "--table", "{missing}"], "{missing}"),
    (["{lonely}"], "{lonely}: --resolution: needed for an ONNX file with no arch.json"),
])
def test_nas_latency_measure_bad_input_is_one_line(tmp_path: Path, capsys, args, message
                                                   ) -> None:
    arch = tiny_arch()
    paths = {"onnx": tmp_path / "net" / "model.onnx", "bad": tmp_path / "bad.onnx",
             "arch": tmp_path / "net" / "arch.json", "missing": tmp_path / "nope.csv",
             "lonely": tmp_path / "lonely" / "model.onnx"}
    paths["arch"].parent.mkdir()
    paths["arch"].write_text(arch.to_json())
    export(arch, None, "onnx", paths["onnx"])
    paths["bad"].write_bytes(b"not an onnx model")
    paths["lonely"].parent.mkdir()
    paths["lonely"].write_bytes(paths["onnx"].read_bytes())
    assert main(["latency", "measure", *(a.format(**paths) for a in args)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message.format(**paths) in err, err


def test_a_backend_the_export_lacks_is_not_compared() -> None:
    """A table timed with ONNX Runtime, and only the torch model timed (no ONNX export):
    no error against torch, which is not what the table prices."""
    arch = tiny_arch()
    here = pricing(TableModel(fake_table(arch, {"se_gate": "hsigmoid", **machine_id(),
                                               "backend": "onnxruntime"})))
    record = latency_record(1.1, None, {"torch": Timing(2.0, 0.1, 30)}, here)
    assert record["latency_relative_error"] is None
    assert record["latency_compared_backend"] is None
    assert record["latency_model"].endswith("timed with onnxruntime, which was not exported")
