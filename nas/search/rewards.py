"""Multi-objective rewards: accuracy traded against latency (MnasNet sec. 3, TuNAS)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from search_spaces.infra.checks import positive
from search_spaces.infra.errors import UserError

# MnasNet sec. 3: w = -0.07 for the soft constraint; MobileNetV3 sec. 4.1 uses -0.15
# for small models, whose accuracy changes more sharply with latency.
PRESETS = {"large": -0.07, "small": -0.15}


@dataclass
class RewardConfig:
    """`reward:` how accuracy and latency combine into the controller's reward."""

    kind: Literal["mnas", "mnas_hard", "abs"] = "mnas"
    # TAR: in ms (this machine's), or `target_ratio` x the latency of `target_reference`
    # under the experiment's latency model at its input (the same on any machine whose
    # table is built there); at most one of the two (a search needs one).
    target_ms: float | None = field(default=None, metadata={"check": positive})
    target_ratio: float | None = field(default=None, metadata={"check": positive})
    # A network (`nas.resolve`: a reference net name, an Arch JSON, a folder, a run);
    # absent: the skeleton's namesake (mobilenetv3_small -> mobilenet_v3_small).
    target_reference: str | None = None
    alpha: float | None = None  # exponent when LAT <= TAR (mnas)
    beta: float | None = None  # exponent when LAT > TAR (mnas); the penalty weight (abs)
    preset: Literal["small", "large"] | None = None

    def __post_init__(self) -> None:
        if self.target_ms is not None and self.target_ratio is not None:
            raise UserError("reward: set one of target_ms and target_ratio, not both")
        if self.target_reference is not None and self.target_ratio is None:
            raise UserError("reward.target_reference: the net that reward.target_ratio "
                            "is a fraction of; set target_ratio too")


@dataclass(frozen=True)
class Reward:
    """A resolved reward function: `kind`, target and weights, all explicit."""

    kind: str
    target_ms: float
    alpha: float
    beta: float

    def __call__(self, accuracy: float, latency_ms: float) -> tuple[float, float]:
        """(reward, latency factor) for one child.

        mnas / mnas_hard: ACC * (LAT/TAR)^w, w = alpha if LAT <= TAR else beta; the
        factor is the multiplier (LAT/TAR)^w. abs (TuNAS): ACC + beta * |LAT/TAR - 1|;
        the factor is the additive term.
        """
        ratio = latency_ms / self.target_ms
        if self.kind == "abs":
            term = self.beta * abs(ratio - 1.0)
            return accuracy + term, term
        w = self.alpha if ratio <= 1.0 else self.beta
        factor = ratio ** w
        return accuracy * factor, factor


def make_reward(cfg: RewardConfig, source: str = "<config>") -> Reward:
    """Resolve presets and defaults; conflicting settings are user errors."""
    if cfg.target_ms is None:
        raise UserError("reward.target_ms: missing (the latency target in ms, or "
                        "reward.target_ratio of a reference net)", source)
    if cfg.kind == "mnas_hard":
        # MnasNet sec. 3: alpha = 0, beta = -1 gives a hard latency constraint.
        if cfg.alpha is not None or cfg.beta is not None or cfg.preset is not None:
            raise UserError("reward: mnas_hard fixes alpha = 0 and beta = -1; "
                            "remove reward.alpha/beta/preset", source)
        return Reward("mnas_hard", cfg.target_ms, 0.0, -1.0)
    if cfg.preset is not None and (cfg.alpha is not None or cfg.beta is not None):
        raise UserError("reward.preset: set either a preset or alpha/beta, not both", source)
    default = PRESETS[cfg.preset or "large"]
    if cfg.kind == "abs":
        if cfg.alpha is not None:
            raise UserError("reward.alpha: the abs reward has only beta", source)
        beta = default if cfg.beta is None else cfg.beta
        return Reward("abs", cfg.target_ms, 0.0, beta)
    alpha = default if cfg.alpha is None else cfg.alpha
    beta = default if cfg.beta is None else cfg.beta
    return Reward("mnas", cfg.target_ms, alpha, beta)
