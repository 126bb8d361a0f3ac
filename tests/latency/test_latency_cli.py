"""`nas latency build | check | export-ops | predict` end to end on tiny inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latency.table import LatencyTable
from helpers import strict_json
from latency_fixtures import EXAMPLE_ARCH, EXAMPLE_TABLE, tiny_arch
from nas.cli import main

FAST = ["--repeats", "3", "--warmup", "1"]


def test_build_predict_check_on_an_arch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    arch = tmp_path / "tiny.json"
    tiny_arch(8).save(arch)
    table = tmp_path / "t.csv"
    assert main(["latency", "build", "--space", str(arch), "--out", str(table),
                 "--calibrate", "2", *FAST]) == 0
    out = capsys.readouterr()
    assert "rows; calibration ms =" in out.out and "[latency build]" in out.err
    n_rows = len(LatencyTable.load(table))

    assert main(["latency", "predict", "--table", str(table), str(arch), "--json"]) == 0
    pred = strict_json(capsys.readouterr().out)
    assert pred["source"] == "table" and pred["ms"] > 0

    assert main(["latency", "check", "--table", str(table), "--samples", "4", "--repeats", "3",
                 "--json"]) == 0
    result = strict_json(capsys.readouterr().out)
    assert result["samples"] == 4
    for key in ("within_10pct", "mape", "noise_within_10pct"):
        assert 0 <= result[key] <= 1 or key == "mape" and result[key] >= 0
    assert result["spearman"] is None or -1 <= result["spearman"] <= 1  # None: no spread
    assert result["raw"] and result["calibrated"] and result["calibration"]["networks"] == 2
    assert len(LatencyTable.load(table)) == n_rows  # interpolate never writes

    assert main(["latency", "check", "--table", str(table), "--samples", "3", "--repeats",
                 "2"]) == 0
    text = capsys.readouterr().out
    assert "noise floor" in text and "worst cases:" in text and "calibrated" in text

    before = LatencyTable.load(table).calibration
    assert main(["latency", "calibrate", "--table", str(table), "--networks", "3"]) == 0
    out = capsys.readouterr().out
    assert "fitted on 3 networks measured now; median error left out: sum " in out
    assert "; was ms = " in out
    after = LatencyTable.load(table)
    assert dict(after.calibration.loo).keys() >= {"sum", "ratio"}  # recorded, reloaded
    assert after.calibration.networks == 3 and after.calibration.nets != before.nets
    assert len(after) == n_rows  # the rows are kept as they were


def test_predict_the_documented_example(capsys: pytest.CaptureFixture) -> None:
    assert main(["latency", "predict", "--table", str(EXAMPLE_TABLE), str(EXAMPLE_ARCH)]) == 0
    assert capsys.readouterr().out.startswith("0.4150 ms (table; sum of rows 0.3990 ms)")


def test_a_malformed_table_is_one_line_and_status_2(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(EXAMPLE_TABLE.read_text().replace("0.121,", "quick,"))
    assert main(["latency", "predict", "--table", str(bad), str(EXAMPLE_ARCH)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith(f"nas: error: {bad}: line ") and "latency_ms: expected a number" in err


def test_missing_row_error_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    arch = json.loads(EXAMPLE_ARCH.read_text())
    arch["layers"][1]["exp_ch"] = 64
    path = tmp_path / "shrunk.json"
    path.write_text(json.dumps(arch))
    assert main(["latency", "predict", "--table", str(EXAMPLE_TABLE), str(path)]) == 2
    err = capsys.readouterr().err
    assert "no row for mbconv hw16 24>64>24 k5 s1 se24 hswish skip=identity" in err
    assert "nearest rows present: line 25: mbconv hw16 24>72>24" in err
    assert main(["latency", "predict", "--table", str(EXAMPLE_TABLE), str(path),
                 "--policy", "interpolate"]) == 0
    assert "table_interpolated" in capsys.readouterr().out


def test_export_ops_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    arch = tmp_path / "tiny.json"
    tiny_arch(8).save(arch)
    assert main(["latency", "export-ops", "--space", str(arch), "--out", str(tmp_path / "d")]) == 0
    assert "template.csv" in capsys.readouterr().out
    assert (tmp_path / "d" / "template.csv").exists()


@pytest.mark.slow
def test_space_table_build_and_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    table = tmp_path / "space.csv"
    assert main(["latency", "build", "--space", "mobilenetv3", "--skeleton", "mobilenetv3_small",
                 "--resolution", "8", "--stem-stride", "1", "--classes", "10", "--out", str(table),
                 "--calibrate", "4", *FAST]) == 0
    capsys.readouterr()
    assert main(["latency", "check", "--table", str(table), "--samples", "6", "--repeats", "3",
                 "--json"]) == 0
    result = strict_json(capsys.readouterr().out)
    assert result["samples"] == 6 and result["coverage"] == "mobilenetv3"
    assert result["interpolated_nets"] >= 1  # shrunk networks need rows the space lacks


def test_calibrate_refuses_a_table_not_timed_here(capsys: pytest.CaptureFixture) -> None:
    # The documented example was "built" on another machine (its `cpu`, no `host`).
    before = EXAMPLE_TABLE.read_text()
    assert main(["latency", "calibrate", "--table", str(EXAMPLE_TABLE)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "calibrate needs the machine the table was built on" in err
    assert EXAMPLE_TABLE.read_text() == before
    assert main(["latency", "calibrate", "--table", str(EXAMPLE_TABLE), "--networks", "0"]) == 2
    assert "--networks must be >= 1" in capsys.readouterr().err
