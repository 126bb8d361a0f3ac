"""Reference networks shipped as Arch JSON in `search_spaces/reference/`, by name."""

from __future__ import annotations

from pathlib import Path

from search_spaces.arch import Arch, load_arch
from search_spaces.infra.checks import closest
from search_spaces.infra.errors import UserError

# The hand-designed nets every result is compared with (MobileNetV3 sec. 6): the
# report's reference rows, the operators a latency table must price for them.
BASELINES = ("mobilenet_v3_small", "mobilenet_v3_large")

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"


def reference_names() -> list[str]:
    """Names of the shipped reference nets (mobilenet_v3_large, mnasnet_a1, ...)."""
    return sorted(p.stem for p in REFERENCE_DIR.glob("*.json"))


def load_reference(name: str) -> Arch:
    """A reference net at 224x224 with 1000 classes, as published."""
    path = REFERENCE_DIR / f"{name}.json"
    if not path.is_file():
        hint = closest(name, reference_names())
        extra = f"; did you mean '{hint}'?" if hint else ""
        raise UserError(f"unknown reference net '{name}' "
                        f"(choose from {', '.join(reference_names())}{extra})")
    return load_arch(path)


def resolve_arch(spec: str | Path) -> Arch:
    """An Arch from a JSON file path or a reference net name."""
    text = str(spec)
    if text.endswith(".json") or Path(text).exists():
        return load_arch(text)
    return load_reference(text)
