"""The one error type for mistakes a user can make (bad YAML, JSON, tables, data)."""

from __future__ import annotations


class UserError(Exception):
    """A user mistake, reported as one line naming the file and the key or line.

    The CLI prints ``str(err)`` and exits with status 2; ``--debug`` shows the traceback.
    """

    def __init__(self, message: str, source: str | None = None) -> None:
        self.message = message
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)
