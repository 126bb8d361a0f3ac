"""Ceilings on what a user's file may ask for, checked before anything is allocated.

Generous for real use (README, "Errors, limits and damaged files"): a request past one is a mistake or an attack,
and is refused as one `UserError` line naming the file and key instead of a run that
allocates terabytes or hangs. `limits.max_params` and `limits.max_data_gib` can be
raised per experiment; the others are fixed.
"""

from __future__ import annotations

import math
from typing import Any, Callable

MAX_TEXT_BYTES = 64 << 20  # one YAML, JSON or CSV file a user hands in
MAX_DEPTH = 64  # nesting of lists and mappings in one document
MAX_NODES = 1_000_000  # values in one document, YAML aliases expanded
MAX_INT = 2**63 - 1  # every integer; seeds are 0..MAX_INT
MAX_RESOLUTION = 1024  # input side in pixels
MAX_WIDTH = 8192  # channels of any layer, stem or head
MAX_BLOCK_LAYERS = 16  # base layers of one skeleton block
MAX_BLOCKS = 64  # blocks of one skeleton
MAX_LAYERS = 1024  # layers of one Arch
MAX_CLASSES = 100_000  # outputs of one classifier
MAX_PARAMS = 500_000_000  # default of `limits.max_params`
MAX_DATA_GIB = 16.0  # default of `limits.max_data_gib`: the images held in memory
MAX_IMAGES = 100_000_000  # images in one data set


def document_problem(data: Any, path: str = "") -> str | None:
    """The first problem of a parsed YAML/JSON document as `key.path: message`:
    nesting past `MAX_DEPTH`, more than `MAX_NODES` values (a YAML alias bomb shares
    its nodes, so they are counted as often as they appear), an integer past
    `MAX_INT`, or a non-finite number. Walked without recursion, so it is bounded."""
    stack: list[tuple[Any, str, int]] = [(data, path, 0)]
    nodes = 0
    while stack:
        value, where, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return f"{where or '(top level)'}: more than {MAX_NODES:,} values (YAML aliases " \
                   f"expanded); refused"
        if depth > MAX_DEPTH:
            return f"{where or '(top level)'}: nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    return f"{where or '(top level)'}: a key must be a plain value"
                stack.append((item, f"{where}.{key}" if where else str(key), depth + 1))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and abs(value) > MAX_INT:
            return f"{where or '(top level)'}: integer out of range (at most 2^63-1)"
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{where or '(top level)'}: must be a finite number, got {value}"
    return None


def at_most(limit: int | float, what: str = "") -> Callable[[float], str | None]:
    """A check that a number is at most `limit` (`what` names its unit)."""
    def check(value: float) -> str | None:
        if value > limit:
            return f"at most {limit:,}{' ' + what if what else ''}, got {value:,}"
        return None
    return check


def resolution(value: int) -> str | None:
    if value < 1:
        return f"must be > 0, got {value}"
    return at_most(MAX_RESOLUTION, "pixels")(value)


def width(value: int) -> str | None:
    """A channel count: 1..MAX_WIDTH."""
    if value < 1:
        return f"must be > 0, got {value}"
    return at_most(MAX_WIDTH, "channels")(value)


def class_count(value: int) -> str | None:
    if value < 1:
        return f"must be > 0, got {value}"
    return at_most(MAX_CLASSES, "classes")(value)


def seed(value: int) -> str | None:
    return None if 0 <= value <= MAX_INT else f"must be in 0..2^63-1, got {value}"


def image_count(value: int) -> str | None:
    if value < 1:
        return f"must be > 0, got {value}"
    return at_most(MAX_IMAGES, "images")(value)


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"
