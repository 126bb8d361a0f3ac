"""Whole-network transforms of an `Arch` that return a new `Arch`."""

from __future__ import annotations

from dataclasses import replace

from search_spaces.arch import Arch, chain_problems, make_divisible
from search_spaces.infra.errors import UserError
from search_spaces.kinds import kind_of, mid_width


def with_input(arch: Arch, resolution: int | None = None, num_classes: int | None = None,
               stem_stride: int | None = None) -> Arch:
    """The same network at another input resolution / number of classes / stem stride.

    At CIFAR size (32x32) a stride-1 stem keeps enough spatial resolution for the
    later stages (the usual way ImageNet nets are adapted to 32x32 inputs).
    """
    if resolution is not None and resolution < 1:
        raise UserError(f"resolution must be >= 1, got {resolution}")
    if num_classes is not None and num_classes < 1:
        raise UserError(f"number of classes must be >= 1, got {num_classes}")
    stem = arch.stem if stem_stride is None else replace(arch.stem, stride=stem_stride)
    return replace(arch, resolution=resolution or arch.resolution,
                   num_classes=num_classes or arch.num_classes, stem=stem)


def with_width_multiplier(arch: Arch, multiplier: float, divisor: int = 8) -> Arch:
    """Scale every channel count by `multiplier`, rounded to multiples of `divisor`.

    The classic MobileNet width multiplier, the baseline NetAdapt is compared with.
    Expansions scale with the layer (not recomputed from a ratio, so NetAdapt's
    non-uniform widths stay proportional); SE widths are re-sized by the net's SE rule;
    a layer without expansion keeps its `exp_ch` tied as its kind says; the head scales too (torchvision
    scales the MobileNetV3 last stage the same way).
    """
    if multiplier <= 0:
        raise UserError(f"width multiplier must be > 0, got {multiplier}")

    def scale(ch: int) -> int:
        return make_divisible(ch * multiplier, divisor)

    layers = []
    for layer in arch.layers:
        kind = kind_of(layer)
        exp_ch = scale(layer.exp_ch or 0) if kind.expandable(layer) else layer.exp_ch
        new = kind.normalize(replace(layer, in_ch=scale(layer.in_ch),
                                     out_ch=scale(layer.out_ch), exp_ch=exp_ch))
        se_ch = arch.se.squeeze(new.in_ch, mid_width(new)) if layer.se_ch else 0
        layers.append(replace(new, se_ch=se_ch))
    head = replace(arch.head, conv_ch=scale(arch.head.conv_ch),
                   hidden_ch=scale(arch.head.hidden_ch) if arch.head.hidden_ch else None)
    out = replace(arch, stem=replace(arch.stem, out_ch=scale(arch.stem.out_ch)),
                  layers=tuple(layers), head=head)
    assert not chain_problems(out)
    return out

