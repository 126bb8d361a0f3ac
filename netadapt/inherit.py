"""NetAdapt weight inheritance: slice a trained net's weights into a narrower `Arch`.

NetAdapt (Yang et al. 2018, sec. 3.2) keeps, for every narrowed width, the filters with
the largest L2 norm, and slices every tensor that consumes those channels the same way,
so the narrower net starts close to the trained one before short-term fine-tuning.
"""

from __future__ import annotations

from typing import Iterator, Mapping

import torch
from torch import Tensor

from latency.shrink import STEM, group_width, residual_groups
from search_spaces.arch import Arch, chain_problems
from search_spaces.builder import check_state, state_shapes
from search_spaces.errors import UserError

# A width node: ("group", g) for residual group g of `residual_groups(arch)`, ("mid", i)
# for the expansion of layer i, ("se", i) for its squeeze, ("head",) and ("hidden",).
Node = tuple[str, int] | tuple[str]


def _widths(arch: Arch) -> dict[Node, int]:
    """Every independently sized width of `arch`."""
    widths: dict[Node, int] = {}
    for g, group in enumerate(residual_groups(arch)):
        widths[("group", g)] = group_width(arch, group)
    for i, layer in enumerate(arch.layers):
        if layer.kind == "mbconv" and layer.expand:
            widths[("mid", i)] = layer.exp_ch or 0
        if layer.se_ch:
            widths[("se", i)] = layer.se_ch
    widths[("head",)] = arch.head.conv_ch
    if arch.head.kind == "v3":
        widths[("hidden",)] = arch.head.hidden_ch or 0
    return widths


def _modules(arch: Arch) -> Iterator[tuple[str, Node | None, Node | None]]:
    """(module prefix, node of its output channels, node of its input channels) for
    every weighted module of `build_model(arch)`; None is a width that never changes
    (image channels, classes) or a depthwise conv's per-group input."""
    group_of = {node: ("group", g) for g, group in enumerate(residual_groups(arch))
                for node in group}
    yield from (("stem.0", group_of[STEM], None), ("stem.1", group_of[STEM], None))
    for i, layer in enumerate(arch.layers):
        body, src, out = f"layers.{i}.body", group_of[i - 1], group_of[i]
        if layer.kind == "conv":
            mid = out
            yield from ((f"{body}.conv.0", out, src), (f"{body}.conv.1", out, None))
        else:
            # Without an expansion conv the depthwise works on the input channels.
            mid = ("mid", i) if layer.kind == "mbconv" and layer.expand else src
            if mid != src:
                yield from ((f"{body}.expand.0", mid, src), (f"{body}.expand.1", mid, None))
            yield from ((f"{body}.depthwise.0", mid, None), (f"{body}.depthwise.1", mid, None))
        if layer.se_ch:
            se = ("se", i)
            yield from ((f"{body}.se.reduce", se, mid), (f"{body}.se.expand", mid, se))
        if layer.kind != "conv":
            yield from ((f"{body}.project.0", out, mid), (f"{body}.project.1", out, None))
    last = group_of[len(arch.layers) - 1]
    yield from (("head.conv.0", ("head",), last), ("head.conv.1", ("head",), None))
    top: Node = ("head",)
    if arch.head.kind == "v3":
        yield "head.hidden.0", ("hidden",), top
        top = ("hidden",)
    yield "head.classifier", None, top


def _writer(arch: Arch, member: int) -> str:
    """The conv whose output filters write a residual group member's channels."""
    if member == STEM:
        return "stem.0"
    return f"layers.{member}.body.{'conv' if arch.layers[member].kind == 'conv' else 'project'}.0"


def _producers(arch: Arch, node: Node) -> list[str]:
    """Weights whose output filters make the channels of `node` (ranked by their norms)."""
    if node[0] == "group":
        return [f"{_writer(arch, m)}.weight" for m in residual_groups(arch)[node[1]]]
    return [{"mid": f"layers.{node[-1]}.body.expand.0.weight",
             "se": f"layers.{node[-1]}.body.se.reduce.weight",
             "head": "head.conv.0.weight", "hidden": "head.hidden.0.weight"}[node[0]]]


