"""NetAdapt-style width changes of an `Arch`, as the profiler and the checker need them.

NetAdapt (Yang et al. 2018) shrinks one thing at a time: the expansion width of one
layer (an mbconv's or a fused_mbconv's), or the width of one residual group (every layer output that is added
into the same residual must keep one width, so they shrink together).
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Iterator

from search_spaces.arch import Arch, Layer
from search_spaces.channels import STEM, expandable, group_width, residual_groups
from search_spaces.kinds import kind_of, mid_width


def set_group_width(arch: Arch, group: list[int], width: int) -> Arch:
    """`arch` with every node of `group` at `width`; consumers follow, SE is re-sized."""
    nodes = set(group)
    stem = replace(arch.stem, out_ch=width) if STEM in nodes else arch.stem
    layers = []
    for i, layer in enumerate(arch.layers):
        new = replace(layer, in_ch=width if i - 1 in nodes else layer.in_ch,
                      out_ch=width if i in nodes else layer.out_ch)
        new = kind_of(new).normalize(new)
        if new.se_ch and (new.in_ch, mid_width(new)) != (layer.in_ch, mid_width(layer)):
            new = replace(new, se_ch=_squeeze(arch, new, layer.se_ch))
        layers.append(new)
    return arch.replace(stem=stem, layers=tuple(layers))


def _squeeze(arch: Arch, layer: Layer, before: int) -> int:
    """The SE width after a cut: the net's SE rule, never wider than before (a hand-
    written Arch may hold narrower SE widths than its rule gives)."""
    return min(arch.se.squeeze(layer.in_ch, mid_width(layer)), before)


def set_expansion(arch: Arch, index: int, exp_ch: int) -> Arch:
    layer = arch.layers[index]
    new = replace(layer, exp_ch=exp_ch)
    if layer.se_ch:
        new = replace(new, se_ch=_squeeze(arch, new, layer.se_ch))
    layers = list(arch.layers)
    layers[index] = new
    return arch.replace(layers=tuple(layers))


def shrink_grid(width: int, step: int) -> list[int]:
    """Narrower widths, `step` apart, down to the narrowest positive one."""
    return list(range(width - step, 0, -step))


def shrink_variants(arch: Arch, step: int) -> Iterator[Arch]:
    """One-dimensional shrinks: each expansion alone, each residual group alone, over
    the whole grid (never the cross product)."""
    for i in expandable(arch):
        for width in shrink_grid(arch.layers[i].exp_ch or 0, step):
            yield set_expansion(arch, i, width)
    for group in residual_groups(arch):
        for width in shrink_grid(group_width(arch, group), step):
            yield set_group_width(arch, group, width)


def random_shrink(arch: Arch, rng: random.Random, step: int, shrinks: int = 3,
                  max_fraction: float = 0.5) -> Arch:
    """`shrinks` random NetAdapt steps: each cuts one expansion or one group by a
    multiple of `step`, at most `max_fraction` of its width (as NetAdapt would after a
    few iterations)."""
    for _ in range(shrinks):
        groups = residual_groups(arch)
        options = [("exp", i) for i in expandable(arch)] + [("group", g) for g in range(len(groups))]
        what, which = rng.choice(options)
        if what == "exp":
            width = arch.layers[which].exp_ch or 0
        else:
            width = group_width(arch, groups[which])
        cuts = [w for w in shrink_grid(width, step) if w >= width * (1 - max_fraction)]
        if not cuts:
            continue
        new = rng.choice(cuts)
        arch = set_expansion(arch, which, new) if what == "exp" else \
            set_group_width(arch, groups[which], new)
    return arch
