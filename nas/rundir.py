"""The run directory: `<output_dir>/<name>/<timestamp>/`, its files and the trial log.

`search/trials.csv` is append-only and the truth for resume: one row per finished
trial, flushed and fsynced as it is written. A row torn by a kill is dropped on read.
Everything else in the directory is derived and rewritten atomically.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from search_spaces.errors import UserError
from search_spaces.files import TrialLog, atomic_write, cell, write_csv, write_json

__all__ = ["RunDir", "TrialLog", "atomic_write", "cell", "write_csv", "write_json"]

CONFIG_FILE = "config.yaml"


class RunDir:
    """One run's folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def create(cls, output_dir: Path, name: str, config: dict[str, Any]) -> "RunDir":
        """A new timestamped run folder with the resolved config written into it."""
        base = output_dir / name
        stamp = time.strftime("%Y%m%d-%H%M%S")
        root = base / stamp
        n = 1
        while root.exists():  # two runs in the same second
            n += 1
            root = base / f"{stamp}-{n}"
        root.mkdir(parents=True)
        atomic_write(root / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
        return cls(root)

    @classmethod
    def open(cls, root: str | Path) -> "RunDir":
        root = Path(root)
        if root.name == CONFIG_FILE:
            root = root.parent
        if not (root / CONFIG_FILE).is_file():
            runs = sorted(p.parent for p in root.glob(f"*/{CONFIG_FILE}")) if root.is_dir() else []
            hint = f"; the latest run in it: {runs[-1]}" if runs else ""
            raise UserError(f"not a run directory (no {CONFIG_FILE}){hint}", str(root))
        return cls(root)

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)
