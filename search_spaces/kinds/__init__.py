"""Layer kinds, one module each; `KINDS` maps a layer's `kind` to its implementation.

To add a kind: write its module here (fields, validation and parts: see `base.py`)
and add it to `KINDS`. The builder, counting, transforms, the search spaces, the
latency signatures and NetAdapt then handle it without further edits.
"""

from __future__ import annotations

from search_spaces.kinds.base import ConvPart, LayerKind, Part, SEPart, role_widths
from search_spaces.kinds.conv import Conv
from search_spaces.kinds.dsconv import DSConv
from search_spaces.kinds.fused_mbconv import FusedMBConv
from search_spaces.kinds.mbconv import MBConv
from search_spaces.layer import Layer


# In the order the JSON documents them; a plain dict, no registry magic.
KINDS: dict[str, LayerKind] = {k.name: k for k in (Conv(), DSConv(), MBConv(), FusedMBConv())}

# Factorized-space op name (`mbconv6`) -> (kind, expansion ratio).
SPACE_OPS: dict[str, tuple[LayerKind, int]] = {
    op: (kind, ratio) for kind in KINDS.values() for op, ratio in kind.space_ops.items()}


def kind_of(layer: Layer) -> LayerKind:
    return KINDS[layer.kind]


def mid_width(layer: Layer) -> int:
    """Channels SE acts on (and a depthwise conv, if any): the kind decides."""
    return role_widths(layer)[kind_of(layer).mid_role(layer)]


__all__ = ["KINDS", "SPACE_OPS", "ConvPart", "LayerKind", "Part", "SEPart", "kind_of",
           "mid_width", "role_widths"]
