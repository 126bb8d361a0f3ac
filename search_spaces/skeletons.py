"""Block skeletons of the factorized hierarchical space (MnasNet sec. 4.1).

A skeleton fixes, per block, the base width, base layer count and the first layer's
stride; the search then picks each block's ops and perturbs width and depth around it.
A block may fix some decisions (`fixed`), which are then not searched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BlockSpec:
    """One block: base output width, base layer count, first-layer stride."""

    width: int
    layers: int
    stride: int = 1
    fixed: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Skeleton:
    """Stem width, blocks, head widths (`head_hidden` only for the v3 last stage)."""

    stem: int
    blocks: list[BlockSpec]
    head_conv: int
    head_hidden: int | None = None


def _blocks(rows: list[tuple[int, int, int]]) -> list[BlockSpec]:
    return [BlockSpec(width=w, layers=n, stride=s) for w, n, s in rows]


# MobileNetV2's stages (t, c, n, s without t), the paper's default backbone.
MOBILENETV2 = Skeleton(stem=32, head_conv=1280, blocks=_blocks([
    (16, 1, 1), (24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1)]))

# MnasNet-A1's block widths and depths (MnasNet Fig. 7): A1 is one point of this space.
A1 = Skeleton(stem=32, head_conv=1280, blocks=_blocks([
    (16, 1, 1), (24, 2, 2), (40, 3, 2), (80, 4, 2), (112, 2, 1), (160, 3, 2), (320, 1, 1)]))

# MobileNetV3 stages (Tables 1 and 2), grouped by output width.
MOBILENETV3_LARGE = Skeleton(stem=16, head_conv=960, head_hidden=1280, blocks=_blocks([
    (16, 1, 1), (24, 2, 2), (40, 3, 2), (80, 4, 2), (112, 2, 1), (160, 3, 2)]))
MOBILENETV3_SMALL = Skeleton(stem=16, head_conv=576, head_hidden=1024, blocks=_blocks([
    (16, 1, 2), (24, 2, 2), (40, 3, 2), (48, 2, 1), (96, 3, 2)]))

PRESETS: dict[str, Skeleton] = {
    "mobilenetv2": MOBILENETV2,
    "a1": A1,
    "mobilenetv3_large": MOBILENETV3_LARGE,
    "mobilenetv3_small": MOBILENETV3_SMALL,
}
