"""Shared test helpers."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch


def strict_json(text: str) -> Any:
    """JSON as a strict parser reads it: `NaN` and `Infinity` are not JSON. Every
    `--json` / `--format json` output the tests read goes through this."""
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


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
                     timeout: float = 300) -> Path:
    """SIGKILL `proc` as soon as a file matching `pattern` under `folder` has at least
    `lines` lines, and return that file.

    The run's own progress is the trigger, so the kill lands at the same point however
    fast the machine is. The test fails (AssertionError) when no kill interrupted the
    run: it ended by itself, before its log had `lines` lines or in the moment between
    the check and the signal, or its log did not get there within `timeout` seconds.
    The exit status tells an interrupted run from a finished one: only a process still
    running when the signal is sent dies of SIGKILL (`send_signal` skips a process
    that has been reaped, and an exited, unreaped one ignores the signal).
    """
    found = None
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        log, have = _log_lines(folder, pattern)
        if have >= lines:
            found = log
            break
        time.sleep(0.02)  # the polling interval
    proc.send_signal(signal.SIGKILL)
    status = proc.wait()
    if status != -signal.SIGKILL:
        log, have = _log_lines(folder, pattern)
        raise AssertionError(
            f"the run ended by itself (exit status {status}) before it could be killed: "
            f"the kill was due at {lines} lines of {pattern}, the log has {have}"
            f"{f' ({log})' if log else ''}")
    if found is None:
        raise AssertionError(f"no {pattern} under {folder} had {lines} lines after "
                             f"{timeout:g} s (the run was killed then)")
    return found


def _log_lines(folder: Path, pattern: str) -> tuple[Path | None, int]:
    """The first file matching `pattern` under `folder` and its complete lines."""
    files = sorted(folder.glob(pattern))
    if not files:
        return None, 0
    return files[0], files[0].read_text().count("\n")


@contextmanager
def run_lock_held_elsewhere(run: Path) -> Iterator[int]:
    """Another process holding `run`'s writer lock for the block; yields its pid and
    kills it (SIGKILL) at the end, as a crash would."""
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", "import pathlib, time; from nas.rundir import RunDir\n"
         f"with RunDir(pathlib.Path({str(run)!r})).writing():\n"
         "    print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
