"""The Arch JSON Schema and docs/arch-json.md against the code.

The schema must accept every reference net and every decoded architecture and reject
what the strict loader rejects (where JSON Schema can say it). The doc's formulas,
implemented here independently of `counting.py` and `builder.py`, must give the
built networks' parameter counts, MACs and outputs.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import math
import random
from typing import Any, Callable

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from helpers import fill_by_order
from search_spaces.arch import arch_from_dict
from search_spaces.builder import build_model
from search_spaces.counting import count, count_rows
from search_spaces.factorized import SPACE_NAMES, make_space
from search_spaces.infra.errors import UserError
from search_spaces.reference import load_reference, reference_names
from search_spaces.skeletons import PRESETS

PACKAGE = importlib.resources.files("search_spaces")
SCHEMA = json.loads(PACKAGE.joinpath("arch.schema.json").read_text())


@pytest.fixture(scope="module")
def validator() -> Any:
    # A dev-only dependency: without it the schema tests skip, the doc's do not.
    jsonschema = pytest.importorskip("jsonschema")
    return jsonschema.Draft202012Validator(SCHEMA)


def schema_accepts(validator: Any, doc: Any) -> bool:
    return validator.is_valid(doc)


def loader_accepts(doc: Any) -> bool:
    try:
        arch_from_dict(doc, "net.json")
    except UserError:
        return False
    return True


def test_schema_is_a_valid_draft_2020_12_schema(validator: Any) -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    validator.check_schema(SCHEMA)
    assert SCHEMA["properties"]["schema_version"] == {"const": 1}


# ---------------------------------------------------------------- what it accepts

@pytest.mark.parametrize("name", reference_names())
def test_reference_nets_validate(name: str, validator: Any) -> None:
    shipped = json.loads(PACKAGE.joinpath("reference", f"{name}.json").read_text())
    validator.validate(shipped)
    validator.validate(load_reference(name).to_dict())


def _spaces() -> list[tuple[str, str, int]]:
    combos = []
    for space in SPACE_NAMES:
        for skeleton in PRESETS:
            try:
                make_space(space, skeleton)
            except UserError:  # e.g. the mobilenetv3 head needs a skeleton's hidden width
                continue
            combos += [(space, skeleton, 32), (space, skeleton, 224)]
    return combos


@pytest.mark.parametrize("space_name, skeleton, resolution", _spaces())
def test_decoded_architectures_validate(space_name: str, skeleton: str,
                                        resolution: int, validator: Any) -> None:
    space = make_space(space_name, skeleton, resolution, 1 if resolution == 32 else 2, 10)
    rng = random.Random(f"{space_name}/{skeleton}/{resolution}")
    for _ in range(200):
        doc = space.decode(space.sample(rng)).to_dict()
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not errors, (doc, errors)


@pytest.mark.parametrize("space_name, skeleton", [("mnasnet", "mobilenetv2"),
                                                  ("mobilenetv3", "mobilenetv3_small")])
def test_decoded_architectures_with_every_op_validate(space_name: str, skeleton: str,
                                                     validator: Any) -> None:
    from search_spaces.factorized import ALL_OPS  # the fused ops are off by default

    space = make_space(space_name, skeleton, 32, 1, 10, ops=ALL_OPS)
    rng = random.Random(f"{space_name}/{skeleton}/all-ops")
    kinds = set()
    for _ in range(200):
        doc = space.decode(space.sample(rng)).to_dict()
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not errors, (doc, errors)
        kinds |= {layer["kind"] for layer in doc["layers"]}
    assert "fused_mbconv" in kinds


def _doc(layers: list[dict], head: dict | None = None,
         se: dict | None = None) -> dict[str, Any]:
    """A 13x13 input and an 8-wide stride-2 stem: the first layer sees a 7x7 map."""
    return {
        "schema_version": 1, "name": "tiny", "resolution": 13, "in_ch": 3,
        "num_classes": 5,
        "bn": {"eps": 1e-3, "momentum": 0.01},
        "se": se or {"gate": "sigmoid", "ratio": 0.25, "of": "in", "divisor": 1},
        "stem": {"out_ch": 8, "kernel": 3, "stride": 2, "act": "relu"},
        "layers": layers,
        "head": head or {"kind": "v2", "conv_ch": 24, "act": "relu", "dropout": 0.2},
    }


def _layer(kind: str, in_ch: int, out_ch: int, kernel: int, stride: int = 1,
           act: str = "relu", se_ch: int = 0, skip: str = "none",
           expand: bool | None = None, exp_ch: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": kind, "in_ch": in_ch}
    if expand is not None:
        d.update(expand=expand, exp_ch=exp_ch)
    d.update(out_ch=out_ch, kernel=kernel, stride=stride, act=act, se_ch=se_ch, skip=skip)
    return d


FUSED_EXPAND = _layer("fused_mbconv", 8, 8, 3, 2, "relu", 6, "pool", expand=True, exp_ch=24)
FUSED_NO_EXPAND = _layer("fused_mbconv", 8, 12, 5, 1, "hswish", 3, "none", expand=False,
                         exp_ch=12)


@pytest.mark.parametrize("layer", [FUSED_EXPAND, FUSED_NO_EXPAND], ids=["expand", "no_expand"])
def test_fused_mbconv_layers_validate(layer: dict, validator: Any) -> None:
    validator.validate(_doc([layer]))


# Waits for `fused_mbconv` in search_spaces/arch.py.
@pytest.mark.parametrize("layer", [FUSED_EXPAND, FUSED_NO_EXPAND], ids=["expand", "no_expand"])
def test_fused_mbconv_layers_load_and_round_trip(layer: dict) -> None:
    doc = _doc([layer])
    assert arch_from_dict(doc).to_dict() == doc


# ---------------------------------------------------------------- what it rejects

BASE = _doc([
    _layer("conv", 8, 8, 3, 2, "hswish", 3, "pool"),
    _layer("dsconv", 8, 16, 5, 1, "relu"),
    _layer("mbconv", 16, 16, 3, 1, "relu6", 4, "identity", expand=False, exp_ch=16),
    _layer("mbconv", 16, 24, 5, 2, "swish", 0, "none", expand=True, exp_ch=48),
], head={"kind": "v3", "conv_ch": 32, "act": "hswish", "hidden_ch": 20, "dropout": 0.2})


def edited(edit: Callable[[dict], Any]) -> dict:
    doc = copy.deepcopy(BASE)
    edit(doc)
    return doc


def test_the_base_document_is_accepted_by_both(validator: Any) -> None:
    assert schema_accepts(validator, BASE) and loader_accepts(BASE)


def _set(obj: dict, **changes: Any) -> None:
    obj.update(changes)


BAD: dict[str, Callable[[dict], Any]] = {
    "unknown top field": lambda d: _set(d, colour="red"),
    "missing top field": lambda d: d.pop("bn"),
    "schema version 2": lambda d: _set(d, schema_version=2),
    "name null": lambda d: _set(d, name=None),
    "resolution as string": lambda d: _set(d, resolution="13"),
    "resolution 0": lambda d: _set(d, resolution=0),
    "in_ch true": lambda d: _set(d, in_ch=True),
    "no layers": lambda d: _set(d, layers=[]),
    "layers not a list": lambda d: _set(d, layers={}),
    "layer not an object": lambda d: d["layers"].__setitem__(1, [1, 2]),
    "bn eps 0": lambda d: _set(d["bn"], eps=0),
    "bn momentum 1": lambda d: _set(d["bn"], momentum=1.0),
    "bn unknown field": lambda d: _set(d["bn"], decay=0.99),
    "se gate relu": lambda d: _set(d["se"], gate="relu"),
    "se of out": lambda d: _set(d["se"], of="out"),
    "se ratio 0": lambda d: _set(d["se"], ratio=0),
    "se divisor 0": lambda d: _set(d["se"], divisor=0),
    "se missing divisor": lambda d: d["se"].pop("divisor"),
    "stem kernel 2": lambda d: _set(d["stem"], kernel=2),
    "stem stride 3": lambda d: _set(d["stem"], stride=3),
    "stem act gelu": lambda d: _set(d["stem"], act="gelu"),
    "layer kind sepconv": lambda d: _set(d["layers"][1], kind="sepconv"),
    "layer without kind": lambda d: d["layers"][1].pop("kind"),
    "layer unknown field": lambda d: _set(d["layers"][2], ratio=6),
    "layer missing se_ch": lambda d: d["layers"][0].pop("se_ch"),
    "layer act gelu": lambda d: _set(d["layers"][1], act="gelu"),
    "layer skip residual": lambda d: _set(d["layers"][1], skip="residual"),
    "layer stride 3": lambda d: _set(d["layers"][1], stride=3),
    "layer se_ch -1": lambda d: _set(d["layers"][1], se_ch=-1),
    "layer out_ch 0": lambda d: _set(d["layers"][3], out_ch=0),
    "conv kernel 4": lambda d: _set(d["layers"][0], kernel=4),
    "dsconv kernel 1": lambda d: _set(d["layers"][1], kernel=1),
    "mbconv kernel 1": lambda d: _set(d["layers"][3], kernel=1),
    "conv with exp_ch": lambda d: _set(d["layers"][0], exp_ch=8),
    "dsconv with expand": lambda d: _set(d["layers"][1], expand=False),
    "mbconv without expand": lambda d: d["layers"][3].pop("expand"),
    "mbconv without exp_ch": lambda d: d["layers"][3].pop("exp_ch"),
    "mbconv expand yes": lambda d: _set(d["layers"][3], expand="yes"),
    "mbconv expand 1": lambda d: _set(d["layers"][3], expand=1),
    "mbconv exp_ch 0": lambda d: _set(d["layers"][3], exp_ch=0),
    "identity on stride 2": lambda d: _set(d["layers"][0], skip="identity"),
    "head kind v4": lambda d: _set(d["head"], kind="v4"),
    "head without kind": lambda d: d["head"].pop("kind"),
    "v3 head without hidden_ch": lambda d: d["head"].pop("hidden_ch"),
    "v2 head with hidden_ch": lambda d: _set(d["head"], kind="v2"),
    "head dropout 1": lambda d: _set(d["head"], dropout=1.0),
    "head dropout -0.1": lambda d: _set(d["head"], dropout=-0.1),
    "head unknown field": lambda d: _set(d["head"], pool="max"),
    "fused kernel 1": lambda d: d["layers"].insert(0, dict(FUSED_EXPAND, kernel=1)),
    "fused without expand": lambda d: d["layers"].insert(
        0, {k: v for k, v in FUSED_EXPAND.items() if k != "expand"}),
    "fused unknown field": lambda d: d["layers"].insert(0, dict(FUSED_EXPAND, groups=2)),
}


BAD_DOCS: dict[str, Any] = {"not an object": [BASE],
                            **{name: edited(edit) for name, edit in BAD.items()}}


@pytest.mark.parametrize("name", list(BAD_DOCS))
def test_bad_documents_are_rejected_by_schema_and_loader(name: str, validator: Any) -> None:
    doc = BAD_DOCS[name]
    assert not schema_accepts(validator, doc), "the schema accepts it"
    assert not loader_accepts(doc), "arch_from_dict accepts it"


# Relations between values: JSON Schema cannot state them, the loader checks them
# (docs/arch-json.md, "Validation").
LOADER_ONLY: dict[str, Callable[[dict], Any]] = {
    "chain mismatch": lambda d: _set(d["layers"][1], in_ch=9),
    "first layer vs stem": lambda d: _set(d["stem"], out_ch=9),
    "mbconv no-expand exp_ch != in_ch": lambda d: _set(d["layers"][2], exp_ch=32),
    "pool skip with in != out": lambda d: _set(d["layers"][1], skip="pool"),
    "identity skip with in != out": lambda d: _set(d["layers"][1], skip="identity"),
    "integer written as 16.0": lambda d: _set(d["layers"][1], out_ch=16.0),
    "fused no-expand exp_ch != out_ch": lambda d: d["layers"].insert(
        0, dict(FUSED_NO_EXPAND, out_ch=8, exp_ch=12)),
}


@pytest.mark.parametrize("name", list(LOADER_ONLY))
def test_value_relations_are_the_loaders_job(name: str, validator: Any) -> None:
    doc = edited(LOADER_ONLY[name])
    assert schema_accepts(validator, doc)
    assert not loader_accepts(doc)


# ---------------------------------------------------------------- the doc's computation
# An independent implementation of docs/arch-json.md: counts from its tables, the
# forward function from its definitions, reading weights by its module names.

def _conv_bn_cost(ci: int, co: int, k: int, groups: int, hw: int) -> tuple[int, int]:
    w = co * (ci // groups) * k * k
    return w + 2 * co, w * hw * hw


def _se_cost(c: int, r: int) -> tuple[int, int]:
    return (2 * c * r + r + c, 2 * c * r) if r else (0, 0)


def _linear_cost(a: int, b: int) -> tuple[int, int]:
    return a * b + b, a * b


def doc_layer_counts(L: dict, hw: int) -> tuple[int, int]:
    """(params, MACs) of one layer at input size `hw`, from the doc's table."""
    ci, co, k, r = L["in_ch"], L["out_ch"], L["kernel"], L["se_ch"]
    out = math.ceil(hw / L["stride"])
    if L["kind"] == "conv":
        pieces = [_conv_bn_cost(ci, co, k, 1, out), _se_cost(co, r)]
    elif L["kind"] == "dsconv":
        pieces = [_conv_bn_cost(ci, ci, k, ci, out), _se_cost(ci, r),
                  _conv_bn_cost(ci, co, 1, 1, out)]
    elif L["kind"] == "mbconv":
        e = L["exp_ch"]
        pieces = [_conv_bn_cost(ci, e, 1, 1, hw)] if L["expand"] else []
        pieces += [_conv_bn_cost(e, e, k, e, out), _se_cost(e, r),
                   _conv_bn_cost(e, co, 1, 1, out)]
    elif L["expand"]:  # fused_mbconv
        e = L["exp_ch"]
        pieces = [_conv_bn_cost(ci, e, k, 1, out), _se_cost(e, r),
                  _conv_bn_cost(e, co, 1, 1, out)]
    else:
        pieces = [_conv_bn_cost(ci, co, k, 1, out), _se_cost(co, r)]
    return sum(p for p, _ in pieces), sum(m for _, m in pieces)


