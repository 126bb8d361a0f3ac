"""Shared test helpers."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import torch


@torch.no_grad()
def fill_by_order(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every state-dict tensor a deterministic value from its position alone.

    Two models whose state dicts agree in order and shapes (ours and torchvision's)
    end up with identical weights, so their outputs can be compared. Scales keep
    activations finite through a deep net in eval mode.
    """
    g = torch.Generator().manual_seed(seed)
    for name, t in model.state_dict().items():
        if not t.is_floating_point():
            continue
        if name.endswith("running_var"):
            value = torch.rand(t.shape, generator=g) + 0.5
        elif name.endswith("running_mean") or t.dim() == 1 and not name.endswith("weight"):
            value = torch.randn(t.shape, generator=g) * 0.1
        elif t.dim() == 1:  # BN weight
            value = torch.rand(t.shape, generator=g) + 0.5
        else:
            fan_in = t[0].numel()
            value = torch.randn(t.shape, generator=g) / fan_in ** 0.5
        t.copy_(value)


def fixed_input(resolution: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, resolution, resolution, generator=g)


def kill_once_logged(proc: subprocess.Popen, folder: Path, pattern: str, lines: int,
                     timeout: float = 300) -> Path | None:
    """SIGKILL `proc` as soon as a file matching `pattern` under `folder` has at least
    `lines` lines; the file, or None when the process ended (or time ran out) first."""
    found = None
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        files = list(folder.glob(pattern))
        if files and files[0].read_text().count("\n") >= lines:
            found = files[0]
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return found
