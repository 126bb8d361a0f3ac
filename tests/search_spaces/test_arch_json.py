"""The strict Arch JSON loader and its error messages."""

import copy
import json

import pytest

from search_spaces.arch import arch_from_dict, load_arch, make_divisible
from search_spaces.infra.errors import UserError
from search_spaces.reference import load_reference

BASE = load_reference("mobilenet_v3_small").to_dict()


def broken(edit):
    data = copy.deepcopy(BASE)
    edit(data)
    return data


def error_of(data) -> str:
    with pytest.raises(UserError) as info:
        arch_from_dict(data, "net.json")
    return str(info.value)


def test_valid_dict_loads():
    assert arch_from_dict(BASE).name == "mobilenet_v3_small"


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["layers"][3].update(kernal=3),
     "net.json: layers[3].kernal: unknown field (did you mean 'kernel'?)"),
    (lambda d: d["layers"][2].pop("act"), "net.json: layers[2].act: missing field"),
    (lambda d: d["layers"][4].update(kernel=4),
     "net.json: layers[4].kernel: unsupported kernel 4 (choose from 3, 5, 7)"),
    (lambda d: d["layers"][6].update(in_ch=41),
     "net.json: layers[6].in_ch: is 41 but layers[5].out_ch is 40"),
    (lambda d: d["layers"][0].update(in_ch=8, exp_ch=8),
     "net.json: layers[0].in_ch: is 8 but stem.out_ch is 16"),
    (lambda d: d["layers"][1].update(stride="2"), "net.json: layers[1].stride: expected int, got '2'"),
    (lambda d: d["layers"][1].update(act="gelu"), "layers[1].act: unsupported value 'gelu'"),
    (lambda d: d["layers"][1].update(expand="yes"), "layers[1].expand: expected bool"),
    (lambda d: d["layers"][0].update(exp_ch=32),
     "layers[0].exp_ch: is 32 but a layer without expansion keeps in_ch (16)"),
    (lambda d: d["layers"][1].update(skip="identity"),
     "layers[1].skip: an identity residual needs stride 1 and in_ch == out_ch"),
    (lambda d: d["layers"][3].update(skip="pool"),
     "layers[3].skip: a pooling residual needs in_ch == out_ch (got 24 -> 40)"),
    (lambda d: d["head"].pop("hidden_ch"), "head.hidden_ch: missing field"),
    (lambda d: d["head"].update(dropout=1.5), "head.dropout: must be in [0, 1)"),
    (lambda d: d["bn"].update(eps=0), "bn.eps: must be > 0"),
    (lambda d: d["se"].update(gate="tanh"), "se.gate: unsupported value 'tanh'"),
    (lambda d: d.update(resolution=0), "resolution: must be > 0"),
    (lambda d: d.update(layers=[]), "layers: needs at least one layer"),
    (lambda d: d.update(schema_version=2), "schema_version: unsupported schema version 2"),
    (lambda d: d.update(colour="red"), "colour: unknown field"),
    (lambda d: d["layers"].__setitem__(0, [1, 2]), "layers[0]: expected an object"),
])
def test_errors_name_the_field(edit, message):
    assert message in error_of(broken(edit))


def test_conv_layers_may_not_carry_mbconv_fields():
    def edit(d):
        d["layers"][0] = {"kind": "conv", "in_ch": 16, "out_ch": 16, "kernel": 3, "stride": 2,
                          "act": "relu", "se_ch": 0, "skip": "none", "exp_ch": 16}
    assert "layers[0].exp_ch: unknown field" in error_of(broken(edit))


def test_conv_kind_accepts_1x1_but_depthwise_does_not():
    def conv1(d):
        d["layers"][0] = {"kind": "conv", "in_ch": 16, "out_ch": 16, "kernel": 1, "stride": 2,
                          "act": "relu", "se_ch": 0, "skip": "none"}
    arch_from_dict(broken(conv1))
    assert "unsupported kernel 1" in error_of(broken(lambda d: d["layers"][2].update(kernel=1)))


def test_several_errors_are_counted():
    def edit(d):
        d["layers"][1]["kernel"] = 9
        d["layers"][2]["act"] = "tanh"
    assert "(and 1 more)" in error_of(broken(edit))


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1,\n "name": }')
    with pytest.raises(UserError, match=r"bad.json: line 2: invalid JSON"):
        load_arch(bad)
    with pytest.raises(UserError, match="missing.json: cannot read"):
        load_arch(tmp_path / "missing.json")


def test_hash_ignores_name_only():
    a = load_reference("mobilenet_v3_small")
    assert a.replace(name="other").hash() == a.hash()
    assert a.replace(resolution=32).hash() != a.hash()


@pytest.mark.parametrize("value, divisor, want", [(4, 8, 8), (18, 8, 24), (20, 8, 24), (120 / 4, 8, 32),
                                                  (240 * 0.75, 8, 184), (30, 8, 32)])
def test_make_divisible(value, divisor, want):
    assert make_divisible(value, divisor) == want


def test_json_is_one_line_per_layer():
    text = load_reference("mnasnet_a1").to_json()
    assert json.loads(text) == load_reference("mnasnet_a1").to_dict()
    assert sum(1 for line in text.splitlines() if line.strip().startswith('{"kind"')) == 16


def test_bad_kinds_are_named_first():
    msg = error_of(broken(lambda d: d["layers"][1].update(kind="mbconv7")))
    assert msg.startswith("net.json: layers[1].kind: unsupported value 'mbconv7'")
    msg = error_of(broken(lambda d: d["head"].update(kind="v4")))
    assert msg.startswith("net.json: head.kind: unsupported value 'v4'")


def test_encoding(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + load_reference("mnasnet_a1").to_json().encode())
    assert load_arch(path).name == "mnasnet_a1"  # a BOM, as spreadsheets and editors write
    path.write_bytes(b'{"name": "\xff"}')
    with pytest.raises(UserError, match="line 1: not UTF-8 text"):
        load_arch(path)


def test_top_level_must_be_an_object():
    assert error_of([1, 2]) == "net.json: (top level): expected an object, got [1, 2]"
