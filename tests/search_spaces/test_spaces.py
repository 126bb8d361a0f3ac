"""The factorized hierarchical spaces: decisions, decoding, size, sampling, A1."""

import random
from itertools import product

import pytest
import torch

from search_spaces.builder import build_model
from search_spaces.factorized import FactorizedSpace, canonical_skip, make_space
from search_spaces.infra.errors import UserError
from search_spaces.kinds import mid_width
from search_spaces.reference import load_reference
from search_spaces.skeletons import BlockSpec, Skeleton

A1_CHOICES = [  # (op, kernel, se, skip) per block, MnasNet Fig. 7
    ("dsconv", 3, 0.0, "none"), ("mbconv6", 3, 0.0, "identity"), ("mbconv3", 5, 0.25, "identity"),
    ("mbconv6", 3, 0.0, "identity"), ("mbconv6", 3, 0.25, "identity"),
    ("mbconv6", 5, 0.25, "identity"), ("mbconv6", 3, 0.0, "identity"),
]


def a1_values():
    values = {}
    for i, (op, k, se, skip) in enumerate(A1_CHOICES):
        values.update({f"block{i}/op": op, f"block{i}/kernel": k, f"block{i}/se": se,
                       f"block{i}/skip": skip, f"block{i}/width": 1.0, f"block{i}/layers": 0})
    return values


def test_a1_is_a_point_of_the_a1_skeleton():
    arch = make_space("mnasnet", "a1").decode(a1_values())
    assert arch.replace(name="mnasnet_a1") == load_reference("mnasnet_a1")


def test_decisions_are_named_and_ordered():
    space = make_space("mnasnet")
    names = [d.name for d in space.decisions]
    assert names[:6] == ["block0/op", "block0/kernel", "block0/se", "block0/skip",
                         "block0/width", "block0/layers"]
    assert len(names) == 7 * 6
    v3 = make_space("mobilenetv3")
    assert [d.name for d in v3.decisions][:7][-1] == "block0/act"
    assert v3.decisions[6].options == ("relu", "hswish")


def test_indices_round_trip():
    space = make_space("mobilenetv3", "mobilenetv3_small")
    rng = random.Random(3)
    values = space.sample(rng)
    idx = space.indices_from_values(values)
    assert space.values_from_indices(idx) == values
    assert space.decode_indices(idx) == space.decode(values)


def test_sampling_is_seeded_and_builds_at_32_and_224():
    for name in ("mnasnet", "mobilenetv3"):
        for res, stride in ((32, 1), (224, 2)):
            space = make_space(name, resolution=res, stem_stride=stride, num_classes=10)
            a = space.sample(random.Random(7))
            assert a == space.sample(random.Random(7))
            arch = space.decode(a)
            out = build_model(arch).eval()(torch.randn(1, 3, res, res))
            assert out.shape == (1, 10)


def test_mobilenetv3_space_blocks():
    space = make_space("mobilenetv3")
    rng = random.Random(0)
    for _ in range(20):
        arch = space.decode(space.sample(rng))
        assert arch.stem.out_ch == 16 and arch.stem.act == "hswish"
        assert arch.head.kind == "v3" and arch.se.gate == "hsigmoid"
        for layer in arch.layers:
            if layer.se_ch:  # MobileNetV3 sec. 5.3: 1/4 of the expansion, multiple of 8
                assert layer.se_ch % 8 == 0 and abs(layer.se_ch - mid_width(layer) / 4) <= 8


def test_mnasnet_se_uses_block_input():
    values = a1_values()
    arch = make_space("mnasnet", "a1").decode(values)
    assert arch.layers[3].se_ch == 24 // 4  # first layer of block 2: input 24


def test_decode_rejects_bad_values():
    space = make_space("mnasnet")
    values = a1_values()
    with pytest.raises(UserError, match="block2/kernel: 7 is not one of 3, 5"):
        space.decode({**values, "block2/kernel": 7})
    with pytest.raises(UserError, match="unknown decision 'block9/op'"):
        space.decode({**values, "block9/op": "conv"})
    values.pop("block0/op")
    with pytest.raises(UserError, match="missing decision 'block0/op'"):
        space.decode(values)


@pytest.mark.parametrize("skip, in_ch, out_ch, stride, want", [
    ("identity", 16, 16, 1, "identity"), ("identity", 16, 24, 1, "none"),
    ("identity", 16, 16, 2, "none"), ("pool", 16, 16, 2, "pool"), ("pool", 16, 16, 1, "identity"),
    ("pool", 16, 24, 2, "none"), ("none", 16, 16, 1, "none"),
])
def test_canonical_skip(skip, in_ch, out_ch, stride, want):
    assert canonical_skip(skip, in_ch, out_ch, stride) == want


def brute_force_size(space):
    archs = {space.decode(space.values_from_indices(idx)).hash()
             for idx in product(*(range(len(d.options)) for d in space.decisions))}
    return len(archs)


def test_size_counts_distinct_architectures():
    # Two blocks, ops fixed so that enumerating every decision vector stays cheap.
    fixed = {"op": "mbconv3", "kernel": 3}
    skeleton = Skeleton(stem=16, head_conv=64, blocks=[
        BlockSpec(width=16, layers=1, stride=1, fixed=fixed),
        BlockSpec(width=24, layers=2, stride=2, fixed=fixed)])
    space = FactorizedSpace("mnasnet", skeleton, resolution=32)
    assert space.raw_size() == (2 * 3 * 3 * 3) ** 2
    assert space.size() == brute_force_size(space)
    assert space.size() < space.raw_size()


def test_fixed_decisions_are_not_searched():
    skeleton = Skeleton(stem=16, head_conv=64, blocks=[
        BlockSpec(width=16, layers=1, fixed={"op": "dsconv", "kernel": 3, "se": 0.0,
                                             "skip": "none", "width": 1.0, "layers": 0}),
        BlockSpec(width=24, layers=2, stride=2)])
    space = FactorizedSpace("mnasnet", skeleton, resolution=32)
    assert all(d.name.startswith("block1/") for d in space.decisions)
    arch = space.decode(space.sample(random.Random(0)))
    assert arch.layers[0].kind == "dsconv"


@pytest.mark.parametrize("skeleton, message", [
    (Skeleton(stem=16, head_conv=64, blocks=[BlockSpec(width=16, layers=0)]),
     "search.skeleton.blocks[0].layers: must be in 1..16"),
    (Skeleton(stem=16, head_conv=64, blocks=[BlockSpec(width=16, layers=1, fixed={"op": "fft"})]),
     "search.skeleton.blocks[0].fixed.op: 'fft' is not one of"),
    (Skeleton(stem=16, head_conv=64, blocks=[BlockSpec(width=16, layers=1, fixed={"colour": 1})]),
     "search.skeleton.blocks[0].fixed.colour: unknown decision"),
    (Skeleton(stem=16, head_conv=64, blocks=[]), "search.skeleton.blocks: needs at least one"),
    ("mobilenetv7", "unknown preset 'mobilenetv7'"),
])
def test_bad_skeletons(skeleton, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        FactorizedSpace("mnasnet", skeleton)


def test_v3_needs_head_hidden():
    with pytest.raises(UserError, match="head_hidden"):
        FactorizedSpace("mobilenetv3", "mobilenetv2")


def test_reported_sizes():
    # MnasNet sec. 4.1: a sub-space of S = 432 per block.
    assert make_space("mnasnet").raw_size() == 432 ** 7
    assert 0 < make_space("mnasnet").size() < 432 ** 7
    assert make_space("mobilenetv3").raw_size() == 864 ** 6
