"""Builder details that a parameter count cannot show."""

import pytest
import torch

from search_spaces.arch import Arch, BatchNorm, Head, Layer, SERule, Stem
from search_spaces.builder import Block, activation, build_model
from search_spaces.counting import count
from search_spaces.reference import load_reference
from search_spaces.transforms import with_input, with_width_multiplier


def test_hswish_and_hsigmoid_match_the_paper():
    x = torch.linspace(-6, 6, 101)
    relu6 = torch.clamp(x + 3, 0, 6)
    assert torch.allclose(activation("hswish")(x.clone()), x * relu6 / 6)
    gate = build_model(load_reference("mobilenet_v3_small")).layers[0].body.se.gate
    assert torch.allclose(gate(x), relu6 / 6)


def tiny(layers, head=Head(kind="v2", conv_ch=32), se=SERule()):
    return Arch(resolution=16, num_classes=3, stem=Stem(out_ch=8, stride=1), layers=tuple(layers),
                head=head, bn=BatchNorm(), se=se)


def test_identity_and_pool_residuals_add_the_input():
    for skip, stride in [("identity", 1), ("pool", 2), ("pool", 1)]:
        layer = Layer(kind="mbconv", in_ch=8, exp_ch=16, out_ch=8, kernel=3, stride=stride,
                      skip=skip, expand=True)
        block = Block(layer, BatchNorm(), "sigmoid").eval()
        for p in block.body.parameters():  # zero the body: the block is its residual
            torch.nn.init.zeros_(p)
        x = torch.randn(1, 8, 7, 7)
        want = x if stride == 1 else torch.nn.functional.avg_pool2d(x, 2, 2, ceil_mode=True)
        assert torch.allclose(block(x), want)


def test_layer_kinds_have_the_documented_structure():
    conv = Block(Layer(kind="conv", in_ch=8, out_ch=16, kernel=3, se_ch=4), BatchNorm(), "sigmoid")
    assert list(conv.body._modules) == ["conv", "se"]
    ds = Block(Layer(kind="dsconv", in_ch=8, out_ch=16, kernel=5), BatchNorm(), "sigmoid")
    assert list(ds.body._modules) == ["depthwise", "project"]
    assert ds.body.depthwise[0].groups == 8 and len(ds.body.project) == 2  # linear projection
    mb = Block(Layer(kind="mbconv", in_ch=8, exp_ch=24, out_ch=8, kernel=3, se_ch=6,
                     expand=True), BatchNorm(), "hsigmoid")
    assert list(mb.body._modules) == ["expand", "depthwise", "se", "project"]
    assert mb.body.se.reduce.out_channels == 6 and mb.body.se.reduce.in_channels == 24


def test_bn_settings_reach_every_batchnorm():
    model = build_model(load_reference("mnasnet_b1"))
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-5 and m.momentum == 0.0003 for m in bns)


def test_v3_head_has_linear_without_bn():
    model = build_model(load_reference("mobilenet_v3_large"))
    hidden = model.head.hidden
    assert isinstance(hidden[0], torch.nn.Linear) and hidden[0].out_features == 1280
    assert isinstance(hidden[1], torch.nn.Hardswish)


def test_width_multiplier():
    arch = load_reference("mobilenet_v3_large")
    half = with_width_multiplier(arch, 0.5)
    assert half.stem.out_ch == 8
    assert [l.exp_ch for l in half.layers[:4]] == [8, 32, 40, 40]
    # SE re-sized by the MobileNetV3 rule: 1/4 of the expansion, multiple of 8.
    assert half.layers[3].se_ch == 16
    assert count(half)[0] < count(arch)[0]
    build_model(half)(torch.randn(1, 3, 64, 64))
    assert with_width_multiplier(arch, 1.0) == arch
    with pytest.raises(Exception, match="must be > 0"):
        with_width_multiplier(arch, 0)


def test_with_input_changes_resolution_classes_and_stem():
    arch = with_input(load_reference("mnasnet_a1"), resolution=32, num_classes=10, stem_stride=1)
    assert (arch.resolution, arch.num_classes, arch.stem.stride) == (32, 10, 1)
    assert arch.final_hw == 2
