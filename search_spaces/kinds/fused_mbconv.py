"""`fused_mbconv`: EfficientNetV2's Fused-MBConv (MobileNetV4's FusedIB).

The inverted residual with its 1x1 expansion and depthwise conv fused into one KxK
full convolution: KxK in -> exp with the stride, BN, act, [SE on the expansion],
linear 1x1 projection exp -> out, BN. Without expansion (EfficientNetV2's expansion
ratio 1) the KxK convolution writes `out_ch` directly, SE acts on it, there is no
projection, and `exp_ch == out_ch`. Faster than an mbconv on hardware where
depthwise convs are memory-bound, at more MACs.
"""

from __future__ import annotations


from search_spaces.kinds.base import ConvPart, ExpansionKind, Part, se_parts
from search_spaces.layer import Layer



class FusedMBConv(ExpansionKind):
    name = "fused_mbconv"
    kernels = (3, 5, 7)
    alias = "out"
    space_ops = {"fused3": 3, "fused6": 6}

    def parts(self, layer: Layer) -> list[Part]:
        if not layer.expand:
            return [ConvPart("conv", "in", "out", layer.kernel, layer.stride, layer.act),
                    *se_parts(layer, "out")]
        return [ConvPart("expand", "in", "mid", layer.kernel, layer.stride, layer.act),
                *se_parts(layer, "mid"),
                ConvPart("project", "mid", "out", 1, 1, None)]
