"""The kill helper of the kill -9 tests: it must tell a killed run from a finished one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import kill_once_logged

# Writes `n` lines to log.csv, then either exits or blocks on stdin until killed.
_WRITER = """
import sys
n, block = int(sys.argv[1]), sys.argv[2] == "block"
with open(sys.argv[3], "w") as f:
    for i in range(n):
        f.write(f"{i}\\n")
        f.flush()
if block:
    sys.stdin.read()
"""


def _start(tmp_path: Path, n: int, block: bool) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(n),
                             "block" if block else "exit", str(tmp_path / "log.csv")],
                            stdin=subprocess.PIPE)


def test_a_run_still_going_is_killed_and_its_log_returned(tmp_path: Path) -> None:
    proc = _start(tmp_path, 3, block=True)
    assert kill_once_logged(proc, tmp_path, "log.csv", 3, timeout=60) == tmp_path / "log.csv"
    assert proc.returncode < 0


def test_a_run_that_ends_before_its_log_is_long_enough_fails(tmp_path: Path) -> None:
    proc = _start(tmp_path, 2, block=False)
    with pytest.raises(AssertionError, match=r"ended by itself \(exit status 0\).* has 2"):
        kill_once_logged(proc, tmp_path, "log.csv", 3, timeout=60)


def test_a_run_that_finished_before_the_signal_fails(tmp_path: Path) -> None:
    # The race the helper must not hide: the log is long enough, but the run is over.
    proc = _start(tmp_path, 3, block=False)
    proc.wait()
    with pytest.raises(AssertionError, match=r"ended by itself \(exit status 0\)"):
        kill_once_logged(proc, tmp_path, "log.csv", 3, timeout=60)


def test_a_log_that_never_gets_there_fails_after_the_timeout(tmp_path: Path) -> None:
    proc = _start(tmp_path, 1, block=True)
    with pytest.raises(AssertionError, match="had 3 lines after 0.3 s"):
        kill_once_logged(proc, tmp_path, "log.csv", 3, timeout=0.3)
    assert proc.returncode < 0
