"""The restricted unpickler for pickled data files (the CIFAR-10 batches).

The CIFAR-10 batches are pickles; a pickle can name any importable callable
(os.system, ...), so only the few globals a numpy array needs are resolved.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from search_spaces.infra.errors import UserError


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_globals().get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"refused to load global '{module}.{name}'")
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused a persistent reference")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2 moved numpy.core to numpy._core; old pickles still say numpy.core
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    table: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray,
                                         ("numpy", "dtype"): np.dtype,
                                         ("_codecs", "encode"): _latin1_bytes}
    for mod in ("numpy.core", "numpy._core"):
        table[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        if hasattr(numeric, "_frombuffer"):  # protocol-5 pickles of arrays
            table[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """How Python 3 spells bytes in protocol-2 pickles (`_codecs.encode(s, 'latin1')`);
    any other codec is refused rather than run."""
    if encoding.replace("-", "").lower() != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused codec '{encoding}'")
    return text.encode("latin1")


def restricted_unpickle(path: Path) -> Any:
    """Load a pickle file that may hold only plain containers and numpy arrays."""
    try:
        with open(path, "rb") as f:
            # latin1: the official batches were pickled by Python 2 (numpy's advice).
            return _ArrayUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as err:
        raise UserError(f"unsafe or invalid pickle: {err}", str(path)) from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise UserError(f"invalid pickle: {str(err)[:120]}", str(path)) from None
    except MemoryError:  # an array header claiming more than the file holds
        raise UserError("invalid pickle: an array larger than memory (a damaged file)",
                        str(path)) from None
