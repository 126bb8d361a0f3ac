"""The factorized hierarchical search spaces: `mnasnet` and `mobilenetv3`.

MnasNet sec. 4.1: the network is a sequence of blocks; each block repeats one layer
`layers` times and searches, per block: conv op, kernel, SE ratio, skip op, filter
multiplier of the block's base width, and layer count relative to the base count.
The `mobilenetv3` space adds a per-block activation (relu or h-swish), sizes SE at
1/4 of the expansion (rounded to multiples of 8), and uses the 16-filter h-swish
stem and the efficient last stage (MobileNetV3 sec. 5).

Every choice is a named `Decision` visited in a fixed order (`block2/kernel`, ...),
which is exactly the sequence an RNN controller emits.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, replace
from itertools import product
from typing import Any, Mapping, Sequence

from search_spaces.arch import Arch, BatchNorm, Head, Layer, SERule, Stem, make_divisible
from search_spaces.counting import count_rows, layer_cost
from search_spaces.infra import limits
from search_spaces.infra.checks import did_you_mean
from search_spaces.infra.errors import UserError
from search_spaces.kinds import SPACE_OPS, mid_width
from search_spaces.skeletons import PRESETS, BlockSpec, Skeleton

# MnasNet sec. 4.1's conv ops, the default. Every op a kind offers (`fused3`, `fused6`:
# EfficientNetV2's Fused-MBConv) can be added with the space's `ops`.
CONV_OPS = ("conv", "dsconv", "mbconv3", "mbconv6")
ALL_OPS = tuple(SPACE_OPS)
KERNELS = (3, 5)
SE_RATIOS = (0.0, 0.25)
SKIP_OPS = ("pool", "identity", "none")
WIDTH_MULTS = (0.75, 1.0, 1.25)
LAYER_DELTAS = (-1, 0, 1)
ACTIVATIONS = ("relu", "hswish")

BLOCK_OPTIONS: dict[str, tuple] = {
    "op": CONV_OPS, "kernel": KERNELS, "se": SE_RATIOS, "skip": SKIP_OPS,
    "width": WIDTH_MULTS, "layers": LAYER_DELTAS,
}


@dataclass(frozen=True)
class Decision:
    """One searchable choice: a path name and its finite, ordered options."""

    name: str
    options: tuple


@dataclass(frozen=True)
class Family:
    """What distinguishes the two spaces besides their decisions."""

    name: str
    default_skeleton: str
    act_choice: bool  # per-block activation decision (MobileNetV3)
    stem_act: str
    head_kind: str
    se: SERule
    bn: BatchNorm


FAMILIES = {
    # Official MnasNet: TF BN decay 0.99 / eps 1e-3, SE int(in * ratio) with sigmoid.
    "mnasnet": Family("mnasnet", "mobilenetv2", False, "relu", "v2",
                      SERule(gate="sigmoid", ratio=0.25, of="in", divisor=1),
                      BatchNorm(eps=1e-3, momentum=0.01)),
    # MobileNetV3 sec. 5.3: SE at 1/4 of the expansion, h-sigmoid gate.
    "mobilenetv3": Family("mobilenetv3", "mobilenetv3_large", True, "hswish", "v3",
                          SERule(gate="hsigmoid", ratio=0.25, of="mid", divisor=8),
                          BatchNorm(eps=1e-3, momentum=0.01)),
}
SPACE_NAMES = tuple(FAMILIES)


class FactorizedSpace:
    """A factorized hierarchical space over a block skeleton; decodes to `Arch`."""

    def __init__(self, family: str = "mnasnet", skeleton: str | Skeleton | None = None,
                 resolution: int = 224, stem_stride: int = 2, num_classes: int = 1000,
                 dropout: float = 0.2, ops: Sequence[str] | None = None) -> None:
        if family not in FAMILIES:
            raise UserError(f"search.space: unknown space '{family}' "
                            f"(choose from {', '.join(FAMILIES)})")
        self.family = FAMILIES[family]
        if skeleton is None:
            skeleton = self.family.default_skeleton
        if isinstance(skeleton, str):
            if skeleton not in PRESETS:
                raise UserError(f"search.skeleton: unknown preset '{skeleton}' "
                                f"(choose from {', '.join(PRESETS)})")
            skeleton = PRESETS[skeleton]
        self.ops = tuple(ops) if ops is not None else CONV_OPS
        problem = ops_problem(self.ops)
        if problem:
            raise UserError(f"search.ops: {problem}")
        problems = skeleton_problems(skeleton, self.family)
        if problems:
            raise UserError(f"search.skeleton.{problems[0]}")
        if limits.resolution(resolution) or stem_stride not in (1, 2):
            raise UserError(f"search.resolution must be 1..{limits.MAX_RESOLUTION} and stem "
                            f"stride 1 or 2, got {resolution} and {stem_stride}")
        self.skeleton = skeleton
        self.resolution = resolution
        self.stem_stride = stem_stride
        self.num_classes = num_classes
        self.dropout = dropout
        self.block_keys = tuple(BLOCK_OPTIONS) + (("act",) if self.family.act_choice else ())
        self.decisions: list[Decision] = [
            Decision(f"block{i}/{key}", self._options(key))
            for i, block in enumerate(skeleton.blocks)
            for key in self.block_keys if key not in block.fixed
        ]

    @property
    def name(self) -> str:
        return self.family.name

    def _options(self, key: str) -> tuple:
        if key == "op":
            return self.ops
        return ACTIVATIONS if key == "act" else BLOCK_OPTIONS[key]

    # ------------------------------------------------------------ decoding

    def values_from_indices(self, indices: Sequence[int]) -> dict[str, Any]:
        """Decision values from option indices in decision order (controller output)."""
        if len(indices) != len(self.decisions):
            raise ValueError(f"expected {len(self.decisions)} indices, got {len(indices)}")
        return {d.name: d.options[i] for d, i in zip(self.decisions, indices)}

    def indices_from_values(self, values: Mapping[str, Any]) -> list[int]:
        self._check(values)
        return [d.options.index(values[d.name]) for d in self.decisions]

    def decode_indices(self, indices: Sequence[int]) -> Arch:
        return self.decode(self.values_from_indices(indices))

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """Uniformly random decision values."""
        return {d.name: rng.choice(d.options) for d in self.decisions}

    def _check(self, values: Mapping[str, Any]) -> None:
        names = {d.name for d in self.decisions}
        for key in values:
            if key not in names:
                raise UserError(f"decisions: unknown decision '{key}'")
        for d in self.decisions:
            if d.name not in values:
                raise UserError(f"decisions: missing decision '{d.name}'")
            if values[d.name] not in d.options:
                raise UserError(f"decisions: {d.name}: {values[d.name]!r} is not one of "
                                f"{', '.join(map(str, d.options))}")

    def decode(self, values: Mapping[str, Any]) -> Arch:
        """The canonical `Arch` for a full set of decision values."""
        self._check(values)
        layers: list[Layer] = []
        prev = self.skeleton.stem
        for block, choice in zip(self.skeleton.blocks, self.block_choices(values)):
            block_layers = self._block(block, choice, prev)
            layers.extend(block_layers)
            prev = block_layers[-1].out_ch
        return self._arch(layers)

    def block_choices(self, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Each block's full choice (its fixed decisions included), in block order."""
        return [{k: block.fixed.get(k, values.get(f"block{i}/{k}")) for k in self.block_keys}
                for i, block in enumerate(self.skeleton.blocks)]

    def block_options(self, i: int) -> dict[str, tuple]:
        """Block `i`'s options per key; a fixed decision has its one value."""
        fixed = self.skeleton.blocks[i].fixed
        return {k: (fixed[k],) if k in fixed else self._options(k) for k in self.block_keys}

    @staticmethod
    def layer_count(block: BlockSpec, delta: int) -> int:
        """How many layers a block has for a layer-count decision `delta`."""
        return max(1, block.layers + delta)

    def block_width(self, block: BlockSpec, mult: float) -> int:
        """A block's output width for a filter multiplier `mult`."""
        return make_divisible(block.width * mult, 8)

    def _arch(self, layers: Sequence[Layer]) -> Arch:
        fam, sk = self.family, self.skeleton
        head_act = "hswish" if fam.act_choice else "relu"
        return Arch(
            resolution=self.resolution, num_classes=self.num_classes, bn=fam.bn, se=fam.se,
            stem=Stem(out_ch=sk.stem, kernel=3, stride=self.stem_stride, act=fam.stem_act),
            layers=tuple(layers),
            head=Head(kind=fam.head_kind, conv_ch=sk.head_conv, act=head_act,
                      hidden_ch=sk.head_hidden if fam.head_kind == "v3" else None,
                      dropout=self.dropout),
        )

    def _block(self, block: BlockSpec, choice: Mapping[str, Any], in_ch: int) -> list[Layer]:
        out_ch = self.block_width(block, choice["width"])
        count = self.layer_count(block, choice["layers"])
        act = choice.get("act", "relu")
        layers = []
        for j in range(count):
            stride = block.stride if j == 0 else 1
            layers.append(self.make_layer(choice, in_ch, out_ch, stride, act))
            in_ch = out_ch
        return layers

    def make_layer(self, choice: Mapping[str, Any], in_ch: int, out_ch: int, stride: int,
                   act: str) -> Layer:
        """One layer of a block with `choice` (op, kernel, se, skip) between widths."""
        kind, ratio = SPACE_OPS[choice["op"]]
        layer = kind.make(ratio, in_ch, out_ch, choice["kernel"], stride, act)
        se_ch = 0
        if choice["se"]:
            se_ch = replace(self.family.se, ratio=choice["se"]).squeeze(in_ch, mid_width(layer))
        return replace(layer, se_ch=se_ch,
                       skip=canonical_skip(choice["skip"], in_ch, out_ch, stride))

    # ------------------------------------------------------------ size

    def params_bound(self, per_op: bool = False) -> int:
        """An upper bound on the parameters of any child (`per_op`: of the supernet,
        which keeps each op's weights apart), counted without building anything, so a
        config can be refused before it allocates (`limits.max_params`)."""
        total, in_ch = 0, self.skeleton.stem
        for i, block in enumerate(self.skeleton.blocks):
            options = self.block_options(i)
            best: dict[str, int] = {}  # per op: its largest block
            for combo in product(*options.values()):
                choice = dict(zip(options, combo))
                # in_ch: the widest the block before can be; params grow with it
                params = sum(layer_cost(layer, 1)[0]
                             for layer in self._block(block, choice, in_ch))
                best[choice["op"]] = max(best.get(choice["op"], 0), params)
            total += sum(best.values()) if per_op else max(best.values())
            in_ch = max(self.block_width(block, m) for m in options["width"])
        ends = self._arch([Layer(kind="conv", in_ch=in_ch, out_ch=in_ch, kernel=3, stride=1,
                                 act="relu", se_ch=0, skip="none", exp_ch=None)])
        return total + sum(r.params for r in count_rows(ends) if r.name != "layers[0]")

    def raw_size(self) -> int:
        """Product of the option counts: distinct decision vectors."""
        return math.prod(len(d.options) for d in self.decisions)

    def size(self) -> int:
        """Distinct architectures after canonicalisation.

        Counted exactly per block (given the width entering it): choices that decode to
        the same layers count once (e.g. `pool` and `identity` skips on stride-1
        layers, a skip where no layer can have one, -1 layers on a 1-layer block).
        Blocks are then combined; two different block sequences that happen to spell
        the same layer list would count twice, which the shipped skeletons cannot do
        (neighbouring blocks differ in stride or in every reachable width).
        """
        ways: Counter[int] = Counter({self.skeleton.stem: 1})
        for block in self.skeleton.blocks:
            keys = [k for k in self.block_keys if k not in block.fixed]
            nxt: Counter[int] = Counter()
            for in_ch, n_prefix in ways.items():
                seen: set[tuple[Layer, ...]] = set()
                for combo in product(*(self._options(k) for k in keys)):
                    choice = {**block.fixed, **dict(zip(keys, combo))}
                    seen.add(tuple(self._block(block, choice, in_ch)))
                for layers in seen:
                    nxt[layers[-1].out_ch] += n_prefix
            ways = nxt
        return sum(ways.values())


