"""Parameter and multiply-add (MAC) counts of an `Arch`, per piece and in total.

Convention: MACs count the multiply-adds of convolutions and linear layers (SE's two
1x1 convs included, biases excluded); BatchNorm (foldable into the conv), activations,
pooling, residual adds and SE's gating multiply are elementwise and not counted. This
is the convention behind torchvision's and the papers' published numbers.
Parameters count every learnable tensor (BN affine included, running stats not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from search_spaces.kinds import ConvPart, Part, kind_of, role_widths
from search_spaces.layer import Layer

if TYPE_CHECKING:  # types only: arch.py counts with this module
    from search_spaces.arch import Arch


@dataclass(frozen=True)
class Count:
    """One row of `nas info`: a piece of the network and its cost."""

    name: str
    desc: str
    in_hw: int
    out_hw: int
    out_ch: int
    params: int
    macs: int


def _conv(in_ch: int, out_ch: int, kernel: int, out_hw: int, groups: int = 1) -> tuple[int, int]:
    """(params incl. BN affine, MACs) of conv + BN."""
    weights = out_ch * (in_ch // groups) * kernel * kernel
    return weights + 2 * out_ch, weights * out_hw * out_hw


def _se(mid: int, squeeze: int) -> tuple[int, int]:
    return 2 * mid * squeeze + squeeze + mid, 2 * mid * squeeze


def _walk(layer: Layer, in_hw: int) -> Iterator[tuple[Part, int, int]]:
    """Each part of `layer` with the spatial size entering and leaving it."""
    hw = in_hw
    for part in kind_of(layer).parts(layer):
        out_hw = -(-hw // part.stride) if isinstance(part, ConvPart) else hw
        yield part, hw, out_hw
        hw = out_hw


def layer_cost(layer: Layer, in_hw: int) -> tuple[int, int]:
    """(params, MACs) of one layer at input size `in_hw`."""
    ch = role_widths(layer)
    params = macs = 0
    for part, _, out_hw in _walk(layer, in_hw):
        if isinstance(part, ConvPart):
            groups = ch[part.src] if part.depthwise else 1
            p, m = _conv(ch[part.src], ch[part.dst], part.kernel, out_hw, groups)
        else:
            p, m = _se(ch[part.on], layer.se_ch)
        params, macs = params + p, macs + m
    return params, macs


def activation_elements(layer: Layer, in_hw: int) -> int:
    """Activation elements a layer reads and writes: its input and every conv's
    output (what a memory-bound layer's latency scales with)."""
    ch = role_widths(layer)
    total = layer.in_ch * in_hw * in_hw
    for part, _, out_hw in _walk(layer, in_hw):
        if isinstance(part, ConvPart):
            total += ch[part.dst] * out_hw * out_hw
    return total


def layer_desc(layer: Layer) -> str:
    se = f" se{layer.se_ch}" if layer.se_ch else ""
    skip = "" if layer.skip == "none" else f" +{layer.skip}"
    return f"{kind_of(layer).describe(layer)} k{layer.kernel} s{layer.stride} {layer.act}{se}{skip}"


def count_rows(arch: Arch) -> list[Count]:
    """Per-piece counts: stem, each layer, head (conv, hidden, classifier)."""
    rows = []
    hw = arch.resolution
    stem_hw = -(-hw // arch.stem.stride)
    p, m = _conv(arch.in_ch, arch.stem.out_ch, arch.stem.kernel, stem_hw)
    rows.append(Count("stem", f"conv k{arch.stem.kernel} s{arch.stem.stride} {arch.stem.act}",
                      hw, stem_hw, arch.stem.out_ch, p, m))
    hw = stem_hw
    for i, (layer, in_hw) in enumerate(zip(arch.layers, arch.feature_sizes())):
        p, m = layer_cost(layer, in_hw)
        out_hw = -(-in_hw // layer.stride)
        rows.append(Count(f"layers[{i}]", layer_desc(layer), in_hw, out_hw, layer.out_ch, p, m))
        hw = out_hw
    head = arch.head
    last = arch.layers[-1].out_ch
    p, m = _conv(last, head.conv_ch, 1, hw)
    rows.append(Count("head.conv", f"conv k1 {head.act}", hw, hw, head.conv_ch, p, m))
    width = head.conv_ch
    if head.hidden_ch is not None:
        rows.append(Count("head.hidden", f"linear {head.act}", 1, 1, head.hidden_ch,
                          width * head.hidden_ch + head.hidden_ch, width * head.hidden_ch))
        width = head.hidden_ch
    rows.append(Count("head.classifier", "linear", 1, 1, arch.num_classes,
                      width * arch.num_classes + arch.num_classes, width * arch.num_classes))
    return rows


def count(arch: Arch) -> tuple[int, int]:
    """(parameters, MACs) of the whole network at its resolution."""
    rows = count_rows(arch)
    return sum(r.params for r in rows), sum(r.macs for r in rows)
