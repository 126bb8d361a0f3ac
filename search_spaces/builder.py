"""Build a `torch.nn.Module` from an `Arch`.

Modules are registered in the same order as torchvision's MobileNetV3 and MNASNet, so
a torchvision state dict loads into a reference net by position (`load_by_order`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from search_spaces.arch import Arch, BatchNorm, Head, Layer
from search_spaces.errors import UserError


def activation(name: str) -> nn.Module:
    """MobileNetV3 sec. 5.2: h-swish(x) = x * ReLU6(x + 3) / 6 (torch's Hardswish)."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    if name == "swish":
        return nn.SiLU(inplace=True)
    raise ValueError(f"unknown activation {name!r}")


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int, bn: BatchNorm,
            act: str | None, groups: int = 1) -> nn.Sequential:
    """KxK conv (same padding, no bias), BatchNorm, optional activation."""
    parts: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch, eps=bn.eps, momentum=bn.momentum),
    ]
    if act is not None:
        parts.append(activation(act))
    return nn.Sequential(*parts)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite: pool, 1x1 reduce (bias) + ReLU, 1x1 expand (bias), gate."""

    def __init__(self, channels: int, squeeze: int, gate: str) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)
        # MobileNetV3 sec. 5.2 replaces the sigmoid gate with h-sigmoid = ReLU6(x+3)/6.
        self.gate = nn.Hardsigmoid() if gate == "hsigmoid" else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = self.expand(F.relu(self.reduce(s), inplace=True))
        return x * self.gate(s)


class Block(nn.Module):
    """One `Layer` of the Arch (conv, dsconv or mbconv) with its residual."""

    def __init__(self, layer: Layer, bn: BatchNorm, se_gate: str) -> None:
        super().__init__()
        self.skip = layer.skip
        self.stride = layer.stride
        mid = layer.mid_ch
        body: OrderedDict[str, nn.Module] = OrderedDict()
        if layer.kind == "conv":
            body["conv"] = conv_bn(layer.in_ch, layer.out_ch, layer.kernel, layer.stride,
                                   bn, layer.act)
        else:
            if layer.kind == "mbconv" and layer.expand:
                body["expand"] = conv_bn(layer.in_ch, mid, 1, 1, bn, layer.act)
            body["depthwise"] = conv_bn(mid, mid, layer.kernel, layer.stride, bn, layer.act,
                                        groups=mid)
        if layer.se_ch:
            body["se"] = SqueezeExcite(mid, layer.se_ch, se_gate)
        if layer.kind != "conv":
            body["project"] = conv_bn(mid, layer.out_ch, 1, 1, bn, None)
        self.body = nn.Sequential(body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.skip == "identity":
            return out + x
        if self.skip == "pool":
            if self.stride > 1:
                x = F.avg_pool2d(x, self.stride, self.stride, ceil_mode=True)
            return out + x
        return out


class ClassifierHead(nn.Module):
    """The v2 (MobileNetV2/MnasNet) or v3 (MobileNetV3 efficient last stage) head."""

    def __init__(self, head: Head, in_ch: int, num_classes: int, bn: BatchNorm) -> None:
        super().__init__()
        self.conv = conv_bn(in_ch, head.conv_ch, 1, 1, bn, head.act)
        width = head.conv_ch
        self.hidden: nn.Module = nn.Identity()
        if head.kind == "v3":
            assert head.hidden_ch is not None
            # MobileNetV3 sec. 5.1: after pooling, a 1x1 (here Linear) without BN.
            self.hidden = nn.Sequential(nn.Linear(width, head.hidden_ch), activation(head.act))
            width = head.hidden_ch
        self.dropout = nn.Dropout(head.dropout)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).mean((2, 3))
        return self.classifier(self.dropout(self.hidden(x)))


class Network(nn.Module):
    """stem -> layers -> head, built from an `Arch` (kept as `.arch`)."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.arch = arch
        self.stem = conv_bn(arch.in_ch, arch.stem.out_ch, arch.stem.kernel, arch.stem.stride,
                            arch.bn, arch.stem.act)
        self.layers = nn.Sequential(*(Block(l, arch.bn, arch.se.gate) for l in arch.layers))
        last = arch.layers[-1].out_ch if arch.layers else arch.stem.out_ch
        self.head = ClassifierHead(arch.head, last, arch.num_classes, arch.bn)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


def _init_weights(model: nn.Module) -> None:
    # torchvision's MobileNetV3/MNASNet initialisation.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def build_model(arch: Arch) -> Network:
    """The PyTorch model for `arch` (freshly initialised)."""
    return Network(arch)


def state_shapes(arch: Arch) -> dict[str, torch.Size]:
    """The shape of every state-dict entry of `arch`'s model."""
    # Built on the meta device: shapes only, no memory or init time for the weights.
    with torch.device("meta"):
        return {k: v.shape for k, v in build_model(arch).state_dict().items()}


def check_state(arch: Arch, state: Mapping[str, torch.Tensor],
                source: str | None = None) -> None:
    """`state` must be a state dict for `arch`: a UserError naming the first key that
    is missing, of another shape, or unexpected (and `source`, the file, if given)."""
    expected = state_shapes(arch)
    for key, shape in expected.items():
        if key not in state:
            raise UserError(f"key '{key}' missing (weights for another network?)", source)
        if tuple(state[key].shape) != tuple(shape):
            raise UserError(f"key '{key}' has shape {tuple(state[key].shape)}, the network "
                            f"{tuple(shape)}", source)
    extra = [k for k in state if k not in expected]
    if extra:
        raise UserError(f"unexpected key '{extra[0]}' (weights for another network?)", source)


def load_by_order(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                  source: str = "<state dict>") -> None:
    """Load a state dict whose entries match `model`'s by position and shape.

    This is how a torchvision MobileNetV3/MNASNet checkpoint (pretrained ImageNet
    weights) loads into the matching reference net: the names differ, the order and
    shapes do not.
    """
    ours = model.state_dict()
    if len(ours) != len(state_dict):
        raise UserError(f"has {len(state_dict)} entries, the model {len(ours)}", source)
    mapped = OrderedDict()
    for i, ((name, mine), (theirs_name, theirs)) in enumerate(zip(ours.items(),
                                                                  state_dict.items())):
        if tuple(mine.shape) != tuple(theirs.shape):
            raise UserError(f"entry {i} '{theirs_name}' has shape {tuple(theirs.shape)}, "
                            f"the model's '{name}' {tuple(mine.shape)}", source)
        mapped[name] = theirs
    model.load_state_dict(mapped)
