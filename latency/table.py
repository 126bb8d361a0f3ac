"""The latency table file: leading `# key: value` metadata, then a CSV of operator rows.

    # device: Pixel 4 big core
    # backend: tflite
    # threads: 1
    # batch: 1
    op,input_hw,in_ch,exp_ch,out_ch,kernel,stride,se_ch,act,skip,latency_ms,std_ms,count
    stem,32,3,0,16,3,1,0,hswish,none,0.0391,0.0012,30

Parsing is strict: every problem is a `UserError` naming the file and the line. The
format is documented in docs/latency.md.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

from latency.signature import KEY_COLUMNS, Signature, check_signature
from search_spaces.infra.checks import did_you_mean
from search_spaces.infra.errors import UserError, read_user_text
from search_spaces.infra.files import append_text, atomic_write

FORMAT = "nas-latency-table 1"
VALUE_COLUMNS = ("latency_ms", "std_ms", "count")
COLUMNS = KEY_COLUMNS + VALUE_COLUMNS
OPTIONAL_COLUMNS = ("file",)  # export-ops templates name each operator's ONNX file
INT_COLUMNS = ("input_hw", "in_ch", "exp_ch", "out_ch", "kernel", "stride", "se_ch")
INT_META = ("threads", "batch", "resolution", "stem_stride", "num_classes", "warmup",
            "repeats", "calibration_networks")
FLOAT_META = ("percentile", "calibration_scale", "calibration_offset_ms", "network_ms",
              "probe_ms", "flops_ms_per_mmac", "flops_offset_ms", "calibration_near_ms")
_META_LINE = re.compile(r"^#\s*([A-Za-z_][\w.-]*)\s*:\s*(.*?)\s*$")


@dataclass(frozen=True)
class Row:
    """One operator's latency; `line` is where it was read (None if not from a file)."""

    sig: Signature
    latency_ms: float
    std_ms: float | None = None
    count: int | None = None
    line: int | None = None
    file: str | None = None

    def cells(self, columns: Iterable[str] = COLUMNS) -> list[str]:
        values = {**{k: str(v) for k, v in self.sig.as_dict().items()},
                  "latency_ms": _num(self.latency_ms),
                  "std_ms": "" if self.std_ms is None else _num(self.std_ms),
                  "count": "" if self.count is None else str(self.count),
                  "file": self.file or ""}
        return [values[c] for c in columns]


@dataclass(frozen=True)
class Calibration:
    """Whole-network correction `ms = scale * sum_of_rows + offset_ms`, fitted on
    `networks` measured networks (their hashes in `nets`, so a check can skip them):
    `fit` says how (`ratio`: the median ratio, offset 0; `line`: a robust line), and
    `flops` is what a FLOPs model `(ms_per_mmac, offset_ms)` fitted on the same
    networks the same way gave (the baseline `nas latency check` sets beside it);
    `sum`: the rows as they are, scale 1 and offset 0)."""

    scale: float
    offset_ms: float
    networks: int
    nets: tuple[str, ...] = ()
    fit: str = "ratio"
    flops: tuple[float, float] | None = None
    # each form's leave-one-out median relative error on the networks (`fit` is the
    # lowest: `latency.fit.choose_form`); empty for calibrations made before
    loo: tuple[tuple[str, float], ...] = ()

    def apply(self, raw_ms: float) -> float:
        return self.scale * raw_ms + self.offset_ms

    def formula(self) -> str:
        """`ms = 1.1000 * sum + -0.0080`: how the CLI and the check print it."""
        return f"ms = {self.scale:.4f} * sum + {self.offset_ms:.4f}"

    def how(self, networks: str = "networks") -> str:
        """`line, fitted on 20 networks; left out: sum 8.1%, ratio 6.4%, line 5.2%`."""
        loo = ", ".join(f"{form} {err:.1%}" for form, err in self.loo)
        return f"{self.fit}, fitted on {self.networks} {networks}" + \
            (f"; median error left out: {loo}" if loo else "")


