"""Operator signatures: an `Arch` decomposed into the rows of a latency table.

A network's latency is modelled as the sum of its pieces: the stem, every layer (with
the spatial size entering it), and the head pieces (final 1x1 conv, global pooling,
the v3 hidden linear, the classifier). Each piece's cost depends only on its
signature, the ten table key columns, so equal pieces share one row.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields

import torch
from torch import nn

from search_spaces.arch import ACTIVATIONS, SKIPS, Arch, BatchNorm, Layer
from search_spaces.builder import Block, activation, conv_bn
from search_spaces.counting import layer_cost
from search_spaces.kinds import KINDS, kind_of

# Arch layer kinds plus the stem and head pieces, in network order.
LAYER_OPS = tuple(KINDS)
OPS = ("stem", *LAYER_OPS, "head_conv", "pool", "hidden", "classifier")
KEY_COLUMNS = ("op", "input_hw", "in_ch", "exp_ch", "out_ch", "kernel", "stride", "se_ch",
               "act", "skip")
OP_ACTS = ACTIVATIONS + ("none",)

# Timing needs only shapes, so any BN settings give the same cost.
_BN = BatchNorm()


@dataclass(frozen=True, order=True)
class Signature:
    """One table key. `exp_ch` is the width of the 1x1 expansion conv (0: none, as in
    an mbconv without expansion); `act` and `skip` are `none` where a piece has none."""

    op: str
    input_hw: int
    in_ch: int
    exp_ch: int
    out_ch: int
    kernel: int
    stride: int
    se_ch: int
    act: str
    skip: str

    def key(self) -> tuple:
        return astuple(self)

    def as_dict(self) -> dict[str, int | str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def describe(self) -> str:
        """Short human form: `mbconv hw16 24>72>40 k5 s2 se24 hswish skip=none`."""
        widths = f"{self.in_ch}>{self.exp_ch}>{self.out_ch}" if self.exp_ch else \
            f"{self.in_ch}>{self.out_ch}"
        se = f" se{self.se_ch}" if self.se_ch else ""
        return (f"{self.op} hw{self.input_hw} {widths} k{self.kernel} s{self.stride}{se} "
                f"{self.act} skip={self.skip}")

    def slug(self) -> str:
        """A file-name-safe unique name (export-ops names its ONNX files by it)."""
        return (f"{self.op}_hw{self.input_hw}_i{self.in_ch}_e{self.exp_ch}_o{self.out_ch}"
                f"_k{self.kernel}_s{self.stride}_se{self.se_ch}_{self.act}_{self.skip}")

    def shape(self) -> tuple:
        """Everything but the channel counts (and whether it has an expansion and an SE):
        rows of one shape are what interpolation works between."""
        return (self.op, self.input_hw, self.kernel, self.stride, self.act, self.skip,
                self.exp_ch > 0, self.se_ch > 0)

    @property
    def is_layer(self) -> bool:
        return self.op in LAYER_OPS

    def layer(self) -> Layer:
        """The Arch layer this signature describes (layer ops only)."""
        return KINDS[self.op].from_row(self.in_ch, self.exp_ch, self.out_ch, self.kernel,
                                       self.stride, self.act, self.se_ch, self.skip)

    def macs(self) -> int:
        """Multiply-adds, in the convention of `search_spaces.counting`."""
        if self.is_layer:
            return layer_cost(self.layer(), self.input_hw)[1]
        out_hw = -(-self.input_hw // self.stride)
        if self.op in ("stem", "head_conv"):
            return self.in_ch * self.out_ch * self.kernel ** 2 * out_hw ** 2
        if self.op == "pool":
            return 0
        return self.in_ch * self.out_ch  # hidden, classifier: linear layers

    def input_shape(self) -> tuple[int, ...]:
        """Batch-1 input of the piece: NCHW, or (1, C) after pooling."""
        if self.op in ("hidden", "classifier"):
            return (1, self.in_ch)
        return (1, self.in_ch, self.input_hw, self.input_hw)


def layer_signature(layer: Layer, input_hw: int) -> Signature:
    exp_ch = kind_of(layer).row_exp_ch(layer)
    return Signature(layer.kind, input_hw, layer.in_ch, exp_ch, layer.out_ch,
                     layer.kernel, layer.stride, layer.se_ch, layer.act, layer.skip)


def stem_signature(arch: Arch) -> Signature:
    s = arch.stem
    return Signature("stem", arch.resolution, arch.in_ch, 0, s.out_ch, s.kernel, s.stride, 0,
                     s.act, "none")


def head_signatures(arch: Arch) -> list[Signature]:
    """Final conv, pooling, [hidden linear], classifier. Dropout is free at inference."""
    hw, head = arch.final_hw, arch.head
    last = arch.layers[-1].out_ch if arch.layers else arch.stem.out_ch
    sigs = [Signature("head_conv", hw, last, 0, head.conv_ch, 1, 1, 0, head.act, "none"),
            Signature("pool", hw, head.conv_ch, 0, head.conv_ch, 1, 1, 0, "none", "none")]
    width = head.conv_ch
    if head.hidden_ch is not None:  # the v3 head
        sigs.append(Signature("hidden", 1, width, 0, head.hidden_ch, 1, 1, 0, head.act, "none"))
        width = head.hidden_ch
    sigs.append(Signature("classifier", 1, width, 0, arch.num_classes, 1, 1, 0, "none", "none"))
    return sigs


def signatures(arch: Arch) -> list[Signature]:
    """Every piece of `arch` in network order; repeated pieces appear repeatedly."""
    sigs = [stem_signature(arch)]
    sigs.extend(layer_signature(l, hw) for l, hw in zip(arch.layers, arch.feature_sizes()))
    sigs.extend(head_signatures(arch))
    return sigs


class _Pool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))  # what the builder's head does


def build_op(sig: Signature, se_gate: str = "sigmoid") -> nn.Module:
    """The torch module for one piece, the same modules `build_model` uses (eval mode)."""
    if sig.op in ("stem", "head_conv"):
        module: nn.Module = conv_bn(sig.in_ch, sig.out_ch, sig.kernel, sig.stride, _BN,
                                    sig.act)
    elif sig.is_layer:
        module = Block(sig.layer(), _BN, se_gate)
    elif sig.op == "pool":
        module = _Pool()
    elif sig.op == "hidden":
        module = nn.Sequential(nn.Linear(sig.in_ch, sig.out_ch), activation(sig.act))
    elif sig.op == "classifier":
        module = nn.Linear(sig.in_ch, sig.out_ch)
    else:
        raise ValueError(f"unknown op {sig.op!r}")
    return module.eval()


def check_signature(sig: Signature) -> str | None:
    """What is wrong with a signature's values (for table parsing), or None."""
    if sig.op not in OPS:
        return f"op: unknown op '{sig.op}' (choose from {', '.join(OPS)})"
    for name in ("input_hw", "in_ch", "out_ch", "kernel"):
        if getattr(sig, name) < 1:
            return f"{name}: must be >= 1, got {getattr(sig, name)}"
    for name in ("exp_ch", "se_ch"):
        if getattr(sig, name) < 0:
            return f"{name}: must be >= 0, got {getattr(sig, name)}"
    if sig.stride not in (1, 2):
        return f"stride: must be 1 or 2, got {sig.stride}"
    if sig.act not in OP_ACTS:
        return f"act: unknown activation '{sig.act}' (choose from {', '.join(OP_ACTS)})"
    if sig.skip not in SKIPS:
        return f"skip: unknown skip '{sig.skip}' (choose from {', '.join(SKIPS)})"
    needs_act = sig.op not in ("pool", "classifier")
    if needs_act and sig.act == "none":
        return f"act: a {sig.op} row needs an activation"
    if not needs_act and sig.act != "none":
        return f"act: a {sig.op} row has no activation, use 'none'"
    if not sig.is_layer and sig.skip != "none":
        return f"skip: only layers have a residual, a {sig.op} row needs 'none'"
    if sig.exp_ch and not (sig.is_layer and KINDS[sig.op].has_expansion):
        with_exp = ", ".join(k for k, v in KINDS.items() if v.has_expansion)
        return (f"exp_ch: only {with_exp} rows have an expansion, got {sig.exp_ch} "
                f"for {sig.op}")
    return None
