"""The error types a user sees: `UserError` for a mistake in an input (bad YAML, JSON,
tables, data), `WriteError` for a file that could not be written; and the one reader
of a user's text file."""

from __future__ import annotations

from pathlib import Path

from search_spaces.infra.limits import MAX_TEXT_BYTES


class UserError(Exception):
    """A user mistake, reported as one line naming the file and the key or line.

    The CLI prints ``str(err)`` and exits with status 2; ``--debug`` shows the traceback.
    """

    def __init__(self, message: str, source: str | None = None) -> None:
        self.message = message
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class WriteError(Exception):
    """A file could not be written (disk full, read-only, a folder that cannot exist).

    The CLI prints one line naming the file and the cause and exits with status 1.
    Writers leave no temporary file behind and what was written before stays whole,
    so once there is room `nas resume` continues where the run stopped.
    """

    def __init__(self, path: Path | str, err: OSError) -> None:
        self.path = str(path)
        super().__init__(f"cannot write {path}: {err.strerror or err}")


def read_user_text(path: Path | str, what: str = "") -> str:
    """A user's text file as str; unreadable, oversized (`limits.MAX_TEXT_BYTES`) or
    non-UTF-8 files are a `UserError`.

    A UTF-8 byte-order mark (as spreadsheets write) is dropped.
    """
    path = Path(path)
    label = f"cannot read{' ' + what if what else ''}"
    try:
        size = path.stat().st_size
        if size > MAX_TEXT_BYTES:
            raise UserError(f"{size:,} bytes: larger than the {MAX_TEXT_BYTES >> 20} MiB a "
                            f"text file may have", str(path))
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{label}: {err.strerror}", str(path)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UserError(f"line {line}: not UTF-8 text (byte {err.start})", str(path)) from None
