"""`Arch`: the architecture value type every stage hands on, and its strict JSON form.

An Arch is plain data with absolute channel counts (NetAdapt makes expansions
non-uniform), so it round-trips through JSON unchanged and any stage's output can be
handed to any other stage by a user.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

from search_spaces.counting import count_rows
from search_spaces.infra import limits
from search_spaces.infra.checks import fraction, one_of, positive
from search_spaces.infra.errors import UserError
from search_spaces.infra.files import atomic_write
from search_spaces.infra.strict import FieldReader, read_json
from search_spaces.kinds import KINDS, kind_of
# the value types an Arch is made of live in layer.py; importers find them here too
from search_spaces.layer import BatchNorm, Head, Layer, SERule, Stem, make_divisible

__all__ = ["Arch", "BatchNorm", "Head", "Layer", "SERule", "Stem", "arch_from_dict",
           "load_arch", "make_divisible", "size_problems"]

SCHEMA_VERSION = 1

LAYER_KINDS = tuple(KINDS)
ACTIVATIONS = ("relu", "relu6", "hswish", "swish")
SKIPS = ("none", "identity", "pool")
SE_GATES = ("sigmoid", "hsigmoid")
HEAD_KINDS = ("v2", "v3")
STEM_KERNELS = (1, 3, 5, 7)
STRIDES = (1, 2)


@dataclass(frozen=True)
class Arch:
    """A whole network: input, stem, ordered layers, head; absolute channel counts."""

    resolution: int
    num_classes: int
    stem: Stem
    layers: tuple[Layer, ...]
    head: Head
    in_ch: int = 3
    bn: BatchNorm = field(default_factory=BatchNorm)
    se: SERule = field(default_factory=SERule)
    name: str = ""

    def replace(self, **changes: Any) -> "Arch":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return arch_to_dict(self)

    def to_json(self) -> str:
        """Indented JSON with one line per layer, so diffs read layer by layer."""
        data = self.to_dict()
        layers = data.pop("layers")
        text = json.dumps(data, indent=2)
        rows = ",\n".join("    " + json.dumps(layer) for layer in layers)
        head_at = text.rindex('  "head"')
        return f'{text[:head_at]}  "layers": [\n{rows}\n  ],\n{text[head_at:]}\n'

    def save(self, path: str | Path) -> None:
        atomic_write(Path(path), self.to_json())

    def hash(self) -> str:
        """Content hash (name excluded): equal architectures share it."""
        data = self.to_dict()
        data.pop("name")
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def feature_sizes(self) -> Iterator[int]:
        """Spatial size entering each layer (same padding: ceil(H / stride))."""
        hw = _down(self.resolution, self.stem.stride)
        for layer in self.layers:
            yield hw
            hw = _down(hw, layer.stride)

    @property
    def final_hw(self) -> int:
        hw = _down(self.resolution, self.stem.stride)
        for layer in self.layers:
            hw = _down(hw, layer.stride)
        return hw


def _down(hw: int, stride: int) -> int:
    return -(-hw // stride)


# ---------------------------------------------------------------- JSON form

def arch_to_dict(arch: Arch) -> dict[str, Any]:
    layers = []
    for layer in arch.layers:
        d: dict[str, Any] = {"kind": layer.kind, "in_ch": layer.in_ch}
        if kind_of(layer).has_expansion:
            d["expand"] = layer.expand
            d["exp_ch"] = layer.exp_ch
        d.update(out_ch=layer.out_ch, kernel=layer.kernel, stride=layer.stride,
                 act=layer.act, se_ch=layer.se_ch, skip=layer.skip)
        layers.append(d)
    head: dict[str, Any] = {"kind": arch.head.kind, "conv_ch": arch.head.conv_ch,
                            "act": arch.head.act}
    if arch.head.kind == "v3":
        head["hidden_ch"] = arch.head.hidden_ch
    head["dropout"] = arch.head.dropout
    return {
        "schema_version": SCHEMA_VERSION,
        "name": arch.name,
        "resolution": arch.resolution,
        "in_ch": arch.in_ch,
        "num_classes": arch.num_classes,
        "bn": {"eps": arch.bn.eps, "momentum": arch.bn.momentum},
        "se": {"gate": arch.se.gate, "ratio": arch.se.ratio, "of": arch.se.of,
               "divisor": arch.se.divisor},
        "stem": {"out_ch": arch.stem.out_ch, "kernel": arch.stem.kernel,
                 "stride": arch.stem.stride, "act": arch.stem.act},
        "layers": layers,
        "head": head,
    }


def _se_width(value: int) -> str | None:
    return None if value == 0 else limits.width(value)


def _layer_count(value: list) -> str | None:
    if not value:
        return "needs at least one layer"
    return limits.at_most(limits.MAX_LAYERS, "layers")(len(value))


_LAYER_COMMON = {
    "kind": (str, one_of(LAYER_KINDS)),
    "in_ch": (int, limits.width),
    "out_ch": (int, limits.width),
    "stride": (int, one_of(STRIDES)),
    "act": (str, one_of(ACTIVATIONS)),
    "se_ch": (int, _se_width),
    "skip": (str, one_of(SKIPS)),
}


def arch_from_dict(data: Any, source: str = "<arch>") -> Arch:
    """Build an `Arch` from its JSON form; every problem is a `UserError`.

    Unknown or missing fields, unsupported values, widths and sizes past the limits
    (`search_spaces.infra.limits`; parameters counted before anything is built) and channel
    mismatches between consecutive layers are all reported with their key path
    (`layers[3].kernel`).
    """
    errors: list[str] = []
    r = FieldReader(errors)
    top = r.obj(data, "", {
        "schema_version": (int, lambda v: None if v == SCHEMA_VERSION
                           else f"unsupported schema version {v} (this release reads {SCHEMA_VERSION})"),
        "name": (str, None),
        "resolution": (int, limits.resolution),
        "in_ch": (int, limits.width),
        "num_classes": (int, limits.class_count),
        "bn": (dict, None),
        "se": (dict, None),
        "stem": (dict, None),
        "layers": (list, _layer_count),
        "head": (dict, None),
    })
    if isinstance(data, dict) and data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        _raise(errors[:1], source)  # a different schema: other complaints are noise
    if top is None:
        _raise(errors, source)
    bn = r.obj(top["bn"], "bn", {"eps": (float, positive), "momentum": (float, fraction)})
    se = r.obj(top["se"], "se", {"gate": (str, one_of(SE_GATES)), "ratio": (float, positive),
                                 "of": (str, one_of(("in", "mid"))),
                                 "divisor": (int, positive)})
    stem = r.obj(top["stem"], "stem", {"out_ch": (int, limits.width),
                                       "kernel": (int, one_of(STEM_KERNELS, "kernel")),
                                       "stride": (int, one_of(STRIDES)),
                                       "act": (str, one_of(ACTIVATIONS))})
    layers: list[Layer] = []
    for i, item in enumerate(top["layers"]):
        where = f"layers[{i}]"
        kind = item.get("kind") if isinstance(item, dict) else None
        if isinstance(item, dict) and kind not in LAYER_KINDS:  # other fields depend on it
            r.obj({"kind": kind}, where, {"kind": (str, one_of(LAYER_KINDS))})
            continue
        spec = KINDS.get(kind)  # None: not an object, reported by obj() below
        fields = dict(_LAYER_COMMON)
        fields["kernel"] = (int, one_of(spec.kernels if spec else (), "kernel"))
        if spec and spec.has_expansion:
            fields["exp_ch"] = (int, limits.width)
            fields["expand"] = (bool, None)
        d = r.obj(item, where, fields)
        if d is None:
            continue
        layer = Layer(**d)
        problem = _layer_problem(layer)
        if problem:
            errors.append(f"{where}.{problem}")
            continue
        layers.append(layer)
    head_kind = top["head"].get("kind")
    if head_kind not in HEAD_KINDS:  # which fields a head has depends on its kind
        r.obj({"kind": head_kind}, "head", {"kind": (str, one_of(HEAD_KINDS))})
        _raise(errors, source)
    head_fields = {"kind": (str, one_of(HEAD_KINDS)), "conv_ch": (int, limits.width),
                   "act": (str, one_of(ACTIVATIONS)), "dropout": (float, fraction)}
    if head_kind == "v3":
        head_fields["hidden_ch"] = (int, limits.width)
    head = r.obj(top["head"], "head", head_fields)
    if errors:
        _raise(errors, source)
    assert bn and se and stem and head
    arch = Arch(
        name=top["name"], resolution=top["resolution"], in_ch=top["in_ch"],
        num_classes=top["num_classes"], bn=BatchNorm(**bn), se=SERule(**se),
        stem=Stem(**stem), layers=tuple(layers), head=Head(**head),
    )
    _raise(chain_problems(arch), source)
    _raise(size_problems(arch), source)
    return arch


def size_problems(arch: Arch, max_params: int = limits.MAX_PARAMS) -> list[str]:
    """The network's parameters past `max_params`, counted without building it."""
    rows = count_rows(arch)
    params = sum(r.params for r in rows)
    if params <= max_params:
        return []
    worst = max(rows, key=lambda r: r.params)
    return [f"{worst.name}: the network has {params:,} parameters ({worst.params:,} in "
            f"{worst.name}), more than limits.max_params ({max_params:,})"]


