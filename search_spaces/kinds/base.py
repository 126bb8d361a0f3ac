"""What a layer kind is: the one interface every stage iterates over.

A kind says which fields its layers carry and what makes them valid, and spells its
computation as a list of parts (`ConvPart`, `SEPart`) over channel roles:

- `in`: the layer's input channels, `out`: its output channels,
- `mid`: an expansion width of its own (only where the layer has one),
- `se`: the squeeze width of its squeeze-and-excite.

From the parts alone the builder registers the torch modules, counting adds up
params and MACs, the latency model sizes activation memory, and NetAdapt's weight
inheritance knows which tensors consume which width. A new kind is one module in
this package plus its entry in `KINDS` (`search_spaces/kinds/__init__.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar
from search_spaces.layer import Layer


@dataclass(frozen=True)
class ConvPart:
    """A KxK convolution without bias, BatchNorm, and `act` (None: linear), registered
    as `name` (a Sequential: 0 conv, 1 BN, 2 activation). `src`/`dst` are the roles of
    its input and output channels; a depthwise conv has one group per channel."""

    name: str
    src: str
    dst: str
    kernel: int
    stride: int
    act: str | None
    depthwise: bool = False


@dataclass(frozen=True)
class SEPart:
    """Squeeze-and-excite on the channels of role `on`, squeezing to `se_ch`."""

    on: str
    name: str = "se"


Part = ConvPart | SEPart


def role_widths(layer: Layer) -> dict[str, int]:
    """Each role's channel count (`mid` is 0 where the kind has no expansion width)."""
    return {"in": layer.in_ch, "mid": layer.exp_ch or 0, "out": layer.out_ch,
            "se": layer.se_ch}


class LayerKind:
    """One kind of layer (`conv`, `dsconv`, `mbconv`, ...): fields, validation, parts."""

    name: ClassVar[str]
    kernels: ClassVar[tuple[int, ...]]
    # Layers of the kind carry `expand` and `exp_ch` (absent from the JSON otherwise).
    has_expansion: ClassVar[bool] = False
    # Factorized-space op names this kind decodes, with their expansion ratio.
    space_ops: ClassVar[dict[str, int]] = {}

    def parts(self, layer: Layer) -> list[Part]:
        """The layer's computation in order (the residual is the block's, not a part)."""
        raise NotImplementedError

    def mid_role(self, layer: Layer) -> str:
        """The role of the channels SE acts on (and a depthwise conv, if any)."""
        raise NotImplementedError

    def expandable(self, layer: Layer) -> bool:
        """Whether the layer has a width of its own that NetAdapt may shrink."""
        return self.mid_role(layer) == "mid"

    def normalize(self, layer: Layer) -> Layer:
        """`layer` with its dependent widths following the others (after a resize)."""
        return layer

    def problem(self, layer: Layer) -> str | None:
        """A problem within the layer's own fields, as `field: message`, or None."""
        return None

    def describe(self, layer: Layer) -> str:
        """The op part of `nas info`'s description (`mbconv e72`)."""
        return self.name

    def make(self, ratio: int, in_ch: int, out_ch: int, kernel: int, stride: int,
             act: str) -> Layer:
        """A layer for a factorized-space op of this kind (no SE, no residual yet)."""
        return Layer(self.name, in_ch, out_ch, kernel, stride, act)

    def from_row(self, in_ch: int, exp_ch: int, out_ch: int, kernel: int, stride: int,
                 act: str, se_ch: int, skip: str) -> Layer:
        """The layer a latency-table row describes (`exp_ch` 0: no expansion)."""
        return Layer(self.name, in_ch, out_ch, kernel, stride, act, se_ch, skip)

    def row_exp_ch(self, layer: Layer) -> int:
        """The latency-table row's `exp_ch`: the expansion width, 0 without one."""
        return 0


def se_parts(layer: Layer, on: str) -> list[Part]:
    return [SEPart(on)] if layer.se_ch else []


class ExpansionKind(LayerKind):
    """A kind with an optional expansion: `expand: false` drops one conv, and then
    `exp_ch` is not a width of its own but equals the role `alias` (kept explicit in
    the JSON so that nothing is inferred from channel equality)."""

    has_expansion = True
    alias: ClassVar[str]

    def mid_role(self, layer: Layer) -> str:
        return "mid" if layer.expand else self.alias

    def normalize(self, layer: Layer) -> Layer:
        if layer.expand:
            return layer
        return replace(layer, exp_ch=role_widths(layer)[self.alias])

    def problem(self, layer: Layer) -> str | None:
        keep = role_widths(layer)[self.alias]
        if not layer.expand and layer.exp_ch != keep:
            return (f"exp_ch: is {layer.exp_ch} but a layer without expansion keeps "
                    f"{self.alias}_ch ({keep})")
        return None

    def make(self, ratio: int, in_ch: int, out_ch: int, kernel: int, stride: int,
             act: str) -> Layer:
        return Layer(self.name, in_ch, out_ch, kernel, stride, act, exp_ch=in_ch * ratio,
                     expand=True)

    def from_row(self, in_ch: int, exp_ch: int, out_ch: int, kernel: int, stride: int,
                 act: str, se_ch: int, skip: str) -> Layer:
        layer = Layer(self.name, in_ch, out_ch, kernel, stride, act, se_ch, skip,
                      exp_ch=exp_ch, expand=exp_ch > 0)
        return self.normalize(layer)

    def row_exp_ch(self, layer: Layer) -> int:
        return (layer.exp_ch or 0) if layer.expand else 0

    def describe(self, layer: Layer) -> str:
        return f"{self.name}{'' if layer.expand else ' (no expand)'} e{layer.exp_ch}"
