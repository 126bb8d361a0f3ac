import os
import sys
import tempfile
from pathlib import Path

import pytest

# Make tests/helpers.py importable as `helpers`.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The timing lock is machine-wide: a test run must neither wait for a search or a
# benchmark elsewhere on the machine nor stall it, so tests get their own lock file
# (subprocesses inherit it).
os.environ["NAS_TIMING_LOCK"] = str(Path(tempfile.mkdtemp(prefix="nas-tests-")) / "timing.lock")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo() -> Path:
    return REPO