def _num(x: float) -> str:
    return f"{x:.6g}"


class LatencyTable:
    """Rows keyed by `Signature`, plus the file's metadata."""

    def __init__(self, meta: dict[str, str] | None = None, rows: Iterable[Row] = (),
                 path: Path | None = None, columns: Iterable[str] = COLUMNS) -> None:
        self.meta: dict[str, str] = dict(meta or {})
        self.columns = tuple(columns)  # the file's column order, kept when appending
        self.rows: dict[Signature, Row] = {}
        self._by_shape: dict[tuple, list[Row]] = {}  # for interpolation, kept by add()
        self.path = path
        for row in rows:
            self.add(row)

    # ------------------------------------------------------------ access

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, sig: Signature) -> bool:
        return sig in self.rows

    def get(self, sig: Signature) -> Row | None:
        return self.rows.get(sig)

    def add(self, row: Row) -> None:
        if row.sig in self.rows:
            raise ValueError(f"duplicate signature {row.sig.describe()}")
        self.rows[row.sig] = row
        self._by_shape.setdefault(row.sig.shape(), []).append(row)

    def same_shape(self, sig: Signature) -> list[Row]:
        """The rows that differ from `sig` in channel counts only (see `Signature.shape`)."""
        return self._by_shape.get(sig.shape(), [])

    def meta_int(self, key: str) -> int | None:
        value = self.meta.get(key, "")
        return int(value) if value else None

    @property
    def source(self) -> str:
        return str(self.path) if self.path else "<table>"

    @property
    def calibration(self) -> Calibration | None:
        if not self.meta.get("calibration_scale"):
            return None
        nets = tuple(n for n in self.meta.get("calibration_nets", "").split(",") if n)
        flops = None
        if self.meta.get("flops_ms_per_mmac"):
            flops = (float(self.meta["flops_ms_per_mmac"]),
                     float(self.meta.get("flops_offset_ms") or 0.0))
        loo = tuple((form, float(err)) for form, _, err in
                    (item.partition(":") for item in
                     self.meta.get("calibration_loo", "").split(",") if item))
        return Calibration(float(self.meta["calibration_scale"]),
                           float(self.meta.get("calibration_offset_ms") or 0.0),
                           int(self.meta.get("calibration_networks") or len(nets)), nets,
                           self.meta.get("calibration_fit") or "ratio", flops, loo)

    def set_calibration(self, cal: Calibration | None) -> None:
        for key in ("calibration_scale", "calibration_offset_ms", "calibration_networks",
                    "calibration_nets", "calibration_fit", "calibration_near_ms",
                    "calibration_loo", "flops_ms_per_mmac", "flops_offset_ms"):
            self.meta.pop(key, None)
        if cal is not None:
            self.meta.update(calibration_scale=f"{cal.scale:.6g}",
                             calibration_offset_ms=f"{cal.offset_ms:.6g}",
                             calibration_networks=str(cal.networks),
                             calibration_nets=",".join(cal.nets),
                             calibration_fit=cal.fit)
            if cal.loo:
                self.meta["calibration_loo"] = ",".join(f"{form}:{err:.4g}"
                                                        for form, err in cal.loo)
            if cal.flops is not None:
                self.meta.update(flops_ms_per_mmac=f"{cal.flops[0]:.6g}",
                                 flops_offset_ms=f"{cal.flops[1]:.6g}")

    def frame(self) -> pd.DataFrame:
        """The rows as a pandas frame with the table's columns."""
        return pd.DataFrame([{**r.sig.as_dict(), "latency_ms": r.latency_ms,
                              "std_ms": r.std_ms, "count": r.count} for r in self.rows.values()],
                            columns=list(COLUMNS))

    def nearest(self, sig: Signature, n: int = 3) -> list[Row]:
        """The `n` rows most like `sig`: same op and shape first, then close widths."""
        return sorted(self.rows.values(), key=lambda r: signature_distance(sig, r.sig))[:n]

    # ------------------------------------------------------------ files

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        path = Path(path)
        text = read_user_text(path, "latency table")
        meta, columns, rows = parse(text, str(path))
        return cls(meta, rows, path, columns)

    def save(self, path: str | Path | None = None) -> None:
        """Write the whole file atomically (metadata may have changed)."""
        path = Path(path or self.path or "")
        buf = io.StringIO()
        buf.write(format_header(self.meta, self.columns))
        writer = csv.writer(buf, lineterminator="\n")
        for row in self.rows.values():
            writer.writerow(row.cells(self.columns))
        atomic_write(path, buf.getvalue())
        self.path = path

    def append(self, rows: Iterable[Row]) -> None:
        """Add rows here and at the end of the file, flushed (a killed run keeps them)."""
        rows = list(rows)
        for row in rows:
            self.add(row)
        if self.path is not None:
            append_rows(self.path, rows, self.columns)


