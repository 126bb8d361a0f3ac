"""The weight-sharing supernet: a child's inherited weights compute what the supernet
computes for that path, in `build_model(child)` itself."""

from __future__ import annotations

import random

import pytest
import torch

from search_spaces.builder import build_model, check_state
from search_spaces.factorized import ALL_OPS, make_space
from search_spaces.supernet import SuperNet, crop

SPACES = {  # (space, skeleton, resolution, stem stride, ops)
    "mobilenetv3_small_32": ("mobilenetv3", "mobilenetv3_small", 32, 1, None),
    "mnasnet_v2_32": ("mnasnet", "mobilenetv2", 32, 1, None),
    "mnasnet_a1_32": ("mnasnet", "a1", 32, 1, None),
    "mobilenetv3_small_every_op": ("mobilenetv3", "mobilenetv3_small", 32, 1, ALL_OPS),
}


def _extremes(space) -> dict[str, dict]:
    return {"smallest": {d.name: d.options[0] for d in space.decisions},
            "largest": {d.name: d.options[-1] for d in space.decisions},
            **{f"random{k}": space.sample(random.Random(k)) for k in range(3)}}


def _random_buffers(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, t in model.state_dict().items():
        if key.endswith("running_mean"):
            out[key] = torch.randn(t.shape, generator=g) * 0.1
        elif key.endswith("running_var"):
            out[key] = torch.rand(t.shape, generator=g) + 0.5
        elif key.endswith("num_batches_tracked"):
            out[key] = torch.zeros((), dtype=torch.int64)
    return out


def _perturbed(supernet: SuperNet, seed: int) -> None:
    """Shared weights away from their initial values (BN scales not all 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in supernet.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.fixture(scope="module", params=sorted(SPACES))
def supernet(request):
    family, skeleton, res, stride, ops = SPACES[request.param]
    net = SuperNet(make_space(family, skeleton, res, stride, 10, ops=ops), seed=0)
    _perturbed(net, 1)
    return net


def test_every_child_computes_what_the_supernet_computes(supernet) -> None:
    space = supernet.space
    x = torch.randn(2, 3, space.resolution, space.resolution,
                    generator=torch.Generator().manual_seed(0))
    for name, values in _extremes(space).items():
        arch, state = supernet.extract(values)
        check_state(arch, state)  # loads strictly into build_model(child)
        model = build_model(arch)
        buffers = _random_buffers(model, 2)
        model.load_state_dict({**state, **buffers})
        for training in (False, True):  # eval: given statistics; train: batch statistics
            supernet.train(training)
            model.train(training)
            with torch.no_grad():
                torch.manual_seed(3)  # the same dropout mask in training mode
                want = supernet(x, values, buffers={k: v.clone() for k, v in buffers.items()})
                torch.manual_seed(3)
                got = model(x)
            assert torch.equal(want, got), (name, training)


def test_a_224_input_child_matches_too() -> None:
    space = make_space("mobilenetv3", "mobilenetv3_large", 224, 2, 1000)
    net = SuperNet(space, seed=3).eval()
    values = space.sample(random.Random(5))
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(net(x, values), net.inherit(values).eval()(x))


def test_kernels_are_centre_crops_and_widths_first_channels() -> None:
    t = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    small = crop(t, (1, 2, 3, 3))
    assert torch.equal(small, t[:1, :2, 1:4, 1:4])
    assert small.data_ptr() != t.clone().data_ptr()  # a view of the shared tensor
    assert torch.equal(crop(torch.arange(6.0).reshape(2, 3), (2, 2)), torch.tensor([[0., 1], [3, 4]]))
    with pytest.raises(ValueError, match="exceeds"):
        crop(t, (3, 3, 5, 5))


def test_training_reaches_only_the_sampled_path() -> None:
    space = make_space("mobilenetv3", "mobilenetv3_small", 32, 1, 10)
    net = SuperNet(space, seed=0).train()
    values = {d.name: d.options[0] for d in space.decisions}  # conv ops, fewest layers
    net(torch.randn(4, 3, 32, 32), values).sum().backward()
    touched = {k for k, p in net.shared.items() if p.grad is not None}
    arch, slots = net.child(values)
    assert touched == {net.shared_key(k, slots) for k in build_model(arch).state_dict()
                       if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert all(":conv/" in k for k in touched if k.startswith("b"))


def test_sampling_is_a_function_of_the_seed_and_step() -> None:
    space = make_space("mnasnet", "mobilenetv2", 32, 1, 10)
    a, b = SuperNet(space, seed=7), SuperNet(space, seed=7)
    assert [a.sample(s) for s in range(5)] == [b.sample(s) for s in range(5)]
    assert a.sample(0) != SuperNet(space, seed=8).sample(0)
    a.train()
    a(torch.randn(2, 3, 32, 32))
    assert int(a.sampled) == 1  # the step counter travels in the state dict
    b.load_state_dict(a.state_dict())
    assert int(b.sampled) == 1
    with pytest.raises(ValueError, match="needs the child's decisions"):
        a.eval()(torch.randn(1, 3, 32, 32))


def test_the_same_seed_gives_the_same_initial_weights() -> None:
    space = make_space("mobilenetv3", "mobilenetv3_small", 32, 1, 10)
    a, b = SuperNet(space, seed=1), SuperNet(space, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values()))


def test_share_ops_gives_a_dsconv_the_first_channels_of_the_mbconv_weights() -> None:
    space = make_space("mobilenetv3", "mobilenetv3_small", 32, 1, 10)
    own, net = SuperNet(space, seed=0), SuperNet(space, seed=0, share_ops=True)
    assert not any(":dsconv/" in k for k in net.shared) and any(":dsconv/" in k for k in own.shared)
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in own.parameters())
    _perturbed(net, 2)
    base = space.sample(random.Random(4))
    ds = {k: "dsconv" if k.endswith("/op") else v for k, v in base.items()}
    mb = {k: "mbconv6" if k.endswith("/op") else v for k, v in base.items()}
    (arch, state), (_, mb_state) = net.extract(ds), net.extract(mb)
    key = "layers.0.body.depthwise.0.weight"
    assert arch.layers[0].kind == "dsconv"
    assert torch.equal(state[key], crop(mb_state[key], state[key].shape))
    # a dsconv child trains the mbconv slot, and computes what the supernet computes
    net.train()
    net(torch.randn(2, 3, 32, 32), ds).sum().backward()
    assert net.shared["b0p0:mbconv/body/depthwise/0/weight"].grad is not None
    model = build_model(arch)
    buffers = _random_buffers(model, 3)
    model.load_state_dict({**state, **buffers})
    net.eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(net(x, ds, buffers=buffers), model.eval()(x))
