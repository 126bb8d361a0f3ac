"""`conv`: a KxK full convolution in -> out, BN, activation, [SE on the output].

The plain convolution of MnasNet's op choices (sec. 4.1). SE, when `se_ch > 0`, acts
on the `out_ch` channels the convolution wrote.
"""

from __future__ import annotations


from search_spaces.kinds.base import ConvPart, LayerKind, Part, se_parts
from search_spaces.layer import Layer



class Conv(LayerKind):
    name = "conv"
    kernels = (1, 3, 5, 7)
    space_ops = {"conv": 0}

    def parts(self, layer: Layer) -> list[Part]:
        return [ConvPart("conv", "in", "out", layer.kernel, layer.stride, layer.act),
                *se_parts(layer, "out")]

    def mid_role(self, layer: Layer) -> str:
        return "out"
