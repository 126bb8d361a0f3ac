"""Weights as files: the `arch.json` + `weights.pt` folder, and the one reader and writer.

Wherever a network travels with weights it is a folder holding `arch.json` +
`weights.pt` (and, in a stage's output, `metrics.json`, written last). Every stage
writes its networks this way and every command takes them back, so these names
live here, below every package that reads or writes them.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from search_spaces.arch import Arch
from search_spaces.builder import check_state
from search_spaces.infra.errors import UserError
from search_spaces.infra.files import atomic_save

ARCH_FILE = "arch.json"
WEIGHTS_FILE = "weights.pt"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class NetFolder:
    """A folder holding a network: `arch.json`, `weights.pt`, and `metrics.json`."""

    root: Path

    @property
    def arch_json(self) -> Path:
        return self.root / ARCH_FILE

    @property
    def weights_pt(self) -> Path:
        return self.root / WEIGHTS_FILE

    @property
    def metrics_json(self) -> Path:
        """Written last by the stage that fills the folder: its presence means done."""
        return self.root / METRICS_FILE

    def complete(self) -> bool:
        return self.metrics_json.is_file()


def read_weights(path: str | os.PathLike, arch: Arch | None = None
                 ) -> dict[str, torch.Tensor]:
    """The state dict in `path` (`weights_only`, on the CPU); checked against `arch`
    when given. A missing, damaged or foreign file is a `UserError` naming it."""
    path = Path(path)
    state = load_torch(path)
    if not isinstance(state, dict):
        raise UserError(f"expected a state dict, found {type(state).__name__}", str(path))
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise UserError(f"entry {key!r} is not a named tensor (not a state dict)",
                            str(path))
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise UserError(f"entry {key!r} holds NaN or infinite values", str(path))
    if arch is not None:
        check_state(arch, state, str(path))
    return state


def load_torch(path: str | os.PathLike, what: str = "weights file") -> Any:
    """`torch.load` of a file of tensors (`weights_only`, on the CPU, torch's warnings
    silenced); missing, damaged or asking for a global, it is one `UserError` line."""
    path = Path(path)
    if not path.is_file():
        raise UserError("does not exist", str(path))
    try:
        with warnings.catch_warnings():  # a damaged file: one error, not torch's chatter
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise UserError(f"not a readable {what} ({why(err)})", str(path)) from None


def why(err: Exception) -> str:
    """One line for an error from a file reader: the global a refused pickle names,
    else the first line of the message."""
    text = str(err)
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if refused:
        return f"refused the global {refused.group(1)}: a weights file holds tensors only"
    refused = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    if refused:
        return f"refused by the weights-only reader: {refused.group(1)[:80]}"
    return (text.strip().splitlines() or [type(err).__name__])[0][:120]


def write_weights(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """`state` as CPU tensors in `path`, atomically: a kill never leaves half a file."""
    atomic_save({k: v.detach().cpu() for k, v in state.items()}, Path(path))