def doc_counts(d: dict) -> tuple[int, int]:
    """(params, MACs) of a whole network, from the doc's tables."""
    hw = math.ceil(d["resolution"] / d["stem"]["stride"])
    pieces = [_conv_bn_cost(d["in_ch"], d["stem"]["out_ch"], d["stem"]["kernel"], 1, hw)]
    for L in d["layers"]:
        pieces.append(doc_layer_counts(L, hw))
        hw = math.ceil(hw / L["stride"])
    head = d["head"]
    pieces.append(_conv_bn_cost(d["layers"][-1]["out_ch"], head["conv_ch"], 1, 1, hw))
    width = head["conv_ch"]
    if head["kind"] == "v3":
        pieces.append(_linear_cost(width, head["hidden_ch"]))
        width = head["hidden_ch"]
    pieces.append(_linear_cost(width, d["num_classes"]))
    return sum(p for p, _ in pieces), sum(m for _, m in pieces)


ACTS = {
    "relu": lambda x: x.clamp(min=0),
    "relu6": lambda x: x.clamp(0, 6),
    "hswish": lambda x: x * (x + 3).clamp(0, 6) / 6,
    "swish": lambda x: x / (1 + torch.exp(-x)),
}
GATES = {"sigmoid": lambda x: 1 / (1 + torch.exp(-x)),
         "hsigmoid": lambda x: (x + 3).clamp(0, 6) / 6}


