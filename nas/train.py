"""The proxy trainer: train a child (or fine-tune given weights) and score it.

Used by the search (train a sampled `Arch` from scratch for a short proxy task) and by
NetAdapt (fine-tune a pruned proposal for T steps). Accuracy is a fraction 0..1.
Seeding uses one generator per component (init, data order, augmentation, dropout)
and leaves torch's global RNG as it found it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal

import torch
from torch import nn
from torch.nn import functional as F

from nas.data import ImageSet, Splits, augment_batch, normalize
from search_spaces.arch import Arch
from search_spaces.builder import build_model
from search_spaces.infra.checks import non_negative, positive
from search_spaces.infra.errors import UserError
from search_spaces.infra.files import atomic_save
from search_spaces.infra.seeds import seed_for
from search_spaces.infra.threads import available_cpus, torch_threads
from search_spaces.infra.weights import load_torch, why

_log = logging.getLogger(__name__)


class TrialError(RuntimeError):
    """A child failed in a way the search records and moves past (e.g. the loss
    became NaN); the message is the reason, one line."""


def _warmup_check(value: int | float) -> str | None:
    if isinstance(value, int):
        return None if value >= 0 else f"must be >= 0 steps, got {value}"
    return None if 0 <= value < 1 else f"a fraction must be in [0, 1), got {value}"


@dataclass
class TrainConfig:
    """`train:` how a child is trained on the proxy task and evaluated.

    Set `epochs` or `steps`, not both (neither: 1 epoch). `warmup` is a step count
    (integer) or a fraction of all steps (a number below 1).
    """

    epochs: float | None = field(default=None, metadata={"check": positive})
    steps: int | None = field(default=None, metadata={"check": positive})
    batch_size: int = field(default=64, metadata={"check": positive})
    optimizer: Literal["sgd", "rmsprop"] = "sgd"
    lr: float = field(default=0.4, metadata={"check": positive})
    momentum: float = field(default=0.9, metadata={"check": non_negative})
    nesterov: bool = True  # sgd only
    # RMSprop as in MnasNet (decay 0.9, momentum 0.9); torch adds eps outside the sqrt.
    rmsprop_decay: float = field(default=0.9, metadata={"check": positive})
    rmsprop_eps: float = field(default=1e-3, metadata={"check": positive})
    weight_decay: float = field(default=4e-5, metadata={"check": non_negative})  # not on BN/bias
    label_smoothing: float = field(default=0.1, metadata={"check": non_negative})
    warmup: int | float = field(default=0.05, metadata={"check": _warmup_check})
    schedule: Literal["cosine", "constant"] = "cosine"  # after warm-up
    grad_clip: float | None = field(default=None, metadata={"check": positive})
    device: Literal["cpu", "cuda", "auto"] = "auto"
    # None: OMP_NUM_THREADS when set (Ray sets it to the trial's CPUs), else torch's.
    threads: int | None = field(default=None, metadata={"check": positive})
    eval_batch_size: int = field(default=256, metadata={"check": positive})
    log_every: int = field(default=50, metadata={"check": positive})  # steps between logs
    # After training, BN statistics are re-estimated over this many training batches
    # (no augmentation): with the TF-style BN momentum of 0.01 a short proxy run
    # leaves the running averages near their initial values. 0 keeps them as trained.
    bn_recalibration: int = field(default=20, metadata={"check": non_negative})

    def __post_init__(self) -> None:
        if self.epochs is not None and self.steps is not None:
            raise UserError("train: set epochs or steps, not both")
        if self.label_smoothing >= 1:
            raise UserError(f"train.label_smoothing: must be < 1, got {self.label_smoothing}")


@dataclass(frozen=True)
class TrainStats:
    """What one `train` call did."""

    steps: int
    epochs: float
    images: int
    wall_s: float
    images_per_s: float
    loss: float  # mean training loss over the last `log_every` steps
    device: str
    threads: int  # what torch actually ran with


@dataclass(frozen=True)
class TrainResult:
    """A trained-and-scored child: validation top-1 (0..1) and how training went."""

    accuracy: float
    steps: int
    images_per_s: float
    wall_s: float  # training and evaluation
    device: str
    threads: int
    loss: float


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when available; asking for CUDA without one is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device: cuda requested but torch {torch.__version__} sees no "
                        f"CUDA device (device: auto uses one when there is one)")
    return torch.device(name)


def wanted_threads(cfg: TrainConfig) -> int:
    """Threads for torch: the config's, else OMP_NUM_THREADS (a Ray trial's CPU
    share), else what torch uses, at most the CPUs this process may run on."""
    if cfg.threads is not None:
        return cfg.threads
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return min(torch.get_num_threads(), available_cpus())


def _total_steps(cfg: TrainConfig, n: int, batch: int) -> int:
    if cfg.steps is not None:
        return cfg.steps
    per_epoch = max(1, n // batch)
    return max(1, round((cfg.epochs if cfg.epochs is not None else 1.0) * per_epoch))


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """The learning rate at 0-based `step` of `total`: linear warm-up, then cosine or flat."""
    warm = cfg.warmup if isinstance(cfg.warmup, int) else int(cfg.warmup * total)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * progress))


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            # No weight decay on BN scales/shifts and biases (1-D parameters).
            (no_decay if p.dim() <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=cfg.rmsprop_decay,
                               eps=cfg.rmsprop_eps, momentum=cfg.momentum)


def _stream(data: ImageSet, batch: int, g: torch.Generator, skip: int = 0
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled batches of full size, a fresh permutation each epoch; `skip`
    batches are passed over without being read (a resumed run's position)."""
    n = len(data)
    per_epoch = n // batch
    for _ in range(skip // per_epoch):
        torch.randperm(n, generator=g)
    first = skip % per_epoch * batch
    while True:
        order = torch.randperm(n, generator=g)
        for start in range(first, n - batch + 1, batch):
            idx = order[start:start + batch]
            yield data.images[idx], data.labels[idx]
        first = 0


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def train(model: nn.Module, data: Splits | ImageSet, cfg: TrainConfig, seed: int,
          log: Callable[[str], None] | None = None, checkpoint: Path | None = None,
          checkpoint_every: int = 200, loss_fn: LossFn | None = None) -> TrainStats:
    """Train `model` in place from its current weights (fine-tuning works the same).

    With `checkpoint`, the whole training state (weights, optimizer, step, random
    streams) is saved there every `checkpoint_every` steps and a run started again
    with the same arguments continues from it, ending with the same weights as an
    uninterrupted run. `loss_fn(model, x, y)` is a step's loss (default: the cross
    entropy of `model(x)`; a supernet's sandwich rule sums several children's). Raises
    `TrialError` when the loss becomes NaN or infinite.
    """
    train_set = data.train if isinstance(data, Splits) else data
    if len(train_set) == 0:
        raise ValueError("no training images")
    say = log or _log.info
    device = resolve_device(cfg.device)
    batch = min(cfg.batch_size, len(train_set))
    total = _total_steps(cfg, len(train_set), batch)
    order_g = torch.Generator().manual_seed(seed_for(seed, "order"))
    aug_g = torch.Generator().manual_seed(seed_for(seed, "augment"))
    model.to(device).train()
    opt = _optimizer(model, cfg)
    loss_window: list[float] = []
    with torch_threads(wanted_threads(cfg)) as threads, \
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed_for(seed, "dropout"))  # dropout draws from the global RNG
        first = 0
        if checkpoint is not None and checkpoint.is_file():
            first, loss_window = _restore(checkpoint, model, opt, aug_g, total)
            say(f"resuming training at step {first + 1}/{total} from {checkpoint}")
        start = time.perf_counter()
        mark, mark_step = start, first
        stream = _stream(train_set, batch, order_g, skip=first)
        for step in range(first, total):
            images, labels = next(stream)
            if train_set.augment:
                images = augment_batch(images, aug_g, train_set.crop_padding)
            x = normalize(images.to(device, non_blocking=True), train_set.mean, train_set.std)
            y = labels.to(device, non_blocking=True)
            lr = learning_rate(cfg, step, total)
            for group in opt.param_groups:
                group["lr"] = lr
            loss = loss_fn(model, x, y) if loss_fn is not None else \
                F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrialError(f"loss became {value} at step {step + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            loss_window = (loss_window + [value])[-cfg.log_every:]
            if checkpoint is not None and (step + 1) % checkpoint_every == 0 \
                    and step + 1 < total:
                _save_checkpoint(checkpoint, model, opt, aug_g, step + 1, total, loss_window)
            if (step + 1) % cfg.log_every == 0 or step + 1 == total:
                now = time.perf_counter()
                rate = (step + 1 - mark_step) * batch / max(now - mark, 1e-9)
                eta = (total - step - 1) * batch / max(rate, 1e-9)
                say(f"step {step + 1}/{total} loss {sum(loss_window) / len(loss_window):.4f} "
                    f"lr {lr:.4g} {rate:.0f} img/s ({device.type}, {threads} threads), "
                    f"ETA {eta / 60:.1f} min")
                mark, mark_step = now, step + 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - start
        if cfg.bn_recalibration:
            recalibrate_bn(model, train_set, cfg.bn_recalibration, batch, order_g)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)  # the weights are the caller's to save now
    images_seen = (total - first) * batch
    return TrainStats(steps=total, epochs=total * batch / len(train_set), images=images_seen,
                      wall_s=wall, images_per_s=images_seen / max(wall, 1e-9),
                      loss=sum(loss_window) / len(loss_window), device=str(device),
                      threads=threads)


