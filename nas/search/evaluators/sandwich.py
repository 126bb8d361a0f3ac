"""The sandwich rule with in-place distillation (BigNAS, Yu et al. 2020, sec. 3.1; the
distillation from slimmable networks, Yu & Huang 2019): each supernet training step
trains the largest child, the smallest and a few uniformly drawn ones, their gradients
summed into one update. The largest learns from the labels; with distillation the
others learn from its outputs (detached), which BigNAS finds lets every size of child
train well under the one shared set of weights."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from nas.train import LossFn
from search_spaces.supernet import SuperNet


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The cross entropy of `logits` against the probabilities `target`, per-sample mean."""
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def sandwich_loss(supernet: SuperNet, random_children: int, distill: bool,
                  label_smoothing: float = 0.0) -> LossFn:
    """A `train` loss that runs one sandwich step of `supernet` (the sum of its
    children's losses). The step counter (`supernet.sampled`, in the state dict) moves
    one per step, so a resumed training draws the children an uninterrupted one would."""

    def loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        step = int(supernet.sampled)
        supernet.sampled += 1
        largest, *others = supernet.sandwich(step, random_children)
        teacher = supernet(x, largest)
        total = F.cross_entropy(teacher, y, label_smoothing=label_smoothing)
        target = teacher.detach().softmax(dim=1) if distill else None
        for values in others:
            logits = supernet(x, values)
            total = total + (soft_cross_entropy(logits, target) if target is not None else
                             F.cross_entropy(logits, y, label_smoothing=label_smoothing))
        return total

    return loss