def _check_narrowing(old: Arch, new: Arch) -> None:
    """UserError naming the first field where `new` is not a narrowing of `old`."""
    def same(where: str, a: object, b: object) -> None:
        if a != b:
            raise UserError(f"{where}: {b} in the new arch, {a} in the old")

    def narrower(where: str, a: int | None, b: int | None) -> None:
        if (b or 0) > (a or 0):
            raise UserError(f"{where}: {b} in the new arch is wider than {a} in the old")

    for key in ("in_ch", "num_classes"):
        same(key, getattr(old, key), getattr(new, key))
    for key in ("kernel", "stride", "act"):
        same(f"stem.{key}", getattr(old.stem, key), getattr(new.stem, key))
    narrower("stem.out_ch", old.stem.out_ch, new.stem.out_ch)
    same("number of layers", len(old.layers), len(new.layers))
    for i, (a, b) in enumerate(zip(old.layers, new.layers)):
        for key in ("kind", "kernel", "stride", "act", "skip", "expand"):
            same(f"layers[{i}].{key}", getattr(a, key), getattr(b, key))
        if bool(a.se_ch) != bool(b.se_ch):  # a module appears or vanishes: nothing to slice
            raise UserError(f"layers[{i}].se_ch: {b.se_ch} in the new arch, {a.se_ch} in the "
                            "old (inheritance cannot add or remove SE)")
        for key in ("in_ch", "out_ch", "exp_ch", "se_ch"):
            narrower(f"layers[{i}].{key}", getattr(a, key), getattr(b, key))
        if b.kind == "mbconv" and not b.expand and b.exp_ch != b.in_ch:
            raise UserError(f"layers[{i}].exp_ch: {b.exp_ch} in the new arch, but a layer "
                            f"without expansion keeps in_ch ({b.in_ch})")
    for key in ("kind", "act"):
        same(f"head.{key}", getattr(old.head, key), getattr(new.head, key))
    narrower("head.conv_ch", old.head.conv_ch, new.head.conv_ch)
    narrower("head.hidden_ch", old.head.hidden_ch, new.head.hidden_ch)
    problems = chain_problems(new)
    for group in residual_groups(new):  # a residual add needs one width on both sides
        width = group_width(new, group)
        problems += [f"layers[{i}].out_ch: {new.layers[i].out_ch} but its residual group is "
                     f"{width} wide" for i in group if i != STEM and new.layers[i].out_ch != width]
    if problems:
        raise UserError(f"{problems[0]} in the new arch")


def keep_indices(old: Arch, state: Mapping[str, Tensor], new: Arch) -> dict[Node, Tensor]:
    """Sorted indices of the channels kept, for every width node narrowed from `old` to
    `new`: the largest L2-norm filters (a residual group ranks by the sum over its
    producers, since all of them write the same channels)."""
    _check_narrowing(old, new)
    check_state(old, state)
    before, after = _widths(old), _widths(new)
    keep: dict[Node, Tensor] = {}
    for node, width in after.items():
        if width == before[node]:
            continue
        score = sum(state[name].detach().float().flatten(1).norm(dim=1)
                    for name in _producers(old, node))
        # Stable sort: ties keep the lower index, so the choice is deterministic.
        order = torch.sort(score, descending=True, stable=True).indices
        keep[node] = order[:width].sort().values
    return keep


def inherit(old: Arch, state: Mapping[str, Tensor], new: Arch) -> dict[str, Tensor]:
    """The state dict of `build_model(new)`, sliced from `old`'s trained `state`."""
    keep = keep_indices(old, state, new)
    roles = {prefix: (out, inp) for prefix, out, inp in _modules(new)}
    out_state: dict[str, Tensor] = {}
    for key, shape in state_shapes(new).items():
        prefix, _ = key.rsplit(".", 1)
        if prefix not in roles:
            raise AssertionError(f"no slicing rule for '{key}'")
        t = state[key].detach()
        # dim 0 follows the module's output channels, dim 1 (conv/linear weights of
        # non-depthwise modules) its input channels; scalars (num_batches_tracked) copy.
        for dim, node in enumerate(roles[prefix]):
            if dim < t.dim() and node in keep:
                t = t.index_select(dim, keep[node].to(t.device))
        out_state[key] = t.clone()
        if out_state[key].shape != shape:
            raise ValueError(f"inherited '{key}' has shape {tuple(t.shape)}, "
                             f"the new arch needs {tuple(shape)}")
    return out_state