def _save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer,
                     aug_g: torch.Generator, step: int, total: int,
                     loss_window: list[float]) -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
             "total": total, "augment_rng": aug_g.get_state(),
             "global_rng": torch.get_rng_state(), "loss_window": loss_window}
    atomic_save(state, path)  # makes final/ if nothing else has yet


def _restore(path: Path, model: nn.Module, opt: torch.optim.Optimizer,
             aug_g: torch.Generator, total: int) -> tuple[int, list[float]]:
    try:
        state = load_torch(path, "training checkpoint")
        if state["total"] != total:
            raise ValueError(f"it is for {state['total']} steps, this training has {total}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    except Exception as err:  # damaged, or from other settings: the run cannot use it
        text = err.message if isinstance(err, UserError) else \
            f"cannot resume training from this checkpoint ({why(err)})"
        raise UserError(f"{text}; delete it to start the training again", str(path)) from None
    aug_g.set_state(state["augment_rng"])
    torch.set_rng_state(state["global_rng"])
    return int(state["step"]), list(state["loss_window"])


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data: ImageSet, num_batches: int, batch_size: int,
                   generator: torch.Generator) -> None:
    """Re-estimate every BatchNorm's running mean/var as a plain average over
    `num_batches` random batches of `data` (un-augmented), leaving weights alone."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    device = next(model.parameters()).device
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    was_training = model.training
    model.train()
    stream = _stream(data, min(batch_size, len(data)), generator)
    for _ in range(num_batches):
        images, _labels = next(stream)
        model(normalize(images.to(device), data.mean, data.std))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.train(was_training)


def evaluate(model: nn.Module, data: ImageSet, batch_size: int = 256,
             device: torch.device | str | None = None) -> float:
    """Top-1 accuracy (0..1) of `model` on `data`, in eval mode."""
    if len(data) == 0:
        raise ValueError("no images to evaluate on")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.to(device).eval()  # outside inference mode: moved weights stay trainable
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            images = data.images[start:start + batch_size].to(device)
            pred = model(normalize(images, data.mean, data.std)).argmax(1).cpu()
            correct += int((pred == data.labels[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / len(data)


def build_seeded(arch: Arch, seed: int) -> nn.Module:
    """`build_model(arch)` with its initial weights drawn from `seed` alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_for(seed, "init"))
        return build_model(arch)


def train_and_evaluate(arch: Arch, splits: Splits, cfg: TrainConfig, seed: int,
                       log: Callable[[str], None] | None = None) -> TrainResult:
    """Build `arch` from `seed`, train it on `splits.train`, score it on `splits.val`."""
    start = time.perf_counter()
    model = build_seeded(arch, seed)
    with torch_threads(wanted_threads(cfg)):
        stats = train(model, splits.train, cfg, seed, log)
        accuracy = evaluate(model, splits.val, cfg.eval_batch_size)
    return TrainResult(accuracy=accuracy, steps=stats.steps, images_per_s=stats.images_per_s,
                       wall_s=time.perf_counter() - start, device=stats.device,
                       threads=stats.threads, loss=stats.loss)
