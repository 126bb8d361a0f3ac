"""`mbconv`: the inverted residual (MobileNetV2; MobileNetV3 sec. 5).

[1x1 expansion in -> exp, BN, act] when `expand`, depthwise KxK on the expansion, BN,
act, [SE], linear 1x1 projection exp -> out, BN. Without expansion the depthwise conv
works on the input channels and `exp_ch == in_ch`.
"""

from __future__ import annotations


from search_spaces.kinds.base import ConvPart, ExpansionKind, Part, se_parts
from search_spaces.layer import Layer



class MBConv(ExpansionKind):
    name = "mbconv"
    kernels = (3, 5, 7)
    alias = "in"
    space_ops = {"mbconv3": 3, "mbconv6": 6}

    def parts(self, layer: Layer) -> list[Part]:
        mid = self.mid_role(layer)
        expand = [ConvPart("expand", "in", "mid", 1, 1, layer.act)] if layer.expand else []
        return [*expand,
                ConvPart("depthwise", mid, mid, layer.kernel, layer.stride, layer.act,
                         depthwise=True),
                *se_parts(layer, mid),
                ConvPart("project", mid, "out", 1, 1, None)]
