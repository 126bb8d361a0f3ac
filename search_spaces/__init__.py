"""Architectures as data: `Arch`, its JSON form, the builder, counting, search spaces."""

from search_spaces.arch import Arch, BatchNorm, Head, Layer, SERule, Stem, load_arch, make_divisible
from search_spaces.builder import build_model, load_by_order
from search_spaces.counting import count, count_rows
from search_spaces.factorized import Decision, FactorizedSpace, make_space
from search_spaces.infra.errors import UserError
from search_spaces.reference import load_reference, reference_names, resolve_arch
from search_spaces.transforms import with_input, with_width_multiplier

__all__ = [
    "Arch", "BatchNorm", "Decision", "FactorizedSpace", "Head", "Layer", "SERule", "Stem",
    "UserError", "build_model", "count", "count_rows", "load_arch", "load_by_order",
    "load_reference", "make_divisible", "make_space", "reference_names", "resolve_arch",
    "with_input", "with_width_multiplier",
]
