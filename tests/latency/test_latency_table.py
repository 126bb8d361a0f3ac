"""The table file format: good files, malformed files (errors name file and line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from latency.model import TableModel
from latency.signature import Signature, signatures
from latency.table import COLUMNS, Calibration, LatencyTable, Row
from latency_fixtures import EXAMPLE_ARCH, EXAMPLE_TABLE, fake_table, tiny_arch
from search_spaces.arch import load_arch
from search_spaces.infra.errors import UserError

HEADER = ",".join(COLUMNS)
GOOD_ROW = "stem,16,3,0,8,3,1,0,hswish,none,0.05,0.001,30"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.csv"
    path.write_text(text)
    return path


def test_hand_written_example_loads_and_predicts() -> None:
    table = LatencyTable.load(EXAMPLE_TABLE)
    assert len(table) == 10
    assert table.meta["backend"] == "torch" and table.meta_int("threads") == 1
    assert table.calibration == Calibration(1.04, 0.0, 10)
    arch = load_arch(EXAMPLE_ARCH)
    raw = TableModel(table, calibrated=False).predict(arch)
    assert raw.source == "table"
    assert raw.ms == pytest.approx(0.399)
    assert TableModel(table).predict(arch).ms == pytest.approx(0.399 * 1.04)


def test_round_trip_keeps_rows_meta_and_calibration(tmp_path: Path) -> None:
    table = fake_table(tiny_arch(), {"device": "cpu", "threads": "1"})
    table.set_calibration(Calibration(1.1, 0.2, 5, ("abc", "def")))
    table.save(tmp_path / "x.csv")
    back = LatencyTable.load(tmp_path / "x.csv")
    assert back.meta["device"] == "cpu"
    assert back.calibration == Calibration(1.1, 0.2, 5, ("abc", "def"))
    assert {s: r.latency_ms for s, r in back.rows.items()} == \
        pytest.approx({s: r.latency_ms for s, r in table.rows.items()})
    assert back.frame().shape == (len(table), len(COLUMNS))


def test_comments_blank_lines_empty_spread_and_column_order(tmp_path: Path) -> None:
    cols = list(COLUMNS)
    cols[0], cols[-1] = cols[-1], cols[0]
    text = ("# a comment line without a key\n\n# device: phone\n" + ",".join(cols) + "\n"
            "30,16,3,0,8,3,1,0,hswish,none,0.05,,stem\n")
    table = LatencyTable.load(write(tmp_path, text))
    (row,) = table.rows.values()
    assert row.sig.op == "stem" and row.count == 30 and row.std_ms is None and row.line == 5


@pytest.mark.parametrize("text, message", [
    (HEADER.replace(",skip", "") + "\n", "line 1: missing column 'skip'"),
    (HEADER + ",lat\n", "line 1: unknown column 'lat'"),
    ("# threads: one\n" + HEADER + "\n", "line 1: threads: expected an integer, got 'one'"),
    ("# batch: 8\n" + HEADER + "\n", "line 1: batch: tables model batch 1 only"),
    ("# format: nas-latency-table 9\n" + HEADER + "\n", "line 1: format: unsupported"),
    ("# device: a\n# device: b\n" + HEADER + "\n", "line 2: metadata key 'device' given twice"),
    (HEADER + "\n" + GOOD_ROW.replace("0.05", "fast") + "\n",
     "line 2: latency_ms: expected a number >= 0, got 'fast'"),
    (HEADER + "\n" + GOOD_ROW.replace("0.05", "-1") + "\n", "line 2: latency_ms: expected"),
    (HEADER + "\n" + GOOD_ROW.replace("0.05", "nan") + "\n", "line 2: latency_ms: expected"),
    (HEADER + "\n" + GOOD_ROW.replace("0.05", "") + "\n", "line 2: latency_ms: empty"),
    (HEADER + "\n" + GOOD_ROW.replace(",16,", ",16.5,", 1) + "\n",
     "line 2: input_hw: expected an integer, got '16.5'"),
    (HEADER + "\n" + GOOD_ROW + "\n" + GOOD_ROW.replace("0.05", "0.06") + "\n",
     "line 3: duplicate signature stem hw16 3>8 k3 s1 hswish skip=none (first at line 2)"),
    (HEADER + "\n" + GOOD_ROW + ",extra\n", "line 2: expected 13 fields, got 14"),
    (HEADER + "\n" + GOOD_ROW.replace("stem", "stemm") + "\n", "line 2: op: unknown op 'stemm'"),
    (HEADER + "\n" + GOOD_ROW.replace("hswish", "gelu") + "\n", "line 2: act: unknown"),
    (HEADER + "\n" + GOOD_ROW.replace(",1,0,hswish", ",3,0,hswish") + "\n",
     "line 2: stride: must be 1 or 2"),
    (HEADER + "\n" + GOOD_ROW.replace("none,0.05", "identity,0.05") + "\n",
     "line 2: skip: only layers have a residual"),
    (HEADER + "\n" + GOOD_ROW + "\n# device: late\n", "line 3: metadata"),
    (HEADER + "\n" + GOOD_ROW.replace(",0.001,30", ",0.001,many") + "\n", "line 2: count:"),
    ("# device: cpu\n", "no header line"),
])
def test_malformed_files_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UserError) as info:
        LatencyTable.load(path)
    assert message in str(info.value)
    assert info.value.source == str(path)


def test_unreadable_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read latency table"):
        LatencyTable.load(tmp_path / "nope.csv")


def test_nearest_prefers_same_op_and_shape() -> None:
    arch = tiny_arch()
    table = fake_table(arch)
    target = signatures(arch)[1]  # the expanding mbconv
    narrower = Signature(**{**target.as_dict(), "exp_ch": 24})
    assert table.nearest(narrower, 1)[0].sig == target


def test_append_goes_to_the_file(tmp_path: Path) -> None:
    table = fake_table(tiny_arch())
    table.save(tmp_path / "a.csv")
    sig = Signature("classifier", 1, 48, 0, 100, 1, 1, 0, "none", "none")
    table.append([Row(sig, 0.5)])
    assert LatencyTable.load(tmp_path / "a.csv").get(sig).latency_ms == 0.5
