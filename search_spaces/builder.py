"""Build a `torch.nn.Module` from an `Arch`.

Modules are registered in the same order as torchvision's MobileNetV3 and MNASNet, so
a torchvision state dict loads into a reference net by position (`load_by_order`).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from search_spaces.arch import Arch, BatchNorm, Head, Layer
from search_spaces.infra.errors import UserError
from search_spaces.kinds import ConvPart, kind_of, role_widths

# What a weighted module's channels are, for NetAdapt's weight inheritance
# (`search_spaces.channels`): (width of its output channels, width of its input
# channels, whether its output filters make that width). A width is ("pos", i) for
# the output of layer i (-1: the stem), ("mid", i) and ("se", i) for layer i's
# expansion and squeeze, ("head",), ("hidden",); None is a width that never changes
# (image channels, classes) or a depthwise conv's one channel per group.
Width = tuple
Roles = tuple["Width | None", "Width | None", bool]
ROLES_ATTR = "_nas_width_roles"


def _tag(module: nn.Module, out: Width | None, inp: Width | None, produces: bool) -> None:
    setattr(module, ROLES_ATTR, (out, inp, produces))


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
            act: str | None, groups: int = 1,
            roles: tuple[Width | None, Width | None] = (None, None)) -> nn.Sequential:
    """KxK conv (symmetric padding (K-1)//2, no bias), BatchNorm, optional activation.

    `roles`: the widths of the conv's (output, input) channels, for `module_roles`."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups,
                     bias=False)
    norm = nn.BatchNorm2d(out_ch, eps=bn.eps, momentum=bn.momentum)
    out, inp = roles
    depthwise = groups > 1
    _tag(conv, out, None if depthwise else inp, not depthwise)
    _tag(norm, out, None, False)
    parts: list[nn.Module] = [conv, norm]
    if act is not None:
        parts.append(activation(act))
    return nn.Sequential(*parts)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite: pool, 1x1 reduce (bias) + ReLU, 1x1 expand (bias), gate."""

    def __init__(self, channels: int, squeeze: int, gate: str,
                 roles: tuple[Width | None, Width | None] = (None, None)) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)
        on, se = roles
        _tag(self.reduce, se, on, True)
        _tag(self.expand, on, se, False)  # gates `on`'s channels, does not write them
        # MobileNetV3 sec. 5.2 replaces the sigmoid gate with h-sigmoid = ReLU6(x+3)/6.
        self.gate = nn.Hardsigmoid() if gate == "hsigmoid" else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = self.expand(F.relu(self.reduce(s), inplace=True))
        return x * self.gate(s)


class Block(nn.Module):
    """One `Layer` of the Arch, its kind's parts in order, with its residual.

    `index` is the layer's position in the network (it names its widths)."""

    def __init__(self, layer: Layer, bn: BatchNorm, se_gate: str, index: int = 0) -> None:
        super().__init__()
        self.skip = layer.skip
        self.stride = layer.stride
        ch = role_widths(layer)
        names = {"in": ("pos", index - 1), "out": ("pos", index), "mid": ("mid", index),
                 "se": ("se", index)}
        body: OrderedDict[str, nn.Module] = OrderedDict()
        for part in kind_of(layer).parts(layer):
            if isinstance(part, ConvPart):
                body[part.name] = conv_bn(
                    ch[part.src], ch[part.dst], part.kernel, part.stride, bn, part.act,
                    groups=ch[part.src] if part.depthwise else 1,
                    roles=(names[part.dst], names[part.src]))
            else:
                body[part.name] = SqueezeExcite(ch[part.on], layer.se_ch, se_gate,
                                                (names[part.on], names["se"]))
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

    def __init__(self, head: Head, in_ch: int, num_classes: int, bn: BatchNorm,
                 last: int = -1) -> None:
        super().__init__()
        self.conv = conv_bn(in_ch, head.conv_ch, 1, 1, bn, head.act,
                            roles=(("head",), ("pos", last)))
        width, top = head.conv_ch, ("head",)
        self.hidden: nn.Module = nn.Identity()
        if head.hidden_ch is not None:  # the v3 head
            # MobileNetV3 sec. 5.1: after pooling, a 1x1 (here Linear) without BN.
            linear = nn.Linear(width, head.hidden_ch)
            _tag(linear, ("hidden",), top, True)
            self.hidden = nn.Sequential(linear, activation(head.act))
            width, top = head.hidden_ch, ("hidden",)
        self.dropout = nn.Dropout(head.dropout)
        self.classifier = nn.Linear(width, num_classes)
        _tag(self.classifier, None, top, False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).mean((2, 3))
        return self.classifier(self.dropout(self.hidden(x)))


class Network(nn.Module):
    """stem -> layers -> head, built from an `Arch` (kept as `.arch`)."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.arch = arch
        self.stem = conv_bn(arch.in_ch, arch.stem.out_ch, arch.stem.kernel, arch.stem.stride,
                            arch.bn, arch.stem.act, roles=(("pos", -1), None))
        self.layers = nn.Sequential(*(Block(l, arch.bn, arch.se.gate, i)
                                      for i, l in enumerate(arch.layers)))
        last = arch.layers[-1].out_ch if arch.layers else arch.stem.out_ch
        self.head = ClassifierHead(arch.head, last, arch.num_classes, arch.bn,
                                   len(arch.layers) - 1)
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


@functools.lru_cache(maxsize=32)
def _meta_model(arch: Arch) -> Network:
    """`arch`'s model on the meta device: structure and shapes, no memory for weights.

    Cached (an Arch is immutable): NetAdapt asks for the same start network's shapes
    and roles once per proposal. Callers only read it."""
    with torch.device("meta"):
        return build_model(arch)


def module_roles(arch: Arch) -> dict[str, Roles]:
    """(output width, input width, produces) of every weighted module of
    `build_model(arch)`, by its registration name (`layers.3.body.expand.0`)."""
    return {name: getattr(m, ROLES_ATTR) for name, m in _meta_model(arch).named_modules()
            if hasattr(m, ROLES_ATTR)}


def state_shapes(arch: Arch) -> dict[str, torch.Size]:
    """The shape of every state-dict entry of `arch`'s model."""
    return {k: v.shape for k, v in _meta_model(arch).state_dict().items()}


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
