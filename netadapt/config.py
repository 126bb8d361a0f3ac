"""`netadapt:` the algorithm's settings (the experiment YAML section's core)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from search_spaces.infra.checks import at_least_one, non_negative, open_unit, positive
from search_spaces.infra.errors import UserError

PROPOSAL_KINDS = ("expansion", "bottleneck")


@dataclass
class NetAdaptConfig:
    """How NetAdapt shrinks a network (Yang et al. 2018; MobileNetV3 sec. 4.2).

    At most one of `target_ms` (absolute) and `target_ratio` (of the starting latency
    L0); an experiment with neither targets its reward's target (`nas.config`).
    Each iteration cuts at least `delta_ratio * L0`.
    """

    target_ms: float | None = field(default=None, metadata={"check": positive})
    target_ratio: float | None = field(default=None, metadata={"check": open_unit})
    # MobileNetV3 sec. 4.2.2: delta = 0.01 |L|.
    delta_ratio: float = field(default=0.01, metadata={"check": open_unit})
    # T: the paper fine-tunes each proposal 10000 steps; CPUs want far fewer.
    short_term_steps: int = field(default=100, metadata={"check": at_least_one})
    proposals: list[Literal["expansion", "bottleneck"]] = field(
        default_factory=lambda: list(PROPOSAL_KINDS))
    # acc_per_latency: MobileNetV3's dAcc / |dLatency|; max_acc: NetAdapt's original.
    metric: Literal["acc_per_latency", "max_acc"] = "acc_per_latency"
    channel_step: int = field(default=8, metadata={"check": at_least_one})
    min_channels: int = field(default=8, metadata={"check": at_least_one})
    # The long-term fine-tune of the final network (0: none).
    long_term_epochs: float = field(default=1.0, metadata={"check": non_negative})
    max_iterations: int = field(default=100, metadata={"check": at_least_one})

    def __post_init__(self) -> None:
        if self.target_ms is not None and self.target_ratio is not None:
            raise UserError("netadapt: set exactly one of target_ms and target_ratio")
        if not self.proposals:
            raise UserError("netadapt.proposals: choose at least one of "
                            f"{', '.join(PROPOSAL_KINDS)}")
        if len(set(self.proposals)) != len(self.proposals):
            raise UserError(f"netadapt.proposals: listed twice in {self.proposals}")

    def target(self, start_ms: float) -> float:
        """The latency to reach, in ms, given the starting latency."""
        if self.target_ms is not None:
            return self.target_ms
        if self.target_ratio is None:
            raise UserError("netadapt: set target_ms or target_ratio")
        return self.target_ratio * start_ms
