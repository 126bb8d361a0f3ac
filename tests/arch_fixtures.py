"""Small networks shared by the tests of several packages."""

from __future__ import annotations

from search_spaces.arch import Arch, Head, Layer, SERule, Stem


def small_arch() -> Arch:
    """Stem 16 -> [mbconv 16->24 s2] -> [mbconv 24->24 id] -> [mbconv 24->24 id] -> 40.

    Residual groups: {stem}, {0, 1, 2} (spans three blocks: two identity residuals join
    the first block's output), {3}.
    """
    se = SERule(gate="hsigmoid", ratio=0.25, of="mid", divisor=8)
    return Arch(resolution=16, num_classes=4, stem=Stem(16, 3, 1, "hswish"), se=se, layers=(
        Layer("mbconv", 16, 24, 3, 2, "relu", 0, "none", 64, True),
        Layer("mbconv", 24, 24, 5, 1, "hswish", 24, "identity", 96, True),
        Layer("mbconv", 24, 24, 3, 1, "hswish", 24, "identity", 72, True),
        Layer("mbconv", 24, 40, 3, 1, "relu", 0, "none", 72, True),
    ), head=Head("v3", 96, "hswish", 64, 0.0))