def pool_residual(x: torch.Tensor, s: int) -> torch.Tensor:
    """P(x) as the doc defines it: s x s windows, partial ones averaged over what
    lies inside the map."""
    if s == 1:
        return x
    h, w = x.shape[-2:]
    out = x.new_empty(*x.shape[:-2], math.ceil(h / s), math.ceil(w / s))
    for i in range(out.shape[-2]):
        for j in range(out.shape[-1]):
            window = x[..., s * i:min(s * i + s, h), s * j:min(s * j + s, w)]
            out[..., i, j] = window.mean((-2, -1))
    return out


class DocNet:
    """The forward function of docs/arch-json.md, weights read by its module names."""

    def __init__(self, d: dict, state: dict[str, torch.Tensor]) -> None:
        self.d, self.state, self.used = d, state, set()

    def w(self, name: str) -> torch.Tensor:
        self.used.add(name)
        return self.state[name]

    def conv_bn(self, name: str, x: torch.Tensor, stride: int, groups: int,
                act: str | None) -> torch.Tensor:
        weight = self.w(f"{name}.0.weight")
        k = weight.shape[-1]
        x = F.conv2d(x, weight, None, stride, (k - 1) // 2, 1, groups)
        bn = self.d["bn"]
        mean, var = self.w(f"{name}.1.running_mean"), self.w(f"{name}.1.running_var")
        gamma, beta = self.w(f"{name}.1.weight"), self.w(f"{name}.1.bias")
        self.used.add(f"{name}.1.num_batches_tracked")
        shape = (1, -1, 1, 1)
        x = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + bn["eps"]) \
            * gamma.view(shape) + beta.view(shape)
        return ACTS[act](x) if act else x

    def se(self, name: str, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3))
        w1, b1 = self.w(f"{name}.reduce.weight"), self.w(f"{name}.reduce.bias")
        w2, b2 = self.w(f"{name}.expand.weight"), self.w(f"{name}.expand.bias")
        z = ACTS["relu"](s @ w1.flatten(1).T + b1)
        g = GATES[self.d["se"]["gate"]](z @ w2.flatten(1).T + b2)
        return x * g[:, :, None, None]

    def layer(self, i: int, L: dict, x: torch.Tensor) -> torch.Tensor:
        p, s, act, kind = f"layers.{i}.body.", L["stride"], L["act"], L["kind"]
        if kind == "conv":
            t = self.conv_bn(p + "conv", x, s, 1, act)
        elif kind == "dsconv":
            t = self.conv_bn(p + "depthwise", x, s, L["in_ch"], act)
        elif kind == "mbconv":
            t = self.conv_bn(p + "expand", x, 1, 1, act) if L["expand"] else x
            t = self.conv_bn(p + "depthwise", t, s, L["exp_ch"], act)
        else:  # fused_mbconv
            t = self.conv_bn(p + ("expand" if L["expand"] else "conv"), x, s, 1, act)
        if L["se_ch"]:
            t = self.se(p + "se", t)
        if kind in ("dsconv", "mbconv") or kind == "fused_mbconv" and L["expand"]:
            t = self.conv_bn(p + "project", t, 1, 1, None)
        if L["skip"] == "identity":
            return t + x
        if L["skip"] == "pool":
            return t + pool_residual(x, s)
        return t

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        d = self.d
        x = self.conv_bn("stem", x, d["stem"]["stride"], 1, d["stem"]["act"])
        for i, L in enumerate(d["layers"]):
            x = self.layer(i, L, x)
        head = d["head"]
        v = self.conv_bn("head.conv", x, 1, 1, head["act"]).mean((2, 3))
        if head["kind"] == "v3":
            v = ACTS[head["act"]](v @ self.w("head.hidden.0.weight").T
                                  + self.w("head.hidden.0.bias"))
        # dropout: the identity at inference
        return v @ self.w("head.classifier.weight").T + self.w("head.classifier.bias")


