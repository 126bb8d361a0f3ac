"""NetAdapt proposals: each shrinks one thing just enough to save `delta` ms.

MobileNetV3 sec. 4.2.2 uses two kinds: shrink one expansion layer (the 1x1 expand
conv of an mbconv, its depthwise conv and SE following), and shrink one bottleneck:
every layer whose output is summed into the same residual stream, together, so the
residual additions stay valid (the consumers' input channels follow).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from latency.shrink import set_expansion, set_group_width
from search_spaces.arch import Arch
from search_spaces.channels import STEM, expandable, group_width, residual_groups


@dataclass(frozen=True)
class Proposal:
    """One candidate: `arch` with one width cut, and what the latency model says."""

    name: str  # "expansion/3" (layer 3) or "bottleneck/2" (residual group 2)
    kind: str
    nodes: tuple[int, ...]  # the layers whose width changes (-1: the stem)
    width_before: int
    width_after: int
    arch: Arch
    latency_ms: float  # predicted, of `arch`

    @property
    def layers_touched(self) -> str:
        return " ".join("stem" if n == STEM else str(n) for n in self.nodes)


def narrower_widths(width: int, step: int, minimum: int) -> list[int]:
    """Multiples of `step` below `width` and not below `minimum`, widest first."""
    top = (width - 1) // step * step
    return [w for w in range(top, 0, -step) if w >= minimum]


def _candidates(arch: Arch, kinds: Sequence[str]
                ) -> list[tuple[str, str, tuple[int, ...], int, Callable[[int], Arch]]]:
    out = []
    if "expansion" in kinds:
        for i in expandable(arch):
            out.append((f"expansion/{i}", "expansion", (i,), arch.layers[i].exp_ch or 0,
                        lambda w, i=i: set_expansion(arch, i, w)))
    if "bottleneck" in kinds:
        for g, group in enumerate(residual_groups(arch)):
            out.append((f"bottleneck/{g}", "bottleneck", tuple(group), group_width(arch, group),
                        lambda w, group=group: set_group_width(arch, group, w)))
    return out


def make_proposals(arch: Arch, latency: Callable[[Arch], float], delta_ms: float,
                   kinds: Sequence[str], step: int, min_channels: int
                   ) -> tuple[list[Proposal], list[str]]:
    """Every proposal for `arch`, and a reason for each candidate that has none.

    For each candidate the smallest cut is taken: the widest width (a multiple of
    `step`) whose predicted latency is at least `delta_ms` below `arch`'s.
    """
    base = latency(arch)
    proposals: list[Proposal] = []
    skipped: list[str] = []
    for name, kind, nodes, width, shrink in _candidates(arch, kinds):
        widths = narrower_widths(width, step, min_channels)
        if not widths:
            skipped.append(f"{name}: width {width} is at the minimum ({min_channels}, step {step})")
            continue
        best_drop = 0.0
        for w in widths:
            new = shrink(w)
            ms = latency(new)
            best_drop = max(best_drop, base - ms)
            if base - ms >= delta_ms:
                proposals.append(Proposal(name, kind, nodes, width, w, new, ms))
                break
        else:
            skipped.append(f"{name}: even {widths[-1]} channels save only {best_drop:.4f} ms "
                           f"< delta {delta_ms:.4f} ms")
    return proposals, skipped


def score(metric: str, acc_new: float, acc_prev: float, ms_new: float, ms_prev: float) -> float:
    """The selection metric: `acc_per_latency` (MobileNetV3) is dAcc / |dLatency|
    (dAcc usually negative: the least accuracy given up per ms saved wins);
    `max_acc` (NetAdapt) is the proposal's accuracy."""
    if metric == "max_acc":
        return acc_new
    if metric == "acc_per_latency":
        return (acc_new - acc_prev) / abs(ms_new - ms_prev)
    raise ValueError(f"unknown metric {metric!r}")


def choose(scores: Sequence[float | None]) -> int | None:
    """Index of the best score (the first on ties); None when every proposal failed."""
    best: int | None = None
    for i, s in enumerate(scores):
        if s is not None and (best is None or s > scores[best]):  # type: ignore[operator]
            best = i
    return best
