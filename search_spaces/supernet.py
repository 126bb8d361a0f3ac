"""The weight-sharing supernet over a factorized space (TuNAS; single-path one-shot).

Every layer position of every block (up to the block's largest layer count) holds one
set of weights per layer kind (`mbconv3` and `mbconv6` share the `mbconv` weights;
with `share_ops`, `dsconv` does too), each tensor at the largest shape any decision gives it. A child's weights are slices:
kernels are the centre crop of the largest kernel (once-for-all's elastic kernel),
widths the first channels of the widest, depth the first layers of the block; skip
and activation choices have no weights, and SE is the first squeeze channels or
absent. BatchNorm statistics are not shared: each child's are re-estimated.

A child runs as `build_model(child)` itself, with the slices as its parameters
(`torch.func.functional_call` on the child's structure on the meta device), so what
the supernet computes for a path is, by construction, what the extracted child
(`SuperNet.extract`) computes in `build_model(child)`.
"""

from __future__ import annotations

import functools
import random
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call

from search_spaces.arch import Arch, Layer
from search_spaces.builder import Block, build_model
from search_spaces.counting import count
from search_spaces.factorized import FactorizedSpace
from search_spaces.infra.seeds import seed_for

_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
# With `share_ops`, a kind whose parameters are a subset of another's, under the same
# names, takes its weights from that kind's slot: a dsconv is an mbconv of expansion 1
# without the expansion (MobileNetV2's first block), its depthwise, SE and projection
# the first channels of the mbconv's. A full `conv` shares with nothing.
SHARED_KINDS = {"dsconv": "mbconv"}


def _dotless(key: str) -> str:
    return key.replace(".", "/")  # parameter names cannot hold dots


@functools.lru_cache(maxsize=1024)
def _layer_entries(layer: Layer, bn: Any, gate: str) -> tuple[tuple[str, tuple, type], ...]:
    """(state-dict suffix, shape, owning module type) of one layer's parameters."""
    with torch.device("meta"):
        block = Block(layer, bn, gate)
    owners = dict(block.named_modules())
    return tuple((name, tuple(p.shape), type(owners[name.rpartition(".")[0]]))
                 for name, p in block.named_parameters())


def _init(t: torch.Tensor, owner: type, name: str) -> None:
    """builder's (torchvision's) initialisation, at the supernet's largest shapes."""
    with torch.no_grad():
        if name.endswith("bias"):
            t.zero_()
        elif issubclass(owner, nn.Conv2d):
            nn.init.kaiming_normal_(t, mode="fan_out")
        elif issubclass(owner, nn.modules.batchnorm._BatchNorm):
            t.fill_(1.0)
        elif issubclass(owner, nn.Linear):
            t.normal_(0, 0.01)
        else:
            raise TypeError(f"no initialisation for a {owner.__name__} parameter")


