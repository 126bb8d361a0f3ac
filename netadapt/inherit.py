"""NetAdapt weight inheritance: slice a trained net's weights into a narrower `Arch`.

NetAdapt (Yang et al. 2018, sec. 3.2) keeps, for every narrowed width, the filters with
the largest L2 norm, and slices every tensor that consumes those channels the same way,
so the narrower net starts close to the trained one before short-term fine-tuning.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from search_spaces.arch import Arch, chain_problems
from search_spaces.builder import check_state, state_shapes
from search_spaces.channels import (STEM, Node, group_width, producers, residual_groups,
                                    tensors, widths)
from search_spaces.infra.errors import UserError
from search_spaces.kinds import kind_of


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
        problem = kind_of(b).problem(b)
        if problem:
            raise UserError(f"layers[{i}].{problem} in the new arch")
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
    before, after = widths(old), widths(new)
    graph = tensors(old)
    keep: dict[Node, Tensor] = {}
    for node, width in after.items():
        if width == before[node]:
            continue
        score = sum(state[name].detach().float().flatten(1).norm(dim=1)
                    for name in producers(graph, node))
        # Stable sort: ties keep the lower index, so the choice is deterministic.
        order = torch.sort(score, descending=True, stable=True).indices
        keep[node] = order[:width].sort().values
    return keep


def inherit(old: Arch, state: Mapping[str, Tensor], new: Arch) -> dict[str, Tensor]:
    """The state dict of `build_model(new)`, sliced from `old`'s trained `state`."""
    keep = keep_indices(old, state, new)
    roles = {t.prefix: (t.out, t.inp) for t in tensors(new)}
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