def format_header(meta: dict[str, str], columns: Iterable[str] = COLUMNS) -> str:
    lines = [f"# format: {FORMAT}"]
    lines += [f"# {k}: {v}" for k, v in meta.items() if k != "format"]
    return "\n".join(lines) + "\n" + ",".join(columns) + "\n"


def write_template(path: Path, meta: dict[str, str], sigs: Iterable[Signature],
                   comment: str, files: Iterable[str] | None = None) -> None:
    """Rows to time and fill in: the table format with `latency_ms` (and `std_ms`,
    `count`) empty, and a `file` column naming each operator's model when `files` is
    given; `comment` opens the file. Written atomically."""
    files = list(files) if files is not None else None
    columns = COLUMNS + (("file",) if files is not None else ())
    buf = io.StringIO()
    buf.write("".join(f"# {line}\n" for line in comment.splitlines()))
    buf.write(format_header({k: v for k, v in meta.items() if k != "format"}, columns))
    writer = csv.writer(buf, lineterminator="\n")
    for i, sig in enumerate(sigs):
        writer.writerow([str(v) for v in sig.key()] + ["", "", ""]
                        + ([files[i]] if files is not None else []))
    atomic_write(path, buf.getvalue())


def append_rows(path: Path, rows: Iterable[Row], columns: Iterable[str] = COLUMNS) -> None:
    columns = tuple(columns)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for row in rows:
        writer.writerow(row.cells(columns))
    append_text(path, buf.getvalue())


def signature_distance(a: Signature, b: Signature) -> float:
    """Small for rows that differ only a little in channel counts."""
    if a.op != b.op:
        return 1e6
    shape = sum(getattr(a, k) != getattr(b, k)
                for k in ("input_hw", "kernel", "stride", "act", "skip"))
    shape += (a.exp_ch > 0) != (b.exp_ch > 0)
    shape += (a.se_ch > 0) != (b.se_ch > 0)
    widths = sum(abs(math.log((getattr(a, k) + 1) / (getattr(b, k) + 1)))
                 for k in ("in_ch", "exp_ch", "out_ch", "se_ch"))
    return 100 * shape + widths


# ------------------------------------------------------------------ parsing

def _lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        yield number, line


def parse(text: str, source: str) -> tuple[dict[str, str], list[str], list[Row]]:
    """Parse a table file's text; errors name `source` and the line."""
    meta: dict[str, str] = {}
    header: list[str] | None = None
    rows: list[Row] = []
    seen: dict[Signature, int] = {}
    for number, line in _lines(text):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            match = _META_LINE.match(stripped)
            if match and header is not None:
                raise UserError(f"line {number}: metadata ('# key: value') must come "
                                f"before the header line", source)
            if match:
                key, value = match.group(1), match.group(2)
                if key in meta:
                    raise UserError(f"line {number}: metadata key '{key}' given twice", source)
                problem = _meta_problem(key, value)
                if problem:
                    raise UserError(f"line {number}: {problem}", source)
                meta[key] = value
            continue  # a plain comment
        cells = next(csv.reader(io.StringIO(line)))
        if header is None:
            header = _header(cells, number, source)
            continue
        row = _row(header, cells, number, source)
        if row.sig in seen:
            raise UserError(f"line {number}: duplicate signature {row.sig.describe()} "
                            f"(first at line {seen[row.sig]})", source)
        seen[row.sig] = number
        rows.append(row)
    if header is None:
        raise UserError(f"no header line (expected the columns {','.join(COLUMNS)})", source)
    return meta, header, rows


