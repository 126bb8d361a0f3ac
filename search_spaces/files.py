"""Files every stage writes: atomic replacements and append-only CSV logs.

An append-only log is the truth a killed run resumes from: each row is flushed and
fsynced as it is written, and a row torn by a kill is dropped on read. Everything
derived from it is rewritten atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable

from search_spaces.errors import UserError


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_save(obj: Any, path: Path) -> None:
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
        raw = self.path.read_bytes()
        keep = raw if raw.endswith(b"\n") else raw[: raw.rfind(b"\n") + 1]
        if len(keep) != len(raw):
            with open(self.path, "r+b") as fh:
                fh.truncate(len(keep))
        reader = csv.reader(io.StringIO(keep.decode()))
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
        with open(self.path, "a") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())


def cell(value: Any) -> str:
    """A value as the trial log stores it (floats exactly, lists as JSON)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def write_csv(path: Path, rows: Iterable[dict[str, Any]], columns: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: cell(row.get(k)) for k in columns})
    atomic_write(path, buf.getvalue())
