"""Latency models: the table sum, calibration, missing-row policies, kinds, config."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from latency.missing import interpolate, machine_id
from latency.model import KINDS, FlopsModel, MeasureModel, TableModel, make_model
from latency.shrink import set_expansion, set_group_width
from latency.signature import Signature, signatures
from latency.table import Calibration, LatencyTable, Row
from latency_fixtures import fake_table, tiny_arch
from nas.config import load_config
from nas.experiment import build_latency_model
from search_spaces.channels import residual_groups
from search_spaces.counting import count
from search_spaces.infra.errors import UserError


def test_uncalibrated_prediction_is_the_sum_of_rows() -> None:
    arch = tiny_arch()
    table = fake_table(arch)
    est = TableModel(table).predict(arch)
    rows = [table.get(s).latency_ms for s in signatures(arch)]
    assert est.ms == sum(rows) and est.raw_ms == sum(rows)
    assert est.source == "table" and est.interpolated == 0
    assert len(rows) == 1 + len(arch.layers) + 4  # stem, layers, conv/pool/hidden/classifier


def test_repeated_pieces_count_once_per_occurrence() -> None:
    arch = tiny_arch()
    arch = arch.replace(layers=arch.layers[:2] + (arch.layers[1],) + arch.layers[2:])
    table = fake_table(arch)
    twice = table.get(signatures(arch)[2]).latency_ms
    single = TableModel(fake_table(tiny_arch())).predict(tiny_arch()).ms
    assert TableModel(table).predict(arch).ms == pytest.approx(single + twice)


def test_calibration_is_applied_unless_turned_off() -> None:
    arch = tiny_arch()
    table = fake_table(arch)
    raw = TableModel(table).predict(arch).ms
    table.set_calibration(Calibration(1.25, 0.5, 8))
    assert TableModel(table).predict(arch).ms == pytest.approx(1.25 * raw + 0.5)
    assert TableModel(table).predict(arch).raw_ms == raw
    assert TableModel(table, calibrated=False).predict(arch).ms == raw


def test_repeated_predictions_agree() -> None:
    # How fast `predict` is belongs to benchmarks/latency_fidelity.py (its `predict`
    # column), not to a test: a busy machine would fail a timing assertion.
    arch = tiny_arch()
    model = TableModel(fake_table(arch))
    first = model.predict(arch)
    assert all(model.predict(arch) == first for _ in range(50))


def test_policy_error_names_missing_signature_and_nearest_rows(tmp_path: Path) -> None:
    arch = tiny_arch()
    table = fake_table(arch)
    table.save(tmp_path / "t.csv")
    shrunk = set_expansion(arch, 0, 24)
    with pytest.raises(UserError) as info:
        TableModel.load(tmp_path / "t.csv").predict(shrunk)
    text = str(info.value)
    assert "no row for mbconv hw16 8>24>16 k3 s2 se8 relu skip=none" in text
    assert "nearest rows present: line " in text and "mbconv hw16 8>32>16" in text
    assert info.value.source == str(tmp_path / "t.csv")


def test_policy_interpolate_is_linear_between_rows_of_the_same_shape() -> None:
    arch = tiny_arch()  # layer 0 expands 8 -> 32 with an SE of 8
    table = fake_table(arch)
    sig_lo = signatures(set_expansion(arch, 0, 16))[1]
    table.add(Row(sig_lo, 1.0))
    hi = table.get(signatures(arch)[1])
    mid = set_expansion(arch, 0, 24)
    sig_mid = signatures(mid)[1]
    # With the SE width fixed (8 for all three), MACs are linear in exp_ch, so 24 sits
    # halfway between the rows for 16 and 32.
    assert sig_mid.se_ch == sig_lo.se_ch == hi.sig.se_ch == 8
    assert sig_mid not in table
    assert interpolate(table, sig_mid) == pytest.approx((1.0 + hi.latency_ms) / 2)
    est = TableModel(table, policy="interpolate").predict(mid)
    assert est.source == "table_interpolated" and est.interpolated == 1
    others = sum(table.get(s).latency_ms for s in signatures(mid) if s != sig_mid)
    assert est.ms == pytest.approx(others + (1.0 + hi.latency_ms) / 2)


def test_policy_interpolate_extrapolates_narrower_groups_and_fails_without_rows() -> None:
    arch = tiny_arch()
    table = fake_table(arch)
    group = residual_groups(arch)[2]  # layers 0 and 1 share one width (a residual)
    shrunk = set_group_width(arch, group, 8)
    est = TableModel(table, policy="interpolate").predict(shrunk)
    assert est.source == "table_interpolated" and est.interpolated >= 2
    assert 0 < est.ms < TableModel(table).predict(arch).ms
    odd = Signature("conv", 16, 8, 0, 8, 7, 1, 0, "relu", "none")
    assert interpolate(table, odd) is None
    with pytest.raises(UserError, match="no row for conv"):
        TableModel(table, policy="interpolate").predict(
            arch.replace(layers=(replace(arch.layers[0], kind="conv", exp_ch=None, expand=None,
                                         kernel=7, se_ch=0),) + arch.layers[1:]))


def test_policy_measure_times_missing_rows_and_appends_them(tmp_path: Path) -> None:
    arch = tiny_arch(8)
    meta = {**machine_id(), "backend": "torch", "threads": "1", "repeats": "3", "warmup": "1",
            "se_gate": arch.se.gate}
    table = fake_table(arch, meta)
    table.save(tmp_path / "t.csv")
    shrunk = set_expansion(arch, 0, 16)
    model = TableModel.load(tmp_path / "t.csv", policy="measure")
    est = model.predict(shrunk)
    assert est.source == "table"
    back = LatencyTable.load(tmp_path / "t.csv")
    assert len(back) == len(table) + 1
    new = back.get(signatures(shrunk)[1])
    assert new is not None and new.latency_ms > 0 and new.count == 3


def test_two_processes_measuring_one_row_write_it_once(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # two Ray trials price the same network with their own copy of the table: the
    # second takes the row the first appended, instead of timing and appending it again
    # (a duplicate row made the quickstart's table unreadable: issue 28)
    from latency import missing
    arch = tiny_arch(8)
    meta = {**machine_id(), "backend": "torch", "threads": "1", "repeats": "3", "warmup": "1",
            "se_gate": arch.se.gate}
    fake_table(arch, meta).save(tmp_path / "t.csv")
    first = TableModel.load(tmp_path / "t.csv", policy="measure")
    second = TableModel.load(tmp_path / "t.csv", policy="measure")
    shrunk = set_expansion(arch, 0, 16)
    timed: list[int] = []

    def fake_rows(sigs, protocol, se_gate):
        timed.append(len(sigs))
        return [Row(s, 0.5, 0.0, 3) for s in sigs]
    monkeypatch.setattr(missing, "time_rows", fake_rows)
    assert first.predict(shrunk).ms == pytest.approx(second.predict(shrunk).ms)
    assert len(timed) == 1  # the second model timed nothing
    back = LatencyTable.load(tmp_path / "t.csv")  # a duplicate row would fail to load
    assert back.get(signatures(shrunk)[1]).latency_ms == 0.5


def test_policy_measure_refuses_a_table_from_another_machine(tmp_path: Path) -> None:
    arch = tiny_arch(8)
    table = fake_table(arch, {"host": "phone", "cpu": "snapdragon"})
    with pytest.raises(UserError, match="needs the machine the table was built on"):
        TableModel(table, policy="measure").predict(set_expansion(arch, 0, 16))


def test_se_gate_mismatch_is_an_error() -> None:
    arch = tiny_arch()
    table = fake_table(arch, {"se_gate": "sigmoid"})
    with pytest.raises(UserError, match="timed with sigmoid SE gates"):
        TableModel(table).predict(arch)


def test_flops_and_measure_kinds() -> None:
    arch = tiny_arch(8)
    mmacs = count(arch)[1] / 1e6
    est = FlopsModel(2.0, 0.5).predict(arch)
    assert est.source == "flops" and est.ms == pytest.approx(2 * mmacs + 0.5)
    measured = make_model("measure", repeats=3, warmup=1).predict(arch)
    assert measured.source == "measured" and measured.ms > 0
    assert set(KINDS) == {"table", "measure", "flops"}
    assert isinstance(make_model("measure"), MeasureModel)
    with pytest.raises(UserError, match="unknown latency model 'lut'"):
        make_model("lut")


def test_config_section_builds_the_model(tmp_path: Path) -> None:
    arch = tiny_arch()
    fake_table(arch).save(tmp_path / "dev.csv")
    (tmp_path / "exp.yaml").write_text(
        "latency:\n  kind: table\n  path: dev.csv\n  policy: interpolate\n")
    cfg = load_config(tmp_path / "exp.yaml")
    assert cfg.latency.path == tmp_path / "dev.csv"
    model = build_latency_model(cfg)
    assert isinstance(model, TableModel) and model.policy == "interpolate"
    assert cfg.to_dict()["latency"]["path"] == str(tmp_path / "dev.csv")


@pytest.mark.parametrize("body, message", [
    ("latency:\n  kind: lut\n", "latency.kind: 'lut' is not one of table, measure, flops"),
    ("latency:\n  kind: table\n", "latency.path: missing required key"),
    ("latency:\n  policy: guess\n", "latency.policy: 'guess' is not one of"),
    ("latency:\n  threads: 0\n", "latency.threads: must be > 0"),
    ("latency:\n  treads: 2\n", "did you mean 'latency.threads'"),
])
def test_config_section_is_strict(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "exp.yaml").write_text(body)
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        load_config(tmp_path / "exp.yaml")


def test_config_table_errors_name_the_table_file(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("op,latency_ms\n")
    (tmp_path / "exp.yaml").write_text("latency: {kind: table, path: bad.csv}\n")
    with pytest.raises(UserError) as info:
        build_latency_model(load_config(tmp_path / "exp.yaml"))
    assert info.value.source == str(tmp_path / "bad.csv")


def test_a_network_at_another_resolution_is_named_as_such() -> None:
    arch = tiny_arch(16)
    table = fake_table(arch, {"resolution": "16"})
    with pytest.raises(UserError, match="the table covers 16x16 inputs, the network is 32x32"):
        TableModel(table, policy="interpolate").predict(tiny_arch(32))


def test_check_refuses_a_table_from_another_device() -> None:
    from latency.check import run_check
    from latency.profiler import resolve_coverage

    arch = tiny_arch()
    table = fake_table(arch, {"backend": "", "device": "pixel4", "threads": "1"})
    with pytest.raises(UserError, match="has no 'backend' metadata"):
        run_check(table, resolve_coverage("mobilenetv3", 16, 1, 10), samples=2)


def test_check_separates_the_level_from_the_shape(monkeypatch) -> None:
    # Every network "measures" 1.25x its sum of rows (with a little per-net noise): the
    # raw prediction misses the band, one level fitted on the networks recovers it.
    import latency.check as check
    from latency.measure import Timing
    from latency.profiler import Coverage

    arch = tiny_arch()
    table = fake_table(arch, {"se_gate": arch.se.gate, "backend": "torch", "device": "cpu",
                              "threads": "1"})
    model = TableModel(table, policy="interpolate", calibrated=False)
    wobble = iter([1.0, 1.02, 0.98, 1.01] * 10)

    def fake_measure(archs, protocol):
        return [Timing(1.25 * model.predict(a).raw_ms * next(wobble), 0.0, 1) for a in archs]

    monkeypatch.setattr(check, "measure_archs", fake_measure)
    result = check.run_check(table, Coverage("tiny", arch=arch), samples=4)
    assert result["raw"]["within_10pct"] == 0
    assert result["level_fitted"]["within_10pct"] == 1
    assert result["level_fitted"]["scale"] == pytest.approx(1.25, rel=0.03)
    assert "(level fit)" in check.format_report(result)


def test_interpolate_outside_the_rows_fits_the_whole_family() -> None:
    # Rows that follow `fixed + MACs + memory` exactly (mbconv at 56x56, widths as a
    # space's options give them). A narrower layer than every row has no bracketing
    # pair; the fit over the family recovers its latency, where extrapolating along
    # the two nearest rows (the old rule) was off by far more.
    from latency.missing import _features

    def truth(sig: Signature) -> float:
        return float(_features(sig) @ np.array([0.05, 0.012, 0.004]))

    sigs = [Signature("mbconv", 56, i, i * e, o, 3, 1, 0, "relu", "none")
            for i in (24, 32, 40) for e in (3, 6) for o in (24, 40)]
    table = LatencyTable({}, [Row(s, truth(s)) for s in sigs])
    narrow = Signature("mbconv", 56, 16, 48, 16, 3, 1, 0, "relu", "none")
    assert interpolate(table, narrow) == pytest.approx(truth(narrow), rel=1e-6)
    wide = Signature("mbconv", 56, 48, 288, 48, 3, 1, 0, "relu", "none")
    assert interpolate(table, wide) == pytest.approx(truth(wide), rel=1e-6)
