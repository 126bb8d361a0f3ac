"""Value checks shared by every strict reader: each returns a problem or None.

A check takes an already type-checked value and says what is wrong with it in the
words an error line uses after the key path (`layers[3].kernel: ...`).
"""

from __future__ import annotations

import difflib
import json
import math
import reprlib
from typing import Any, Callable, Sequence

Check = Callable[[Any], "str | None"]


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxtuple = 2, 4, 6, 6
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 40


def bounded_repr(value: Any) -> str:
    """`repr(value)` cut to 40 characters, without rendering more of it than that (a
    YAML alias bomb or a 5,000-digit number never expands in an error line)."""
    text = _SHORT.repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def show(value: Any) -> str:
    """A value as an error line quotes it (JSON style), cut to 40 characters."""
    if isinstance(value, (list, dict, tuple)):  # not rendered in full: may be huge
        return bounded_repr(value)
    try:
        text = repr(value) if isinstance(value, str) else json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def closest(word: Any, options: Sequence[Any]) -> str | None:
    """The option `word` was most likely meant to be (the one did-you-mean rule)."""
    hint = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return hint[0] if hint else None


def did_you_mean(word: Any, options: Sequence[Any]) -> str:
    """` (did you mean 'x'?)` for the closest option, or an empty string."""
    hint = closest(word, options)
    return f" (did you mean '{hint}'?)" if hint else ""


def finite(value: float) -> str | None:
    return None if math.isfinite(value) else f"must be a finite number, got {value}"


def positive(value: float) -> str | None:
    return finite(value) or (None if value > 0 else f"must be > 0, got {value}")


def non_negative(value: float) -> str | None:
    return finite(value) or (None if value >= 0 else f"must be >= 0, got {value}")


def open_unit(value: float) -> str | None:
    """In (0, 1): ratios of a latency, of a data set."""
    return None if 0 < value < 1 else f"must be in (0, 1), got {value}"


def at_least_one(value: float) -> str | None:
    return finite(value) or (None if value >= 1 else f"must be >= 1, got {value}")


def percentage(value: float) -> str | None:
    return None if 0 <= value <= 100 else f"must be in [0, 100], got {value}"


def fraction(value: float) -> str | None:
    """In [0, 1): dropout rates, BN momentum."""
    return None if 0 <= value < 1 else f"must be in [0, 1), got {value}"


def plain_name(value: str) -> str | None:
    """A name that is one folder: a run's `name` never leaves `output_dir`."""
    if value in ("", ".", ".."):
        return f"{value!r} is not a folder name"
    if "/" in value or "\\" in value:
        return f"{show(value)}: a plain name, without path separators (output_dir says where)"
    if any(ord(c) < 32 for c in value):
        return f"{show(value)}: control characters are not allowed"
    if len(value.encode()) > 200:
        return f"at most 200 bytes, got {len(value.encode())}"
    return None


def one_of(options: Sequence[Any], what: str = "value") -> Check:
    """The value must be one of `options` (`unsupported kernel 4 (choose from 3, 5, 7)`)."""
    def check(value: Any) -> str | None:
        if value in options:
            return None
        listed = ", ".join(str(o) for o in options)
        return f"unsupported {what} {show(value)} (choose from {listed}){did_you_mean(value, options)}"
    return check


def named(options: Sequence[Any]) -> Check:
    """The value must be one of `options`, worded as for a `Literal` field (a choice
    whose options are a registry's keys, such as `search.evaluator`)."""
    def check(value: Any) -> str | None:
        if value in options:
            return None
        return (f"{bounded_repr(value)} is not one of {', '.join(map(str, options))}"
                f"{did_you_mean(value, options)}")
    return check


def each(check: Check) -> Check:
    """`check` on every item of a list (the first problem, with its index)."""
    def check_all(values: Sequence[Any]) -> str | None:
        for i, value in enumerate(values):
            problem = check(value)
            if problem:
                return f"item {i}: {problem}"
        return None
    return check_all