def crop(t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """`t`'s first channels in every dimension, and the centre of a 4-D tensor's
    kernel dimensions (a view: gradients reach the shared tensor)."""
    index = []
    for dim, (have, want) in enumerate(zip(t.shape, shape)):
        if want > have:
            raise ValueError(f"shape {tuple(shape)} exceeds the shared {tuple(t.shape)}")
        start = (have - want) // 2 if t.dim() == 4 and dim >= 2 else 0
        index.append(slice(start, start + want))
    return t[tuple(index)]


# Skip ops hold no weights, so size says nothing about them; the extremes keep every
# residual the shapes allow (`pool` keeps the most: it is `identity` at stride 1).
# Without residuals the largest child of the mobilenetv3 space is 16 plain mbconv6
# layers that barely train (400 steps alone: loss 2.13 and validation top-1 0.18, against
# 1.75 and 0.40 with residuals),
# and in the sandwich rule that child teaches all the others (BENCHMARKS.md, issue 29).
_RESIDUAL_FIRST = ("pool", "identity", "none")


def _with_residuals(space: FactorizedSpace, values: dict[str, Any]) -> dict[str, Any]:
    for d in space.decisions:
        if d.name.endswith("/skip"):
            values[d.name] = next(s for s in _RESIDUAL_FIRST if s in d.options)
    return values


def largest_child(space: FactorizedSpace) -> dict[str, Any]:
    """The decisions with every option at its last (widest, deepest, largest op), and
    every residual the shapes allow."""
    return _with_residuals(space, {d.name: d.options[-1] for d in space.decisions})


def smallest_child(space: FactorizedSpace) -> dict[str, Any]:
    """The child of fewest MACs (then parameters) with every residual the shapes allow:
    each decision in turn set to its cheapest option given the others, until nothing
    changes. The options' order is no guide here: the first op (`conv`) is a full
    convolution, dearer than `dsconv`."""
    values = _with_residuals(space, {d.name: d.options[0] for d in space.decisions})
    skips = {d.name for d in space.decisions if d.name.endswith("/skip")}

    def cost(v: Mapping[str, Any]) -> tuple[int, int]:
        params, macs = count(space.decode(v))
        return macs, params

    best = cost(values)
    for _ in range(len(space.decisions)):  # a bound; two or three rounds settle it
        moved = False
        for d in space.decisions:
            if d.name in skips:
                continue
            for option in d.options:
                trial = {**values, d.name: option}
                c = cost(trial)
                if c < best:
                    values, best, moved = trial, c, True
        if not moved:
            break
    return values


class SuperNet(nn.Module):
    """Shared weights for every child of `space`.

    In training mode a call without an architecture trains one uniformly sampled
    child (single-path sampling, Guo et al. 2019): the child of training step `s` is
    drawn from `seed` and `s` alone, and `s` is a buffer, so a resumed training samples
    exactly the children an uninterrupted one would.
    """

    def __init__(self, space: FactorizedSpace, seed: int = 0, share_ops: bool = False) -> None:
        super().__init__()
        self.space = space
        self.seed = seed
        self.share_ops = share_ops
        self.register_buffer("sampled", torch.zeros((), dtype=torch.int64))
        entries: dict[str, tuple[list[int], type]] = {}

        def widen(key: str, shape: Sequence[int], owner: type) -> None:
            have = entries.setdefault(key, ([0] * len(shape), owner))[0]
            have[:] = [max(a, b) for a, b in zip(have, shape)]

        base = space.sample(random.Random(0))
        last_outs = set()
        prev_outs = {space.skeleton.stem}
        for i, block in enumerate(space.skeleton.blocks):
            opts = space.block_options(i)
            outs = {space.block_width(block, w) for w in opts["width"]}
            depth = max(space.layer_count(block, d) for d in opts["layers"])
            for j in range(depth):
                ins = prev_outs if j == 0 else outs
                stride = block.stride if j == 0 else 1
                for op in opts["op"]:
                    for kernel in opts["kernel"]:
                        for se in opts["se"]:
                            choice = {"op": op, "kernel": kernel, "se": se, "skip": "none"}
                            for in_ch in ins:
                                for out_ch in outs:
                                    layer = space.make_layer(choice, in_ch, out_ch, stride,
                                                             "relu")
                                    prefix = self.slot(i, j, layer.kind)
                                    for name, shape, owner in _layer_entries(
                                            layer, space.family.bn, space.family.se.gate):
                                        widen(f"{prefix}/{_dotless(name)}", shape, owner)
            prev_outs = last_outs = outs
        # Stem and head: one child per width the last block can end with.
        last = len(space.skeleton.blocks) - 1
        width_key = f"block{last}/width"
        for out_ch in sorted(last_outs):
            values = dict(base)
            if width_key in values:
                values[width_key] = next(w for w in space.block_options(last)["width"]
                                         if space.block_width(space.skeleton.blocks[last], w)
                                         == out_ch)
            arch = space.decode(values)
            with torch.device("meta"):
                model = build_model(arch)
            owners = dict(model.named_modules())
            for name, p in model.named_parameters():
                if not name.startswith("layers."):
                    widen(_dotless(name), p.shape, type(owners[name.rpartition(".")[0]]))
        self.shared = nn.ParameterDict()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_for(seed, "supernet/init"))
            for key in sorted(entries):
                shape, owner = entries[key]
                t = torch.empty(shape)
                _init(t, owner, key)
                self.shared[key] = nn.Parameter(t)

    def slot(self, block: int, position: int, kind: str) -> str:
        """The name of the weights of `kind` at layer `position` of `block`."""
        if self.share_ops:
            kind = SHARED_KINDS.get(kind, kind)
        return f"b{block}p{position}:{kind}"

    # ------------------------------------------------------------ children

    def child(self, values: Mapping[str, Any]) -> tuple[Arch, list[str]]:
        """A child's Arch and, per layer, the slot its weights come from."""
        arch = self.space.decode(values)
        slots = []
        for i, (block, choice) in enumerate(zip(self.space.skeleton.blocks,
                                                self.space.block_choices(values))):
            for j in range(self.space.layer_count(block, choice["layers"])):
                slots.append(self.slot(i, j, arch.layers[len(slots)].kind))
        return arch, slots

    def sample(self, step: int, draw: int = 0) -> dict[str, Any]:
        """The uniformly drawn child of training step `step` (its `draw`-th, when a step
        trains several)."""
        key = f"supernet/step{step}" + (f"/{draw}" if draw else "")
        return self.space.sample(random.Random(seed_for(self.seed, key)))

    def sandwich(self, step: int, random_children: int) -> list[dict[str, Any]]:
        """The children of a sandwich-rule step (BigNAS sec. 3.1): the largest, the
        smallest, then `random_children` drawn from the seed and `step` alone."""
        return [*self.extremes, *(self.sample(step, r) for r in range(random_children))]

    @functools.cached_property
    def extremes(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(largest, smallest) child: computed once, a few hundred counts."""
        return largest_child(self.space), smallest_child(self.space)

    def shared_key(self, key: str, slots: Sequence[str]) -> str:
        """The shared tensor a child's state-dict entry is sliced from."""
        if key.startswith("layers."):
            _, index, rest = key.split(".", 2)
            return f"{slots[int(index)]}/{_dotless(rest)}"
        return _dotless(key)

    def tensors(self, structure: nn.Module, slots: Sequence[str],
                buffers: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The state dict of a child's `structure` (its model, any device) as views of
        the shared weights; BatchNorm buffers from `buffers` when given, else fresh
        (mean 0, variance 1)."""
        device = self.sampled.device
        out: dict[str, torch.Tensor] = {}
        for key, t in structure.state_dict().items():
            if key.endswith(_BN_BUFFERS):
                if buffers is not None:
                    out[key] = buffers[key]
                elif key.endswith("num_batches_tracked"):
                    out[key] = torch.zeros((), dtype=torch.int64, device=device)
                else:
                    fill = 0.0 if key.endswith("running_mean") else 1.0
                    out[key] = torch.full(tuple(t.shape), fill, device=device)
            else:
                out[key] = crop(self.shared[self.shared_key(key, slots)], t.shape)
        return out

    def extract(self, values: Mapping[str, Any]) -> tuple[Arch, dict[str, torch.Tensor]]:
        """A child's Arch and a state dict of its own (copies) for `build_model(arch)`;
        its BatchNorm statistics are fresh and want re-estimating."""
        arch, _, state = self._copied(values)
        return arch, state

    def inherit(self, values: Mapping[str, Any]) -> nn.Module:
        """`build_model(child)` holding the child's inherited weights (on this
        supernet's device)."""
        _, model, state = self._copied(values)
        model.load_state_dict(state, assign=True)
        return model

    def _copied(self, values: Mapping[str, Any]
                ) -> tuple[Arch, nn.Module, dict[str, torch.Tensor]]:
        """The child's Arch, its meta-device structure (built once) and its weights."""
        arch, slots = self.child(values)
        structure = _structure(arch)
        state = {k: v.detach().clone(memory_format=torch.contiguous_format)
                 for k, v in self.tensors(structure, slots).items()}
        return arch, structure, state

    def forward(self, x: torch.Tensor, values: Mapping[str, Any] | None = None,
                buffers: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The child `values` on `x` (in training mode without `values`: the next
        sampled child, see the class)."""
        if values is None:
            if not self.training:
                raise ValueError("an evaluating supernet needs the child's decisions")
            values = self.sample(int(self.sampled))
            self.sampled += 1
        arch, slots = self.child(values)
        structure = _structure(arch).train(self.training)
        return functional_call(structure, self.tensors(structure, slots, buffers), (x,))


def _structure(arch: Arch) -> nn.Module:
    """`build_model(arch)` on the meta device: modules and shapes, no memory."""
    with torch.device("meta"):
        return build_model(arch)