def canonical_skip(skip: str, in_ch: int, out_ch: int, stride: int) -> str:
    """The residual a layer really gets: none where shapes forbid it; a pooling
    residual on a stride-1 layer is an identity residual."""
    if skip == "none" or in_ch != out_ch:
        return "none"
    if stride == 1:
        return "identity"
    return "pool" if skip == "pool" else "none"


def ops_problem(ops: Sequence[str]) -> str | None:
    if not ops:
        return "needs at least one op"
    unknown = [op for op in ops if op not in SPACE_OPS]
    if unknown:
        return (f"unknown op '{unknown[0]}' (choose from {', '.join(ALL_OPS)})"
                f"{did_you_mean(unknown[0], ALL_OPS)}")
    if len(set(ops)) != len(ops):
        return f"an op is listed twice in {list(ops)}"
    return None


def skeleton_problems(skeleton: Skeleton, family: Family) -> list[str]:
    """Problems in a skeleton, as `key.path: message` relative to the skeleton.

    A block may fix any op a kind offers, searched or not (`fixed: {op: fused3}`)."""
    problems = []
    for key in ("stem", "head_conv", "head_hidden"):
        value = getattr(skeleton, key)
        problem = limits.width(value) if value is not None else None
        if problem:
            problems.append(f"{key}: {problem}")
    if not skeleton.blocks:
        problems.append("blocks: needs at least one block")
    if len(skeleton.blocks) > limits.MAX_BLOCKS:
        problems.append(f"blocks: at most {limits.MAX_BLOCKS} blocks, got {len(skeleton.blocks)}")
    if family.head_kind == "v3" and not skeleton.head_hidden:
        problems.append("head_hidden: the mobilenetv3 last stage needs a hidden width")
    keys = dict(BLOCK_OPTIONS, op=ALL_OPS,
                **({"act": ACTIVATIONS} if family.act_choice else {}))
    for i, block in enumerate(skeleton.blocks):
        where = f"blocks[{i}]"
        # The widest filter multiplier must still fit: 1.25 x width <= MAX_WIDTH.
        top = max(WIDTH_MULTS)
        if block.width < 1 or block.width * top > limits.MAX_WIDTH:
            problems.append(f"{where}.width: must be in 1..{int(limits.MAX_WIDTH / top)} (x{top} "
                            f"at most {limits.MAX_WIDTH} channels), got {block.width:,}")
        if not 1 <= block.layers <= limits.MAX_BLOCK_LAYERS:
            problems.append(f"{where}.layers: must be in 1..{limits.MAX_BLOCK_LAYERS}, got "
                            f"{block.layers:,}")
        if block.stride not in (1, 2):
            problems.append(f"{where}.stride: must be 1 or 2, got {block.stride}")
        for key, value in block.fixed.items():
            if key not in keys:
                problems.append(f"{where}.fixed.{key}: unknown decision "
                                f"(choose from {', '.join(keys)})")
            elif value not in keys[key]:
                problems.append(f"{where}.fixed.{key}: {value!r} is not one of "
                                f"{', '.join(map(str, keys[key]))}")
    return problems


def make_space(name: str, skeleton: str | Skeleton | None = None, resolution: int = 224,
               stem_stride: int = 2, num_classes: int = 1000,
               ops: Sequence[str] | None = None) -> FactorizedSpace:
    """The space called `name` (`mnasnet` or `mobilenetv3`); `ops`: its conv op
    choices (default `CONV_OPS`)."""
    return FactorizedSpace(name, skeleton, resolution, stem_stride, num_classes, ops=ops)
