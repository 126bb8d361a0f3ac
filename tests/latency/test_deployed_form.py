"""The deployed form (issue 28): ONNX Runtime rows less their boundary, the per-network
constant, the robust calibration, the drift probe, the refusal of a foreign form, int8
quantisation. No timing assertions: where timing would run, it is replaced."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from arch_fixtures import small_arch
from helpers import fill_by_order
from latency import drift, rows, runtime
from latency.drift import Drift, level_factor, measure_drift, probe_arch, record_probe
from latency.fit import choose_form, leave_one_out_error, robust_line
from latency.measure import Protocol
from latency.missing import form_differs, machine_id, require_form
from latency.model import LatencyEstimate, TableModel
from latency.profiler import NEAR_BAND, build, calibration_networks, resolve_coverage
from latency.signature import Signature, signatures
from latency.table import Calibration, LatencyTable
from latency_fixtures import fake_table, tiny_arch
from nas.config import LatencyConfig
from nas.stages.export import OnnxModule, export_int8
from nas.tables import plan_table
from search_spaces.arch import Arch
from search_spaces.builder import build_model
from search_spaces.counting import count
from search_spaces.infra.errors import UserError

ORT = Protocol(backend="onnxruntime", warmup=1, repeats=3)


def test_robust_line_fits_and_shrugs_off_an_outlier() -> None:
    x = np.linspace(0.1, 1.0, 12)
    y = 1.3 * x + 0.05
    assert robust_line(x, y) == pytest.approx((1.3, 0.05))
    y[4] *= 3  # one network timed in a noisy spell
    slope, offset = robust_line(x, y)
    assert slope == pytest.approx(1.3, rel=0.05) and offset == pytest.approx(0.05, abs=0.02)
    # one size only: no slope to fit, the median ratio through the origin
    assert robust_line(np.ones(4), np.array([2.0, 2.2, 1.8, 2.0])) == (2.0, 0.0)


def test_the_calibration_form_is_chosen_on_networks_left_out() -> None:
    raw = np.linspace(0.2, 2.0, 12)
    rng = np.random.default_rng(0)
    noise = 1 + rng.normal(0, 0.03, len(raw))
    # the rows already right: neither a ratio nor a line beats them on new networks
    form, errors = choose_form(raw, raw * noise)
    assert form == "sum" and set(errors) == {"sum", "ratio", "line"}
    # a pure scale: the ratio; a scale and an offset: the line
    assert choose_form(raw, 1.4 * raw * noise)[0] == "ratio"
    assert choose_form(raw, (1.2 * raw + 0.3) * noise)[0] == "line"
    assert choose_form(raw, (1.2 * raw + 0.3) * noise, ("sum", "ratio"))[0] == "ratio"
    # a tie goes to the simpler form
    assert choose_form(raw, raw)[0] == "sum"
    assert leave_one_out_error("ratio", raw, 2 * raw) == pytest.approx(0)
    # the errors travel with the table's calibration
    table = fake_table(tiny_arch())
    table.set_calibration(Calibration(1.0, 0.0, 12, (), "sum", None, tuple(errors.items())))
    assert table.calibration.loo == tuple((f, pytest.approx(e, rel=1e-3))
                                          for f, e in errors.items())
    assert "median error left out: sum " in table.calibration.how()


def _fake_timings(values: dict[int, float]):
    def fake(runners, protocol, settle=0, timeout=None):
        return [[values.get(i, 1.0)] * protocol.repeats for i in range(len(runners))]
    return fake


def test_onnxruntime_rows_are_the_piece_less_its_boundary(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    arch = tiny_arch()
    sigs = list(dict.fromkeys(signatures(arch)))[:4]  # stem + three layers
    shapes = list(dict.fromkeys(s.input_shape() for s in sigs))
    assert len(shapes) == 3  # the last two layers enter at one size: one boundary
    # pieces 0.05, 0.06, ...; the boundaries of their inputs 0.01, 0.02, 0.03; a piece
    # cheaper than its call comes out 0, not negative
    timings = {i: 0.05 + 0.01 * i for i in range(4)}
    timings.update({4 + j: 0.01 * (j + 1) for j in range(3)})
    timings[3] = 0.001
    monkeypatch.setattr(rows, "sample_interleaved", _fake_timings(timings))
    monkeypatch.setattr(rows, "prepare", lambda *a, **k: (lambda: None))
    got = rows.time_rows(sigs, ORT, "hsigmoid")
    assert [r.latency_ms for r in got] == pytest.approx([0.04, 0.04, 0.04, 0.0])
    # eager torch: no boundary models, the rows as timed
    monkeypatch.setattr(rows, "sample_interleaved", _fake_timings(timings))
    got = rows.time_rows(sigs, Protocol(), "hsigmoid")
    assert [r.latency_ms for r in got] == pytest.approx([0.05, 0.06, 0.07, 0.001])


def test_pieces_of_one_input_share_one_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    a = Signature("head_conv", 4, 24, 0, 32, 1, 1, 0, "hswish", "none")
    b = replace(a, out_ch=48)
    calls: list[int] = []

    def fake(runners, protocol, settle=0, timeout=None):
        calls.append(len(runners))
        return [[t] * protocol.repeats for t in (0.05, 0.07, 0.02)]
    monkeypatch.setattr(rows, "sample_interleaved", fake)
    monkeypatch.setattr(rows, "prepare", lambda *a, **k: (lambda: None))
    got = rows.time_rows([a, b], ORT, "hsigmoid")
    assert calls == [3] * min(rows.BOUTS, ORT.repeats) and [r.latency_ms for r in got] == pytest.approx([0.03, 0.05])


def test_the_network_constant_is_added_once_and_the_level_scales() -> None:
    arch = tiny_arch()
    table = fake_table(arch)
    plain = TableModel(table).predict(arch).ms
    table.meta["network_ms"] = "0.25"
    assert TableModel(table).predict(arch).raw_ms == pytest.approx(plain + 0.25)
    table.set_calibration(Calibration(2.0, 0.1, 20, (), "line", (0.01, 0.2)))
    assert TableModel(table).predict(arch).ms == pytest.approx(2 * (plain + 0.25) + 0.1)
    assert TableModel(table, level=0.5).predict(arch).ms == \
        pytest.approx(0.5 * (2 * (plain + 0.25) + 0.1))


def test_calibration_fit_and_flops_baseline_round_trip(tmp_path: Path) -> None:
    table = fake_table(tiny_arch())
    table.set_calibration(Calibration(1.1, -0.02, 20, ("abc",), "line", (0.03, 0.15)))
    table.meta["calibration_near_ms"] = "0.4"
    table.save(tmp_path / "t.csv")
    back = LatencyTable.load(tmp_path / "t.csv")
    assert back.calibration == Calibration(1.1, -0.02, 20, ("abc",), "line", (0.03, 0.15))
    assert back.meta["calibration_near_ms"] == "0.4"
    back.set_calibration(Calibration(1.0, 0.0, 5))  # a new fit drops the old one's extras
    assert "calibration_near_ms" not in back.meta and back.calibration.flops is None


def test_drift_probe_round_trip_and_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    arch = tiny_arch()
    table = fake_table(arch, {"se_gate": "hsigmoid", **machine_id(), "backend": "torch",
                              "threads": "1"})
    assert measure_drift(table) is None  # no probe: nothing to say
    record_probe(table, arch, 0.5)
    assert probe_arch(table) == arch and table.meta["probe_ms"] == "0.5"
    monkeypatch.setattr(drift, "measure_probe", lambda a, p, passes=5: 0.6)
    d = measure_drift(table)
    assert d == Drift(0.5, 0.6) and d.ratio == pytest.approx(1.2)
    assert "+20.0% against its build" in d.describe("t.csv")
    assert level_factor(d, "rescale", 0.1, "t.csv") == pytest.approx(1.2)
    assert level_factor(d, "warn", 0.1, "t.csv") == 1.0
    assert level_factor(d, "rescale", 0.25, "t.csv") == 1.0  # within tolerance
    with pytest.raises(UserError, match="past latency.drift_tolerance 0.1: run `nas latency "
                                        "calibrate --table t.csv`"):
        level_factor(d, "refuse", 0.1, "t.csv")
    table.meta["host"] = "another-machine"  # this machine's time says nothing about it
    assert measure_drift(table) is None
    table.meta["probe_arch"] = "{not json"
    with pytest.raises(UserError, match="probe_arch: not a network"):
        probe_arch(table)


def _ort_table(**meta: str) -> LatencyTable:
    table = fake_table(tiny_arch())
    table.meta.update(machine_id(), backend="onnxruntime", device="cpu", threads="1",
                      **runtime.runtime_meta("fp32"))
    table.meta.update(meta)
    return table


def test_a_foreign_runtime_or_dtype_is_refused(tmp_path: Path) -> None:
    assert form_differs(_ort_table(), ORT) is None
    assert form_differs(_ort_table(), replace(ORT, dtype="int8")) == ("dtype", "fp32", "int8")
    assert form_differs(_ort_table(onnxruntime="1.0.0"), ORT)[:2] == ("onnxruntime", "1.0.0")
    assert form_differs(_ort_table(opset="13"), ORT) == ("opset", "13", str(runtime.OPSET))
    assert form_differs(_ort_table(), Protocol()) is None  # torch has no form
    with pytest.raises(UserError, match="the check: the table was timed with graph_optimization "
                                        "'basic', here it is 'all'"):
        require_form(_ort_table(graph_optimization="basic"), ORT, "the check")
    # an experiment's `build: if_missing` table of the other dtype: one line, naming it
    path = tmp_path / "t.csv"
    _ort_table(dtype="int8").save(path)
    lat = LatencyConfig(kind="table", path=path, build="if_missing", backend="onnxruntime")
    cov = resolve_coverage(str(_arch_file(tmp_path)))
    with pytest.raises(UserError) as err:
        plan_table("latency", lat, cov, [], 8, "exp.yaml")
    assert err.value.message == (f"latency.path: {path} was timed with dtype 'int8', "
                                 f"latency.dtype is 'fp32': give it another path, or delete "
                                 f"it to rebuild")
    with pytest.raises(UserError, match="dtype: int8 is timed with backend onnxruntime"):
        LatencyConfig(kind="measure", dtype="int8")


def _arch_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.json"
    tiny_arch().save(path)
    return path


def test_an_onnxruntime_table_records_its_form_probe_and_constant(tmp_path: Path) -> None:
    out = tmp_path / "ort.csv"
    table = build(resolve_coverage(str(_arch_file(tmp_path))), out, ORT, calibrate=3)
    meta = LatencyTable.load(out).meta
    for key, value in runtime.runtime_meta("fp32").items():
        assert meta[key] == value
    assert float(meta["network_ms"]) > 0 and float(meta["probe_ms"]) > 0
    assert probe_arch(table) == tiny_arch()  # one network's table: the network is the probe
    cal = table.calibration
    assert cal is not None and cal.fit in ("line", "ratio", "sum") and cal.flops is not None
    assert all(r.latency_ms >= 0 for r in table.rows.values())


def test_int8_export_quantises_runs_and_tracks_fp32(tmp_path: Path) -> None:
    arch = small_arch()
    model = build_model(arch).eval()
    fill_by_order(model, seed=2)
    fp32 = tmp_path / "model.onnx"
    x = torch.randn(1, arch.in_ch, arch.resolution, arch.resolution)
    fp32.write_bytes(runtime.onnx_bytes(model, x, "image", "logits", dynamic_batch=True))
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((8, arch.in_ch, arch.resolution, arch.resolution))
               .astype(np.float32) for _ in range(4)]
    export_int8(fp32, tmp_path / "model.int8.onnx", batches)
    import onnx
    ops = {n.op_type for n in onnx.load(str(tmp_path / "model.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ, not a copy of fp32
    probe = torch.from_numpy(batches[0])
    with torch.inference_mode():
        want = model(probe)
    got = OnnxModule(tmp_path / "model.int8.onnx")(probe)
    assert got.shape == want.shape
    # int8 follows fp32: the logits correlate, most top-1 classes agree
    corr = np.corrcoef(got.numpy().ravel(), want.numpy().ravel())[0, 1]
    assert corr > 0.9
    assert (got.argmax(1) == want.argmax(1)).float().mean() >= 0.75
    with pytest.raises(UserError, match="ONNX Runtime cannot load it"):
        (tmp_path / "bad.onnx").write_bytes(b"not onnx")
        OnnxModule(tmp_path / "bad.onnx")


def test_onnxruntime_protocol_times_int8_in_memory() -> None:
    from latency.measure import measure_archs
    (t,) = measure_archs([tiny_arch(8)], replace(ORT, dtype="int8"))
    assert t.ms > 0 and t.count == 3
    with pytest.raises(UserError, match="dtype: int8 is timed with the onnxruntime backend"):
        Protocol(dtype="int8").check()


def test_runtime_meta_names_the_form() -> None:
    meta = runtime.runtime_meta("int8")
    assert set(meta) == set(runtime.FORM_KEYS)
    assert meta["dtype"] == "int8" and meta["opset"] == str(runtime.OPSET)


def test_calibration_networks_spread_over_the_band_around_the_target() -> None:
    cov = resolve_coverage("mobilenetv3", 32, 1, 10, "mobilenetv3_small")

    class Price:  # a made-up price: MMACs, so the band is a band of sizes
        def predict(self, arch: Arch) -> LatencyEstimate:
            mmacs = count(arch)[1] / 1e6
            return LatencyEstimate(mmacs, "flops", mmacs)
    archs = [a for a, _ in cov.sample(200, random.Random(3), 8)]
    target = float(np.median([count(a)[1] / 1e6 for a in archs]))
    chosen = calibration_networks(cov, 20, 3, 8, Price(), target)  # type: ignore[arg-type]
    prices = sorted(count(a)[1] / 1e6 for a in chosen)
    assert len({a.hash() for a in chosen}) == 20
    assert target / NEAR_BAND <= prices[0] and prices[-1] <= target * NEAR_BAND
    assert prices[-1] / prices[0] > 1.5  # spread over the band, not 20 of one price


def test_a_slow_bout_does_not_move_a_row(monkeypatch: pytest.MonkeyPatch) -> None:
    sig = Signature("head_conv", 4, 24, 0, 32, 1, 1, 0, "hswish", "none")
    bouts = iter([[0.05], [0.09], [0.05], [0.05], [0.05], [0.05]])  # the 2nd: a slow spell

    def fake(runners, protocol, settle=0, timeout=None):
        return [next(bouts) * protocol.repeats for _ in runners]
    monkeypatch.setattr(rows, "sample_interleaved", fake)
    monkeypatch.setattr(rows, "prepare", lambda *a, **k: (lambda: None))
    got = rows.time_rows([sig], Protocol(repeats=30, percentile=10.0), "hsigmoid")
    assert got[0].latency_ms == pytest.approx(0.05) and got[0].count == 30


def test_a_build_spreads_each_groups_bouts_over_later_groups(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from latency import profiler
    log: list[int] = []  # which group each bout timed, in order (its runners' list)

    def fake(runners, protocol, settle=0, timeout=None):
        log.append(id(runners))
        return [[0.01] * protocol.repeats for _ in runners]
    monkeypatch.setattr(rows, "sample_interleaved", fake)
    monkeypatch.setattr(rows, "prepare", lambda *a, **k: (lambda: None))
    monkeypatch.setattr(profiler, "spin", lambda *a, **k: None)
    sigs = [Signature("head_conv", 4, 24, 0, 8 * (i + 1), 1, 1, 0, "hswish", "none")
            for i in range(7)]  # groups of 2, 2, 2, 1 (torch: no boundaries)
    table = LatencyTable({}, (), tmp_path / "t.csv")
    table.save()
    profiler.time_signatures(sigs, Protocol(repeats=6), "hsigmoid", table, chunk=2)
    assert len(table) == 7 and all(r.count == 6 for r in table.rows.values())
    assert len(log) == 4 * rows.BOUTS
    groups = list(dict.fromkeys(log))
    assert len(groups) == 4 and all(log.count(g) == rows.BOUTS for g in groups)
    # other groups' bouts lie between two of one group's: none is timed twice in a row
    assert all(a != b for a, b in zip(log, log[1:]))