def _meta_problem(key: str, value: str) -> str | None:
    if key == "format" and value != FORMAT:
        return f"format: unsupported '{value}' (this release reads '{FORMAT}')"
    if key in INT_META and value:
        if not re.fullmatch(r"\d+", value):
            return f"{key}: expected an integer, got '{value}'"
        if key == "batch" and int(value) != 1:
            return f"batch: tables model batch 1 only, got {value}"
    if key in INT_META and value and len(value) > 18:
        return f"{key}: expected an integer of at most 18 digits, got {len(value)} digits"
    if key in FLOAT_META and value:
        number = _float(value)
        if number is None:
            return f"{key}: expected a finite number, got '{value[:40]}'"
        if key == "calibration_scale" and number <= 0:
            return f"calibration_scale: must be > 0, got {value}"
        if key == "percentile" and not 0 <= number <= 100:
            return f"percentile: must be in [0, 100], got {value}"
    return None


def _header(cells: list[str], number: int, source: str) -> list[str]:
    names = [c.strip() for c in cells]
    for name in names:
        if name not in COLUMNS and name not in OPTIONAL_COLUMNS:
            raise UserError(f"line {number}: unknown column '{name}'"
                            f"{did_you_mean(name, COLUMNS)}", source)
        if names.count(name) > 1:
            raise UserError(f"line {number}: column '{name}' given twice", source)
    for name in COLUMNS:
        if name not in names:
            raise UserError(f"line {number}: missing column '{name}'", source)
    return names


def _row(header: list[str], cells: list[str], number: int, source: str) -> Row:
    if len(cells) != len(header):
        raise UserError(f"line {number}: expected {len(header)} fields, got {len(cells)}",
                        source)
    values = {name: cell.strip() for name, cell in zip(header, cells)}

    def fail(message: str) -> UserError:
        return UserError(f"line {number}: {message}", source)

    key: dict[str, int | str] = {}
    for name in KEY_COLUMNS:
        raw = values[name]
        if name in INT_COLUMNS:
            if not re.fullmatch(r"-?\d+", raw):
                raise fail(f"{name}: expected an integer, got '{raw[:40]}'")
            if len(raw) > 9:  # far past any width or size
                raise fail(f"{name}: expected an integer of at most 9 digits")
            key[name] = int(raw)
        else:
            key[name] = raw
    sig = Signature(**key)  # type: ignore[arg-type]
    problem = check_signature(sig)
    if problem:
        raise fail(problem)
    raw = values["latency_ms"]
    if not raw:
        raise fail("latency_ms: empty (time this operator and fill it in)")
    latency = _float(raw)
    if latency is None or latency < 0:
        raise fail(f"latency_ms: expected a number >= 0, got '{raw}'")
    std = None
    if values["std_ms"]:
        std = _float(values["std_ms"])
        if std is None or std < 0:
            raise fail(f"std_ms: expected a number >= 0 or nothing, got '{values['std_ms']}'")
    count = None
    if values["count"]:
        if not re.fullmatch(r"\d{1,18}", values["count"]):
            raise fail(f"count: expected an integer >= 0 or nothing, got '{values['count']}'")
        count = int(values["count"])
    return Row(sig, latency, std, count, number, values.get("file") or None)


def _float(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
