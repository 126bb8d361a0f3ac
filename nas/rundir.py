"""The run directory: `<output_dir>/<name>/<timestamp>/`, one accessor per file.

    config.yaml                      the resolved config
    search/trials.csv                one row per child, append-only: the truth for resume
    search/archs/<hash>.json         every evaluated architecture
    search/controller.pt             controller state
    search/best.json                 the best child, a plain Arch JSON
    search/best_metrics.json  search/pareto.csv
    search/supernet.pt  search/rerank.csv   the supernet evaluator's weights and re-ranking
    netadapt/                        NetAdapt's folder (`netadapt.layout`)
    final/                           arch.json + weights.pt + model.onnx + metrics.json
                                     (+ preprocessing.json, references.json)
    ray/                             Ray Tune's own records (+ driver.json: our local Ray)
    .lock                            held by the one process writing the run (its pid)
    report.md  pareto.png
    proxy_check.csv / .json / .png   a `nas proxy-check` run's results instead

`search/trials.csv` is append-only and the truth for resume: one row per finished
trial, flushed and fsynced as it is written. A row torn by a kill is dropped on read.
Everything else in the directory is derived and rewritten atomically.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from netadapt.layout import NetAdaptDir
from search_spaces.infra.checks import plain_name
from search_spaces.infra.errors import UserError
from search_spaces.infra.files import TrialLog, atomic_write, cell, write_csv, write_json
from search_spaces.infra.weights import NetFolder

__all__ = ["FinalFolder", "RunDir", "TrialLog", "atomic_write", "cell", "write_csv",
           "write_json"]

CONFIG_FILE = "config.yaml"
LOCK_FILE = ".lock"
# The run this process last wrote to: where an interrupted command says to resume.
last_written: list[Path] = []


@dataclass(frozen=True)
class FinalFolder(NetFolder):
    """`final/`: the final network, its exports and what a deployment needs."""

    def model(self, fmt: str) -> Path:
        """An export: `model.onnx`, `model.pt2`."""
        return self.root / f"model.{fmt}"

    @property
    def preprocessing_json(self) -> Path:
        return self.root / "preprocessing.json"

    @property
    def references_json(self) -> Path:
        """The reference nets' test top-1 on the same budget (report.train_references)."""
        return self.root / "references.json"

    @property
    def checkpoint_pt(self) -> Path:
        """The final training's checkpoint while it runs (a kill resumes from it)."""
        return self.root / "train_checkpoint.pt"


class RunDir:
    """One run's folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def create(cls, output_dir: Path, name: str, config: dict[str, Any]) -> "RunDir":
        """A new timestamped run folder with the resolved config written into it.

        `name` is a plain name (`checks.plain_name`), so the run stays inside
        `output_dir`; the folder is made atomically, so two runs started in the same
        second get two folders (`-2`, `-3`, ...), never one."""
        problem = plain_name(name)
        if problem:
            raise UserError(f"name: {problem}")
        base = output_dir / name
        base.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1, 1000):
            root = base / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                root.mkdir()
                break
            except FileExistsError:
                continue
        else:
            raise UserError(f"cannot make a new run folder in {base}: 999 runs this second")
        atomic_write(root / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
        return cls(root)

    @classmethod
    def open(cls, root: str | Path) -> "RunDir":
        """An existing run (its folder or its config.yaml); a UserError otherwise, with
        the latest run inside when given an experiment's folder of runs."""
        root = Path(root)
        if root.name == CONFIG_FILE:
            root = root.parent
        if not cls.is_run(root):
            runs = sorted(p.parent for p in root.glob(f"*/{CONFIG_FILE}")) if root.is_dir() else []
            hint = f"; the latest run in it: {runs[-1]}" if runs else ""
            raise UserError(f"not a run directory (no {CONFIG_FILE}){hint}", str(root))
        return cls(root)

    @staticmethod
    def is_run(path: Path) -> bool:
        """Whether `path` is a run directory (it holds a config.yaml)."""
        return (path / CONFIG_FILE).is_file()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Be the run's one writer while the block runs: an exclusive OS lock on
        `.lock`, which names its holder's pid. A second writer is refused at once
        (`UserError`); a killed holder's lock goes with its process."""
        path = self.root / LOCK_FILE
        handle = open(path, "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise UserError(f"another nas command (pid {holder}) is writing this run; "
                                f"wait for it to finish or stop it", str(self.root)) from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            last_written[:] = [self.root]
            yield
        finally:
            handle.close()  # closing releases the lock

    # ------------------------------------------------------------ the run

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def ray_dir(self) -> Path:
        return self.root / "ray"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def pareto_png(self) -> Path:
        return self.root / "pareto.png"

    # ------------------------------------------------------------ search/

    @property
    def search_dir(self) -> Path:
        return self.root / "search"

    @property
    def trials_csv(self) -> Path:
        return self.search_dir / "trials.csv"

    def arch_json(self, arch_hash: str) -> Path:
        """`search/archs/<hash>.json`: an evaluated architecture."""
        return self.search_dir / "archs" / f"{arch_hash}.json"

    @property
    def controller_pt(self) -> Path:
        return self.search_dir / "controller.pt"

    @property
    def best_json(self) -> Path:
        """The search's best child as a plain Arch JSON (any command takes it)."""
        return self.search_dir / "best.json"

    @property
    def best_metrics_json(self) -> Path:
        return self.search_dir / "best_metrics.json"

    @property
    def pareto_csv(self) -> Path:
        return self.search_dir / "pareto.csv"

    @property
    def supernet_pt(self) -> Path:
        """The trained supernet's state dict (`search.evaluator: supernet`); its
        training checkpoints beside it, `supernet_checkpoint.pt`, while it runs."""
        return self.search_dir / "supernet.pt"

    @property
    def rerank_csv(self) -> Path:
        """The supernet's top children proxy-trained stand-alone, one row each."""
        return self.search_dir / "rerank.csv"

    # ------------------------------------------------------------ nas proxy-check

    @property
    def proxy_check_csv(self) -> Path:
        """A proxy check's scores, one row per architecture and evaluator."""
        return self.root / "proxy_check.csv"

    @property
    def proxy_check_json(self) -> Path:
        return self.root / "proxy_check.json"

    @property
    def proxy_check_png(self) -> Path:
        return self.root / "proxy_check.png"

    @property
    def supernet_train_s_json(self) -> Path:
        """How long a proxy check's supernet trained (its cost per child)."""
        return self.root / "supernet_train_s.json"

    def is_proxy_check(self) -> bool:
        return self.proxy_check_csv.is_file()

    # ------------------------------------------------------------ later stages

    @property
    def netadapt(self) -> NetAdaptDir:
        return NetAdaptDir(self.root / "netadapt")

    @property
    def final(self) -> FinalFolder:
        return FinalFolder(self.root / "final")