def measured_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of every Conv2d and Linear, from the shapes they really produce."""
    total = 0

    def hook(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        total += output[0].numel() * module.weight[0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


V3_HEAD = {"kind": "v3", "conv_ch": 24, "act": "hswish", "hidden_ch": 20, "dropout": 0.2}
MID_SE = {"gate": "hsigmoid", "ratio": 0.25, "of": "mid", "divisor": 8}
# One tiny net per kind, 13x13 input and a stride-2 stem, so layer 0 sees a 7x7 map
# and each net has SE, a `pool` residual on an odd map and an identity residual.
TINY = {
    "conv": _doc([
        _layer("conv", 8, 8, 3, 2, "hswish", 3, "pool"),
        _layer("conv", 8, 16, 1, 1, "relu6"),
        _layer("conv", 16, 16, 5, 1, "swish", 4, "identity"),
    ]),
    "dsconv": _doc([
        _layer("dsconv", 8, 8, 3, 2, "relu", 2, "pool"),
        _layer("dsconv", 8, 12, 5, 2, "hswish"),
        _layer("dsconv", 12, 12, 7, 1, "relu", 3, "identity"),
    ], head=V3_HEAD, se=MID_SE),
    "mbconv": _doc([
        _layer("mbconv", 8, 8, 3, 2, "relu", 2, "pool", expand=False, exp_ch=8),
        _layer("mbconv", 8, 8, 5, 1, "hswish", 8, "identity", expand=True, exp_ch=24),
        _layer("mbconv", 8, 16, 7, 2, "swish", 0, "none", expand=True, exp_ch=8),
    ], head=V3_HEAD, se=MID_SE),
    # Waits for `fused_mbconv` in search_spaces/.
    "fused_mbconv": _doc([
        FUSED_EXPAND,
        FUSED_NO_EXPAND,
        _layer("fused_mbconv", 12, 12, 3, 1, "relu6", 0, "identity", expand=False, exp_ch=12),
        _layer("fused_mbconv", 12, 16, 3, 2, "swish", 0, "none", expand=True, exp_ch=12),
    ]),
}


@pytest.mark.parametrize("kind", list(TINY))
def test_tiny_nets_validate(kind: str, validator: Any) -> None:
    validator.validate(TINY[kind])


@pytest.mark.parametrize("kind", list(TINY))
def test_doc_formulas_give_the_built_networks_counts(kind: str) -> None:
    d = TINY[kind]
    arch = arch_from_dict(d)
    model = build_model(arch)
    params, macs = doc_counts(d)
    assert sum(p.numel() for p in model.parameters()) == params
    assert measured_macs(model.eval(), torch.zeros(1, 3, 13, 13)) == macs
    assert count(arch) == (params, macs)  # what `nas info` reports


@pytest.mark.parametrize("kind", list(TINY))
def test_doc_definition_computes_the_built_networks_function(kind: str) -> None:
    d = TINY[kind]
    model = build_model(arch_from_dict(d))
    fill_by_order(model, seed=3)  # non-trivial BN statistics and biases
    model = model.double().eval()
    x = torch.randn(2, 3, 13, 13, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    state = model.state_dict()
    doc_net = DocNet(d, state)
    with torch.no_grad():
        expected = model(x)
        got = doc_net(x)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    assert doc_net.used == set(state), "the doc's module names miss or invent a tensor"


def test_pool_residual_on_a_7x7_map_is_the_documented_average() -> None:
    d = TINY["mbconv"]  # layer 0: stride 2, skip pool, 7x7 input
    model = build_model(arch_from_dict(d)).double().eval()
    seen: dict[str, torch.Tensor] = {}
    model.layers[0].register_forward_hook(
        lambda m, inp, out: seen.update(x=inp[0].clone(), y=out.clone()))
    model.layers[0].body.register_forward_hook(
        lambda m, inp, out: seen.update(body=out.clone()))
    with torch.no_grad():
        model(torch.randn(1, 3, 13, 13, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(1)))
    x = seen["x"]
    assert x.shape[-2:] == (7, 7) and seen["y"].shape[-2:] == (4, 4)
    residual = seen["y"] - seen["body"]
    torch.testing.assert_close(residual, pool_residual(x, 2), rtol=1e-12, atol=1e-12)
    # The last row and column of windows are partial: the corner is x[6, 6] itself,
    # not a quarter of it (which zero padding counted in the divisor would give).
    torch.testing.assert_close(residual[..., 3, 3], x[..., 6, 6], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(residual[..., 3, 0], x[..., 6, 0:2].mean(-1),
                               rtol=1e-12, atol=1e-12)


def test_doc_worked_example_and_reference_counts() -> None:
    """docs/arch-json.md's worked example (MobileNetV3-Small's layers[0] at 224) and
    the reference nets' totals, from the doc's formulas alone."""
    small = load_reference("mobilenet_v3_small")
    assert doc_layer_counts(small.to_dict()["layers"][0], 112) == (744, 1_254_656)
    assert count_rows(small)[1].name == "layers[0]"
    assert (count_rows(small)[1].params, count_rows(small)[1].macs) == (744, 1_254_656)
    assert doc_counts(small.to_dict()) == (2_542_856, 56_510_400)
    for name in reference_names():
        arch = load_reference(name)
        assert doc_counts(arch.to_dict()) == count(arch), name
