"""Files every stage writes: atomic replacements and append-only CSV logs.

An append-only log is the truth a killed run resumes from: each row is flushed and
fsynced as it is written, and a row torn by a kill is dropped on read. Everything
derived from it is rewritten atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from search_spaces.infra.errors import UserError, WriteError, read_user_text
from search_spaces.infra.strict import read_json

if TYPE_CHECKING:
    import pandas as pd


@contextmanager
def writing(path: Path, tmp: Path | None = None) -> Iterator[None]:
    """Turn a failed write of `path` (disk full, read-only, no such folder) into one
    `WriteError`, removing the temporary file `tmp` it was written through (also when
    an interrupt stops the write)."""
    try:
        yield
    except BaseException as err:
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        if isinstance(err, OSError):
            raise WriteError(path, err) from None
        raise


def save_figure(fig: Any, path: Path, dpi: int = 120) -> None:
    """A matplotlib figure as `path` (PNG), atomically, and closed."""
    import matplotlib.pyplot as plt  # optional (the plot extra): callers check first

    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # savefig wants the suffix
    try:
        with writing(path, tmp):
            fig.savefig(tmp, dpi=dpi)
            tmp.replace(path)
    finally:
        plt.close(fig)


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with writing(path, tmp):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save(obj)` through `atomic_write`: a kill never leaves half a file."""
    import torch  # only callers that save tensors pay for the import

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())


class TrialLog:
    """An append-only CSV of dict rows with a fixed column order.

    A log written before trailing columns were added reads with those columns empty
    and is appended to in its own columns, so old run directories resume."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns

    def read(self) -> list[dict[str, str]]:
        """Every complete row; a torn last line (killed mid-write) is cut off the file."""
        if not self.path.exists():
            return []
        keep = cut_torn_line(self.path)
        try:
            text = keep.decode()
        except UnicodeDecodeError as err:
            line = keep[: err.start].count(b"\n") + 1
            raise UserError(f"line {line}: not UTF-8 text (a damaged log)",
                            str(self.path)) from None
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None:
            return []
        if not header or header != self.columns[:len(header)]:
            raise UserError(f"line 1: unexpected columns {header}", str(self.path))
        rows = []
        for values in reader:
            if len(values) != len(header):
                raise UserError(f"line {reader.line_num}: {len(values)} fields, expected "
                                f"{len(header)} (a damaged log: remove the line to "
                                f"go on)", str(self.path))
            rows.append({c: "" for c in self.columns} | dict(zip(header, values)))
        return rows

    def _header(self) -> list[str]:
        with open(self.path, newline="") as fh:
            return next(csv.reader([fh.readline()]), self.columns)

    def append(self, row: dict[str, Any]) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        columns = self.columns if new else self._header()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow({k: cell(row.get(k)) for k in columns})
        # a row torn by a full disk is cut off on the next read, like a killed one
        append_text(self.path, buf.getvalue())


def append_text(path: Path, text: str) -> None:
    """Append `text` (whole lines) to `path`, flushed and fsynced before returning, so
    a row reported written survives a power cut; a disk error is a `WriteError`."""
    with writing(path), open(path, "a", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def cut_torn_line(path: Path) -> bytes:
    """The file's complete lines; a torn last line (a kill mid-append) is cut off the
    file itself, so the next append starts on a fresh line."""
    raw = path.read_bytes()
    keep = raw if raw.endswith(b"\n") or not raw else raw[: raw.rfind(b"\n") + 1]
    if len(keep) != len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(len(keep))
    return keep


def cell(value: Any) -> str:
    """A value as the trial log stores it (floats exactly, lists as JSON)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def to_json(data: Any, indent: int | None = 2) -> str:
    """Strict JSON text: a NaN or infinite number is `null` (JSON has no NaN, and strict
    parsers refuse Python's `NaN`), numpy scalars are plain numbers."""
    return json.dumps(_plain(data), indent=indent, allow_nan=False, default=str)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()  # a numpy or torch scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, to_json(data) + "\n")


def write_csv(path: Path, rows: Iterable[dict[str, Any]], columns: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: cell(row.get(k)) for k in columns})
    atomic_write(path, buf.getvalue())


# ------------------------------------------------------------------ reading back

def read_record(path: Path, keys: Sequence[str] = ()) -> dict[str, Any]:
    """A JSON object a stage wrote (`metrics.json`, `summary.json`, ...) holding `keys`;
    a damaged one is a `UserError` naming the file and the key."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise UserError("expected a JSON object (a damaged file)", str(path))
    for key in keys:
        if key not in data:
            raise UserError(f"{key}: missing (a damaged file)", str(path))
    return data


def read_frame(path: Path, columns: Sequence[str] = (),
               numeric: Sequence[str] = ()) -> "pd.DataFrame":
    """A CSV a stage wrote, as a frame with `columns`, `numeric` ones numbers; a
    damaged one is a `UserError` naming the file (and the line and column)."""
    import pandas as pd  # late: the Arch-reading modules that use this file never need it

    text = read_user_text(path)
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        why = str(err).strip().splitlines()[-1][:120] if str(err).strip() else "empty"
        raise UserError(f"not a readable CSV ({why})", str(path)) from None
    for col in columns:
        if col not in frame.columns:
            raise UserError(f"line 1: no column '{col}' (a damaged file)", str(path))
    for col in numeric:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() & frame[col].notna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise UserError(f"line {row + 2}: {col}: not a number: "
                            f"{str(frame[col].iloc[row])[:40]!r}", str(path))
        frame[col] = values
    return frame
