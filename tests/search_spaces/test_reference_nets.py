"""Reference nets: exact counts, torchvision equivalence, forward passes, round trips."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import fill_by_order, fixed_input
from search_spaces.arch import arch_from_dict, load_arch
from search_spaces.builder import build_model, load_by_order
from search_spaces.counting import count
from search_spaces.infra.errors import UserError
from search_spaces.reference import REFERENCE_DIR, load_reference, reference_names, resolve_arch
from search_spaces.transforms import with_input

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "data" / "torchvision_reference.json").read_text())

# Published counts at 224x224, 1000 classes (torchvision; MnasNet paper for A1).
EXPECTED = {
    "mobilenet_v3_large": (5_483_032, 216.6e6),
    "mobilenet_v3_small": (2_542_856, 56.5e6),
    "mnasnet_b1": (4_383_312, 314.4e6),
    "mnasnet_a1": (3_887_038, 311.6e6),
}


def test_all_reference_nets_are_shipped():
    assert reference_names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counts_match_published(name):
    params, macs = count(load_reference(name))
    want_params, want_macs = EXPECTED[name]
    assert params == want_params
    assert abs(macs - want_macs) / want_macs < 0.01


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builder_agrees_with_counting(name):
    """The analytic counts are what the built torch model really has and does."""
    arch = with_input(load_reference(name), resolution=64)
    model = build_model(arch).eval()
    macs = 0

    def hook(module, inputs, output):
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            macs += output.numel() * module.in_channels // module.groups * k
        else:
            macs += module.in_features * module.out_features

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    params, want_macs = count(arch)
    assert sum(p.numel() for p in model.parameters()) == params
    assert macs == want_macs


@pytest.mark.parametrize("name", sorted(FIXTURE["models"]))
def test_torchvision_state_dict_loads_by_order(name):
    """Same entries, same order, same shapes as torchvision's counterpart."""
    model = build_model(load_reference(name))
    theirs = FIXTURE["models"][name]["state_dict"]
    ours = [list(v.shape) for v in model.state_dict().values()]
    assert ours == [shape for _, shape in theirs]
    fake = {key: torch.full(shape, 0.5) for key, shape in theirs}
    load_by_order(model, fake)
    assert all(torch.all(v == 0.5) for v in model.state_dict().values() if v.is_floating_point())


@pytest.mark.parametrize("name", sorted(FIXTURE["models"]))
def test_same_function_as_torchvision(name):
    """With identical weights (by order) our net and torchvision's give the same logits:
    stride, padding, activations, SE placement, residuals, BN eps and head included."""
    model = build_model(load_reference(name)).eval()
    fill_by_order(model)
    with torch.no_grad():
        logits = model(fixed_input(FIXTURE["resolution"]))[0]
    want = torch.tensor(FIXTURE["models"][name]["logits"])
    assert torch.allclose(logits, want, atol=1e-4), (logits - want).abs().max()


def test_load_by_order_rejects_mismatch():
    model = build_model(load_reference("mobilenet_v3_small"))
    sd = dict(model.state_dict())
    first = next(iter(sd))
    sd[first] = torch.zeros(1)
    with pytest.raises(UserError, match="entry 0"):
        load_by_order(model, sd, "ckpt.pt")
    sd.popitem()
    with pytest.raises(UserError, match="entries"):
        load_by_order(model, sd, "ckpt.pt")


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("resolution", [224, 32])
def test_forward_pass(name, resolution):
    arch = with_input(load_reference(name), resolution=resolution, num_classes=10)
    model = build_model(arch).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, resolution, resolution))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_json_round_trip_is_unchanged(name):
    path = REFERENCE_DIR / f"{name}.json"
    arch = load_arch(path)
    assert arch.to_json() == path.read_text()
    assert arch_from_dict(json.loads(arch.to_json())) == arch


def test_resolve_by_name_or_path(tmp_path):
    arch = resolve_arch("mnasnet_a1")
    path = tmp_path / "a1.json"
    arch.save(path)
    assert resolve_arch(path) == arch
    with pytest.raises(UserError, match="unknown reference net 'mobilenet_v4'"):
        resolve_arch("mobilenet_v4")