def _layer_problem(layer: Layer) -> str | None:
    """A problem within one layer, as `field: message`, or None."""
    problem = kind_of(layer).problem(layer)
    if problem:
        return problem
    if layer.skip == "identity" and (layer.stride != 1 or layer.in_ch != layer.out_ch):
        return (f"skip: an identity residual needs stride 1 and in_ch == out_ch "
                f"(got stride {layer.stride}, {layer.in_ch} -> {layer.out_ch})")
    if layer.skip == "pool" and layer.in_ch != layer.out_ch:
        return f"skip: a pooling residual needs in_ch == out_ch (got {layer.in_ch} -> {layer.out_ch})"
    return None


def chain_problems(arch: Arch) -> list[str]:
    """Channel mismatches between consecutive pieces of the network."""
    problems = []
    prev, prev_name = arch.stem.out_ch, "stem.out_ch"
    for i, layer in enumerate(arch.layers):
        if layer.in_ch != prev:
            problems.append(f"layers[{i}].in_ch: is {layer.in_ch} but {prev_name} is {prev}")
        prev, prev_name = layer.out_ch, f"layers[{i}].out_ch"
    return problems


def _raise(errors: list[str], source: str) -> None:
    if not errors:
        return
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise UserError(errors[0] + more, source)


def load_arch(path: str | Path) -> Arch:
    """Read an Arch JSON file strictly."""
    return arch_from_dict(read_json(path), str(path))
