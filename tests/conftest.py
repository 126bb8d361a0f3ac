import sys
from pathlib import Path

import pytest

# Make tests/helpers.py importable as `helpers`.
sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo() -> Path:
    return REPO
