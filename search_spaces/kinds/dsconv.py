"""`dsconv`: depthwise KxK, BN, activation, [SE], linear pointwise 1x1 in -> out, BN.

MnasNet's SepConv (sec. 4.1): the same computation as an mbconv without expansion.
"""

from __future__ import annotations


from search_spaces.kinds.base import ConvPart, LayerKind, Part, se_parts
from search_spaces.layer import Layer



class DSConv(LayerKind):
    name = "dsconv"
    kernels = (3, 5, 7)
    space_ops = {"dsconv": 0}

    def parts(self, layer: Layer) -> list[Part]:
        return [ConvPart("depthwise", "in", "in", layer.kernel, layer.stride, layer.act,
                         depthwise=True),
                *se_parts(layer, "in"),
                ConvPart("project", "in", "out", 1, 1, None)]

    def mid_role(self, layer: Layer) -> str:
        return "in"
