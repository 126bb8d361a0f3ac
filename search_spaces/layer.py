"""The value types an `Arch` is made of: stem, layers, head, BatchNorm and SE rules.

Plain frozen data with no behaviour that depends on a layer's kind, so the kinds
(`search_spaces/kinds/`) can build `Layer`s and `arch.py` can check them without
either importing the other in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of `divisor`, never below it or 10% under `value`.

    The rounding rule of MobileNetV2/V3 and torchvision (`_make_divisible`).
    """
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


@dataclass(frozen=True)
class BatchNorm:
    """BatchNorm settings in PyTorch's convention (momentum = 1 - TF decay)."""

    eps: float = 1e-5
    momentum: float = 0.1


@dataclass(frozen=True)
class SERule:
    """How a family sizes squeeze-and-excite, so transforms can re-size it.

    `of: mid` sizes from the depthwise width (MobileNetV3 sec. 5.3: 1/4 of the
    expansion, rounded to a multiple of 8); `of: in` from the layer input (MnasNet:
    int(input_filters * se_ratio)). `divisor: 1` means plain truncation, at least 1.
    """

    gate: str = "sigmoid"
    ratio: float = 0.25
    of: str = "in"
    divisor: int = 1

    def squeeze(self, in_ch: int, mid_ch: int) -> int:
        base = mid_ch if self.of == "mid" else in_ch
        raw = int(base * self.ratio)
        return make_divisible(raw, self.divisor) if self.divisor > 1 else max(1, raw)


@dataclass(frozen=True)
class Stem:
    """KxK convolution from the input image, BN, activation."""

    out_ch: int
    kernel: int = 3
    stride: int = 2
    act: str = "relu"


@dataclass(frozen=True)
class Layer:
    """One searchable layer of kind `kind` (`search_spaces/kinds/`: what each computes).

    `se_ch` is the absolute squeeze width (0 = no SE); `skip` is `identity` (residual
    add), `pool` (residual through average pooling, for strided layers) or `none`.
    `exp_ch` and `expand` exist for kinds with an expansion (`mbconv`, `fused_mbconv`).
    """

    kind: str
    in_ch: int
    out_ch: int
    kernel: int
    stride: int = 1
    act: str = "relu"
    se_ch: int = 0
    skip: str = "none"
    exp_ch: int | None = None  # kinds with an expansion only
    expand: bool | None = None  # kinds with an expansion only


@dataclass(frozen=True)
class Head:
    """`v2`: 1x1 conv, BN, act, pool, dropout, classifier (MobileNetV2/MnasNet).

    `v3`: the MobileNetV3 efficient last stage: 1x1 conv, BN, act, pool, a linear layer
    of `hidden_ch` without BN + act, dropout, classifier.
    """

    kind: str
    conv_ch: int
    act: str = "relu"
    hidden_ch: int | None = None  # v3 only
    dropout: float = 0.2
