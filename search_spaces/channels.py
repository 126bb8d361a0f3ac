"""The channel graph of an `Arch`: which widths are independent, which tensors
consume them. What NetAdapt may cut, and what weight inheritance must slice.

A width node is `("group", g)` for residual group g (every layer output added into one
residual stream must keep one width), `("mid", i)` for layer i's own expansion width,
`("se", i)` for its squeeze width, `("head",)` and `("hidden",)` for the head's. The
tensors come from the builder's registration (`module_roles`), so a new layer kind
needs nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.arch import Arch
from search_spaces.builder import module_roles
from search_spaces.kinds import kind_of

STEM = -1  # the stem's output, as a width position next to the layers' outputs

Node = tuple[str, int] | tuple[str]


def residual_groups(arch: Arch) -> list[list[int]]:
    """Positions that must share one width: `STEM` or a layer index (its output).

    A layer with a residual (skip != none) adds its input to its output, so its output
    joins the group of its input.
    """
    groups: list[list[int]] = [[STEM]]
    for i, layer in enumerate(arch.layers):
        if layer.skip != "none":
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def group_width(arch: Arch, group: list[int]) -> int:
    node = group[0]
    return arch.stem.out_ch if node == STEM else arch.layers[node].out_ch


def expandable(arch: Arch) -> list[int]:
    """Indices of layers with an expansion width of their own (NetAdapt may shrink it)."""
    return [i for i, l in enumerate(arch.layers) if kind_of(l).expandable(l)]


def widths(arch: Arch) -> dict[Node, int]:
    """Every independently sized width of `arch`."""
    out: dict[Node, int] = {}
    for g, group in enumerate(residual_groups(arch)):
        out[("group", g)] = group_width(arch, group)
    for i, layer in enumerate(arch.layers):
        if kind_of(layer).expandable(layer):
            out[("mid", i)] = layer.exp_ch or 0
        if layer.se_ch:
            out[("se", i)] = layer.se_ch
    out[("head",)] = arch.head.conv_ch
    if arch.head.hidden_ch is not None:
        out[("hidden",)] = arch.head.hidden_ch
    return out


@dataclass(frozen=True)
class Tensor:
    """A weighted module of `build_model(arch)` and the width nodes of its output and
    input channels (None: a width that never changes, or a depthwise conv's input)."""

    prefix: str
    out: Node | None
    inp: Node | None
    produces: bool  # its output filters make the channels of `out`


def tensors(arch: Arch) -> list[Tensor]:
    """Every weighted module, in registration order."""
    group_of = {pos: ("group", g) for g, group in enumerate(residual_groups(arch))
                for pos in group}

    def node(width: tuple | None) -> Node | None:
        if width is None:
            return None
        return group_of[width[1]] if width[0] == "pos" else width

    return [Tensor(prefix, node(out), node(inp), produces)
            for prefix, (out, inp, produces) in module_roles(arch).items()]


def producers(graph: list[Tensor], node: Node) -> list[str]:
    """Weights of `graph` (`tensors(arch)`) whose output filters make the channels of
    `node` (a residual group has one per member: all of them write the same channels)."""
    return [f"{t.prefix}.weight" for t in graph if t.produces and t.out == node]
