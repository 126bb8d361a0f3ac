"""The RNN controller (MnasNet sec. 4.2, reusing NASNet's) and its policy-gradient training.

A one-layer LSTM emits the space's decisions in order; each step's softmax head picks
an option and that option's embedding is the next step's input, so every decision is
conditioned on the ones before. Trained with PPO (MnasNet's choice) or REINFORCE with
an exponential moving-average baseline.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import torch
from torch import nn

from search_spaces.infra.checks import positive
from search_spaces.infra.threads import torch_threads


@dataclass
class ControllerConfig:
    """`controller:` the RL strategy's hyper-parameters."""

    algo: Literal["ppo", "reinforce"] = "ppo"
    hidden: int = field(default=100, metadata={"check": positive})  # NASNet's controller
    # The paper's 3.5e-4 is tuned for ~8000 children; budgets of tens to hundreds of
    # children learn in time only with a larger step (see README).
    lr: float = field(default=5e-3, metadata={"check": positive})
    batch_size: int = field(default=8, metadata={"check": positive})
    entropy_weight: float = 1e-3
    baseline_decay: float = 0.95  # EMA of past rewards (REINFORCE baseline, PPO advantage)
    ppo_clip: float = 0.2
    ppo_epochs: int = field(default=4, metadata={"check": positive})
    temperature: float = field(default=1.0, metadata={"check": positive})
    tanh_constant: float | None = 2.5  # NASNet: logits = c * tanh(logits / T)


class Controller(nn.Module):
    """LSTM policy over a fixed sequence of categorical decisions."""

    def __init__(self, num_options: Sequence[int], hidden: int = 100, temperature: float = 1.0,
                 tanh_constant: float | None = 2.5) -> None:
        super().__init__()
        self.num_options = list(num_options)
        self.temperature = temperature
        self.tanh_constant = tanh_constant
        self.start = nn.Parameter(torch.zeros(1, hidden))
        self.cell = nn.LSTMCell(hidden, hidden)
        self.embeddings = nn.ModuleList(nn.Embedding(n, hidden) for n in self.num_options)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in self.num_options)
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)

    def _logits(self, step: int, h: torch.Tensor) -> torch.Tensor:
        logits = self.heads[step](h) / self.temperature
        if self.tanh_constant is not None:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def _run(self, choices: torch.Tensor | None, generator: torch.Generator | None,
             batch: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Walk the decision sequence for a batch; sample where `choices` is None."""
        x = self.start.expand(batch, -1)
        state = None
        picked, log_prob, entropy = [], torch.zeros(batch), torch.zeros(batch)
        for step in range(len(self.num_options)):
            state = self.cell(x, state)
            logp = torch.log_softmax(self._logits(step, state[0]), dim=-1)
            if choices is None:
                c = torch.multinomial(logp.detach().exp(), 1, generator=generator)[:, 0]
            else:
                c = choices[:, step]
            picked.append(c)
            log_prob = log_prob + logp.gather(1, c[:, None])[:, 0]
            entropy = entropy - (logp.exp() * logp).sum(-1)
            x = self.embeddings[step](c)
        return torch.stack(picked, 1), log_prob, entropy

    def sample(self, generator: torch.Generator) -> tuple[list[int], float, float]:
        """(option indices, log-probability, entropy) of one sampled architecture."""
        with torch.no_grad():
            picked, lp, ent = self._run(None, generator)
        return picked[0].tolist(), float(lp[0]), float(ent[0])

    def evaluate(self, choices: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable (log-probabilities, entropies) of a batch of given choices."""
        batch = torch.tensor([list(c) for c in choices], dtype=torch.long)
        _, lp, ent = self._run(batch, None, len(batch))
        return lp, ent


class ControllerTrainer:
    """Samples from the controller and learns from rewards, `batch_size` at a time."""

    def __init__(self, num_options: Sequence[int], cfg: ControllerConfig, seed: int) -> None:
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):  # seeded init, global RNG untouched
            torch.manual_seed(seed)
            self.controller = Controller(num_options, cfg.hidden, cfg.temperature,
                                         cfg.tanh_constant)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=cfg.lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.baseline: float | None = None
        self.buffer: list[tuple[list[int], float, float]] = []  # (choices, old log-prob, reward)
        self.updates = 0

    def sample(self) -> tuple[list[int], float]:
        # The controller's ops are tiny: with several intra-op threads on a busy
        # machine they run 10-50x slower (measured), so they run on one.
        with torch_threads(1):
            choices, log_prob, _ = self.controller.sample(self.generator)
        return choices, log_prob

    def observe(self, choices: list[int], log_prob: float, reward: float) -> bool:
        """Record one child's reward; update once a batch is full. True if it updated."""
        self.buffer.append((choices, log_prob, reward))
        if len(self.buffer) < self.cfg.batch_size:
            return False
        with torch_threads(1):
            self._update()
        self.buffer = []
        return True

    def _update(self) -> None:
        cfg = self.cfg
        rewards = [r for _, _, r in self.buffer]
        # The baseline before this batch is the reference its advantages are taken against.
        if self.baseline is None:
            self.baseline = sum(rewards) / len(rewards)
        advantages = [r - self.baseline for r in rewards]
        for r in rewards:
            self.baseline = cfg.baseline_decay * self.baseline + (1 - cfg.baseline_decay) * r
        adv = torch.tensor(advantages)
        old_lp = torch.tensor([lp for _, lp, _ in self.buffer])
        choices = [c for c, _, _ in self.buffer]
        for _ in range(cfg.ppo_epochs if cfg.algo == "ppo" else 1):
            lp, ent = self.controller.evaluate(choices)
            if cfg.algo == "ppo":
                ratio = torch.exp(lp - old_lp)
                clipped = torch.clamp(ratio, 1 - cfg.ppo_clip, 1 + cfg.ppo_clip)
                objective = torch.minimum(ratio * adv, clipped * adv)
            else:
                objective = lp * adv
            loss = -(objective + cfg.entropy_weight * ent).mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "controller": self.controller.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "baseline": self.baseline,
            "buffer": [list(item) for item in self.buffer],
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.baseline = state["baseline"]
        self.buffer = [(list(c), float(lp), float(r)) for c, lp, r in state["buffer"]]
        self.updates = state["updates"]

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        return buf.getvalue()

    def from_bytes(self, blob: bytes) -> None:
        self.load_state_dict(torch.load(io.BytesIO(blob), weights_only=True))
