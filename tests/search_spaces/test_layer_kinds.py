"""Layer kinds: every kind works through every stage from its spec alone, and the
fused_mbconv kind (EfficientNetV2's Fused-MBConv) works end to end."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from latency.export_ops import export_op
from latency.model import TableModel
from latency.profiler import resolve_coverage
from latency.signature import build_op, check_signature, layer_signature, signatures
from latency_fixtures import fake_table
from netadapt.proposals import make_proposals
from search_spaces.arch import Arch, Head, Layer, SERule, Stem, arch_from_dict
from search_spaces.builder import build_model
from search_spaces.channels import expandable
from search_spaces.counting import count, layer_cost
from search_spaces.factorized import CONV_OPS, FactorizedSpace
from search_spaces.infra.errors import UserError
from search_spaces.kinds import KINDS
from search_spaces.transforms import with_width_multiplier

SE = SERule(gate="hsigmoid", ratio=0.25, of="mid", divisor=8)


def one_of_each() -> list[Layer]:
    """Every kind, with and without expansion and SE, strided and residual."""
    return [
        Layer("conv", 16, 16, 3, 1, "relu", 8, "identity"),
        Layer("dsconv", 16, 24, 5, 2, "hswish", 8, "none"),
        Layer("mbconv", 24, 24, 3, 1, "relu", 0, "identity", 72, True),
        Layer("mbconv", 24, 24, 3, 2, "hswish", 8, "pool", 24, False),
        Layer("fused_mbconv", 24, 32, 3, 2, "hswish", 24, "none", 96, True),
        Layer("fused_mbconv", 32, 32, 5, 1, "relu", 8, "identity", 32, False),
        Layer("fused_mbconv", 32, 32, 3, 2, "relu", 0, "pool", 32, False),
    ]


def arch_with(layers: list[Layer], resolution: int = 15) -> Arch:
    return Arch(resolution=resolution, num_classes=10, stem=Stem(layers[0].in_ch, 3, 1, "hswish"),
                layers=tuple(layers), head=Head("v3", 64, "hswish", 80), se=SE)


def test_every_kind_is_listed_and_documented() -> None:
    assert set(KINDS) == {"conv", "dsconv", "mbconv", "fused_mbconv"}
    text = (Path(__file__).resolve().parents[2] / "docs" / "arch-json.md").read_text()
    assert all(f"`{name}`" in text for name in KINDS)  # the specification covers each


@pytest.mark.parametrize("index", range(len(one_of_each())))
def test_counts_match_the_torch_module_and_json_round_trips(index: int) -> None:
    layer = one_of_each()[index]
    arch = arch_with([layer])
    model = build_model(arch)
    block = model.layers[0]
    assert sum(p.numel() for p in block.parameters()) == layer_cost(layer, 15)[0]
    assert sum(p.numel() for p in model.parameters()) == count(arch)[0]
    with torch.no_grad():
        out = model.layers(model.stem(torch.randn(2, 3, 15, 15)))
    assert out.shape == (2, layer.out_ch, -(-15 // layer.stride), -(-15 // layer.stride))
    assert arch_from_dict(json.loads(arch.to_json())) == arch


def test_fused_mbconv_modules_in_order() -> None:
    expand, plain = one_of_each()[4], one_of_each()[5]
    body = build_model(arch_with([expand])).layers[0].body
    assert list(body._modules) == ["expand", "se", "project"]
    assert body.expand[0].kernel_size == (3, 3) and body.expand[0].stride == (2, 2)
    assert body.expand[0].groups == 1 and body.expand[0].out_channels == 96
    assert body.se.reduce.in_channels == 96 and len(body.project) == 2  # linear projection
    body = build_model(arch_with([plain])).layers[0].body
    assert list(body._modules) == ["conv", "se"]
    assert body.conv[0].in_channels == 32 and body.conv[0].out_channels == 32


@pytest.mark.parametrize("change,message", [
    (dict(exp_ch=48), "layers[0].exp_ch: is 48 but a layer without expansion keeps out_ch (32)"),
    (dict(kernel=1), "layers[0].kernel: unsupported kernel 1"),
])
def test_fused_json_errors_name_the_field(change: dict, message: str) -> None:
    data = arch_with([one_of_each()[5]]).to_dict()
    data["layers"][0].update(change)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)")):
        arch_from_dict(data)
    data = arch_with([one_of_each()[1]]).to_dict()
    data["layers"][0]["expand"] = True  # only kinds with an expansion carry the field
    with pytest.raises(UserError, match=r"layers\[0\].expand: unknown field"):
        arch_from_dict(data)


def test_latency_rows_round_trip_and_time_every_kind(tmp_path: Path) -> None:
    arch = arch_with(one_of_each())
    for layer, hw in zip(arch.layers, arch.feature_sizes()):
        sig = layer_signature(layer, hw)
        assert check_signature(sig) is None and sig.layer() == layer
        assert sig.macs() == layer_cost(layer, hw)[1]
        with torch.no_grad():
            assert build_op(sig, SE.gate)(torch.zeros(sig.input_shape())).shape[1] == layer.out_ch
    fused = layer_signature(arch.layers[4], 8)
    export_op(fused, tmp_path / "op.onnx", SE.gate)  # export-ops for a device table
    assert (tmp_path / "op.onnx").stat().st_size > 0
    table = fake_table(arch)
    assert TableModel(table).predict(arch).ms == pytest.approx(
        sum(table.get(s).latency_ms for s in signatures(arch)))


def test_space_ops_are_off_by_default_and_on_with_the_option() -> None:
    default = FactorizedSpace("mnasnet", None, 32, 1, 10)
    assert default.ops == CONV_OPS and all(
        d.options == CONV_OPS for d in default.decisions if d.name.endswith("/op"))
    for family in ("mnasnet", "mobilenetv3"):
        space = FactorizedSpace(family, None, 32, 1, 10, ops=CONV_OPS + ("fused3", "fused6"))
        values = space.sample(random.Random(0))
        values.update({d.name: "fused6" for d in space.decisions if d.name.endswith("/op")})
        arch = space.decode(values)
        assert {l.kind for l in arch.layers} == {"fused_mbconv"}
        assert all(l.exp_ch == 6 * l.in_ch and l.expand for l in arch.layers)
        assert arch_from_dict(arch.to_dict()) == arch
    with pytest.raises(UserError, match="search.ops: unknown op 'fused4'.*did you mean"):
        FactorizedSpace("mnasnet", None, 32, 1, 10, ops=["fused4"])


def test_profiler_covers_fused_rows_of_a_space_with_fused_ops() -> None:
    cov = resolve_coverage("mobilenetv3", 32, 1, 10, "mobilenetv3_small", ["mbconv6", "fused3"])
    ops = {s.op for s in cov.signatures(8)}
    assert {"mbconv", "fused_mbconv"} <= ops and "dsconv" not in ops
    assert cov.meta(8)["ops"] == "mbconv6,fused3"
    assert "ops" not in resolve_coverage("mnasnet", 32, 1, 10).meta(8)


def test_netadapt_proposes_fused_expansion_cuts_and_width_multiplier_scales_them() -> None:
    arch = arch_with(one_of_each())
    assert expandable(arch) == [2, 4]  # mbconv and fused_mbconv with an expansion
    proposals, _ = make_proposals(arch, lambda a: count(a)[1] / 1e6, 0.01,
                                  ("expansion", "bottleneck"), 8, 8)
    fused = [p for p in proposals if p.name == "expansion/4"]
    assert fused and fused[0].arch.layers[4].exp_ch < 96
    half = with_width_multiplier(arch, 0.5)
    assert half.layers[4].exp_ch == 48 and half.layers[5].exp_ch == half.layers[5].out_ch == 16


def test_fused_net_exports_to_onnx(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from nas.stages.export import export_onnx

    arch = arch_with(one_of_each(), 32)
    model = build_model(arch).eval()
    diff = export_onnx(model, arch, tmp_path / "model.onnx")
    assert diff <= 1e-4
