"""Search strategies behind one ask/tell interface, so budgets compare fairly.

- `rl`: the RNN controller (MnasNet), PPO or REINFORCE.
- `random`: uniform sampling.
- `evolution`: regularized (aging) evolution (Real et al. 2019): tournament selection
  from the most recent `population` children, one mutated decision, oldest dies.

`ask()` may be called several times before the matching `tell()` (parallel trials);
each strategy's randomness comes from its own seeded generator, so replaying the same
ask/tell sequence reproduces its state exactly: that is how a killed search resumes.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from nas.search.controller import ControllerConfig, ControllerTrainer
from search_spaces.factorized import FactorizedSpace
from search_spaces.infra.checks import positive


@dataclass
class EvolutionConfig:
    """`evolution:` regularized evolution's settings."""

    population: int = field(default=16, metadata={"check": positive})
    sample_size: int = field(default=4, metadata={"check": positive})  # tournament size


class Strategy(ABC):
    """Proposes decision values (as option indices) and learns from rewards."""

    def __init__(self, space: FactorizedSpace, seed: int) -> None:
        self.space = space
        self.num_options = [len(d.options) for d in space.decisions]
        self.seed = seed

    @abstractmethod
    def ask(self) -> list[int]:
        """The next child's option indices, in decision order."""

    @abstractmethod
    def tell(self, choices: list[int], reward: float | None) -> None:
        """The reward of an asked child (None: the trial failed)."""


class RandomStrategy(Strategy):
    def __init__(self, space: FactorizedSpace, seed: int) -> None:
        super().__init__(space, seed)
        self.rng = random.Random(seed)

    def ask(self) -> list[int]:
        return [self.rng.randrange(n) for n in self.num_options]

    def tell(self, choices: list[int], reward: float | None) -> None:
        pass


class EvolutionStrategy(Strategy):
    def __init__(self, space: FactorizedSpace, seed: int, cfg: EvolutionConfig) -> None:
        super().__init__(space, seed)
        self.cfg = cfg
        self.rng = random.Random(seed)
        self.population: deque[tuple[list[int], float]] = deque()
        self.asked = 0

    def ask(self) -> list[int]:
        self.asked += 1
        # Until the population is full, children are random (the initial population).
        if len(self.population) < self.cfg.population:
            return [self.rng.randrange(n) for n in self.num_options]
        contenders = self.rng.sample(list(self.population),
                                     min(self.cfg.sample_size, len(self.population)))
        parent = max(contenders, key=lambda item: item[1])[0]
        child = list(parent)
        mutable = [i for i, n in enumerate(self.num_options) if n > 1]
        i = self.rng.choice(mutable)
        child[i] = self.rng.choice([o for o in range(self.num_options[i]) if o != child[i]])
        return child

    def tell(self, choices: list[int], reward: float | None) -> None:
        if reward is None:
            return
        self.population.append((list(choices), reward))
        if len(self.population) > self.cfg.population:
            self.population.popleft()  # aging: the oldest dies, not the worst


class RLStrategy(Strategy):
    def __init__(self, space: FactorizedSpace, seed: int, cfg: ControllerConfig) -> None:
        super().__init__(space, seed)
        self.trainer = ControllerTrainer(self.num_options, cfg, seed)
        self.pending: dict[tuple[int, ...], list[float]] = {}  # choices -> log-probs asked

    def ask(self) -> list[int]:
        choices, log_prob = self.trainer.sample()
        self.pending.setdefault(tuple(choices), []).append(log_prob)
        return choices

    def tell(self, choices: list[int], reward: float | None) -> None:
        log_probs = self.pending.get(tuple(choices))
        if not log_probs:
            raise KeyError("tell() for choices that were never asked")
        log_prob = log_probs.pop(0)
        if not log_probs:
            del self.pending[tuple(choices)]
        if reward is not None:  # a failed child teaches nothing about accuracy
            self.trainer.observe(list(choices), log_prob, reward)


# `search.strategy` -> how it is built from the space, the seed and the settings
# sections (`controller:`, `evolution:`). A new strategy: its class above, one line here.
STRATEGIES: dict[str, Callable[[FactorizedSpace, int, ControllerConfig, EvolutionConfig],
                               Strategy]] = {
    "rl": lambda space, seed, controller, evolution: RLStrategy(space, seed, controller),
    "random": lambda space, seed, controller, evolution: RandomStrategy(space, seed),
    "evolution": lambda space, seed, controller, evolution:
        EvolutionStrategy(space, seed, evolution),
}


def make_strategy(name: str, space: FactorizedSpace, seed: int,
                  controller: ControllerConfig, evolution: EvolutionConfig) -> Strategy:
    """The strategy `search.strategy` names (the config has checked the name)."""
    return STRATEGIES[name](space, seed, controller, evolution)
