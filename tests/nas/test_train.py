"""The proxy trainer: config, determinism, NaN handling, steps vs epochs, threads."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nas.data import DataConfig, ImageSet, SyntheticConfig, load_data
from nas.train import (TrainConfig, TrialError, build_seeded, evaluate, learning_rate,
                       recalibrate_bn, train, train_and_evaluate)
from search_spaces.arch import Arch, Head, Layer, Stem
from search_spaces.infra.errors import UserError
from search_spaces.infra.strict import load_dataclass

CPU = dict(device="cpu", threads=1)


def tiny_arch(num_classes: int = 10, resolution: int = 16) -> Arch:
    return Arch(resolution=resolution, num_classes=num_classes,
                stem=Stem(out_ch=8, kernel=3, stride=1),
                layers=(Layer("mbconv", 8, 16, 3, stride=2, exp_ch=24, expand=True, se_ch=4),
                        Layer("dsconv", 16, 16, 3, skip="identity")),
                head=Head(kind="v2", conv_ch=32, dropout=0.2))


@pytest.fixture(scope="module")
def splits():
    cfg = DataConfig(synthetic=SyntheticConfig(train_size=300, test_size=0, image_size=16))
    return load_data(cfg, 16, "exp.yaml")


def test_train_config_checks(tmp_path) -> None:
    with pytest.raises(UserError, match="train: set epochs or steps, not both"):
        TrainConfig(epochs=1, steps=10)
    cfg = load_dataclass(TrainConfig, {"steps": 5, "warmup": 2, "optimizer": "rmsprop"},
                         "exp.yaml", tmp_path)
    assert cfg.warmup == 2 and isinstance(cfg.warmup, int) and cfg.optimizer == "rmsprop"
    assert load_dataclass(TrainConfig, {"warmup": 0.1}, "e", tmp_path).warmup == 0.1
    with pytest.raises(UserError, match=r"warmup: a fraction must be in \[0, 1\), got 1.5"):
        load_dataclass(TrainConfig, {"warmup": 1.5}, "exp.yaml", tmp_path)
    with pytest.raises(UserError, match=r"optimizer: 'adam' is not one of sgd, rmsprop"):
        load_dataclass(TrainConfig, {"optimizer": "adam"}, "exp.yaml", tmp_path)
    with pytest.raises(UserError, match=r"exp.yaml: bach_size: unknown key \(did you mean "
                                        r"'batch_size'\?\)"):
        load_dataclass(TrainConfig, {"bach_size": 3}, "exp.yaml", tmp_path)


def test_learning_rate_warms_up_then_follows_a_cosine() -> None:
    cfg = TrainConfig(steps=100, lr=1.0, warmup=10)
    lrs = [learning_rate(cfg, s, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[55] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 0.001
    frac = TrainConfig(steps=100, lr=1.0, warmup=0.2)
    assert learning_rate(frac, 19, 100) == pytest.approx(1.0)
    const = TrainConfig(steps=100, lr=0.5, warmup=0, schedule="constant")
    assert {learning_rate(const, s, 100) for s in range(100)} == {0.5}


def test_steps_and_epochs(splits) -> None:
    n = len(splits.train)  # 270 training images
    model = build_seeded(tiny_arch(), 0)
    stats = train(model, splits, TrainConfig(steps=3, batch_size=32, **CPU), seed=0,
                  log=lambda _: None)
    assert (stats.steps, stats.images) == (3, 96)
    stats = train(model, splits, TrainConfig(epochs=2, batch_size=32, **CPU), seed=0,
                  log=lambda _: None)
    assert stats.steps == 2 * (n // 32) and stats.epochs == pytest.approx(stats.images / n)
    stats = train(model, splits.train, TrainConfig(epochs=0.5, batch_size=64, **CPU), seed=0,
                  log=lambda _: None)
    assert stats.steps == round(0.5 * (n // 64))
    assert stats.images_per_s > 0 and stats.device == "cpu" and math.isfinite(stats.loss)


def test_training_is_deterministic_for_a_seed(splits) -> None:
    cfg = TrainConfig(steps=6, batch_size=32, bn_recalibration=2, **CPU)
    global_state = torch.random.get_rng_state()
    runs = []
    for seed in (7, 7, 8):
        model = build_seeded(tiny_arch(), seed)
        stats = train(model, splits, cfg, seed, log=lambda _: None)
        runs.append((stats.loss, [t.clone() for t in model.state_dict().values()]))
    assert torch.equal(torch.random.get_rng_state(), global_state)  # global RNG untouched
    (loss_a, w_a), (loss_b, w_b), (loss_c, w_c) = runs
    assert loss_a == loss_b and all(torch.equal(a, b) for a, b in zip(w_a, w_b))
    assert loss_a != loss_c and not all(torch.equal(a, c) for a, c in zip(w_a, w_c))
    a = train_and_evaluate(tiny_arch(), splits, cfg, seed=3, log=lambda _: None)
    b = train_and_evaluate(tiny_arch(), splits, cfg, seed=3, log=lambda _: None)
    assert (a.accuracy, a.loss, a.steps) == (b.accuracy, b.loss, b.steps) and a.steps == 6
    assert 0.0 <= a.accuracy <= 1.0 and a.threads == 1 and a.device == "cpu"


def test_nan_loss_raises_trial_error(splits) -> None:
    cfg = TrainConfig(steps=20, batch_size=32, lr=1e30, warmup=0, schedule="constant",
                      momentum=0.0, **CPU)
    with pytest.raises(TrialError, match=r"^loss became (nan|inf|-inf) at step \d+$"):
        train(build_seeded(tiny_arch(), 0), splits, cfg, seed=0, log=lambda _: None)

    class Poisoned(nn.Module):  # a model whose output turns NaN on its third call
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            out = x.mean((2, 3)).repeat(1, 4)[:, :10] * self.w
            return out * float("nan") if self.calls == 3 else out

    with pytest.raises(TrialError, match="^loss became nan at step 3$"):
        train(Poisoned(), splits, TrainConfig(steps=5, batch_size=16, **CPU), seed=0,
              log=lambda _: None)


def test_fine_tuning_starts_from_the_given_weights(splits) -> None:
    model = build_seeded(tiny_arch(), 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, splits, TrainConfig(steps=1, lr=1e-9, batch_size=32, bn_recalibration=0,
                                     **CPU), seed=1, log=lambda _: None)
    after = model.state_dict()
    weights = [k for k in before if k.endswith("weight")]
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in weights)
    # ...whereas a freshly seeded model differs completely.
    fresh = build_seeded(tiny_arch(), 1).state_dict()
    assert not torch.allclose(fresh["stem.0.weight"], after["stem.0.weight"])


def test_threads_are_set_reported_and_restored(splits, monkeypatch) -> None:
    before = torch.get_num_threads()
    cfg = TrainConfig(steps=1, batch_size=32, device="cpu", threads=1)
    assert train(build_seeded(tiny_arch(), 0), splits, cfg, 0, log=lambda _: None).threads == 1
    assert torch.get_num_threads() == before
    # Without `threads`, a Ray trial's OMP_NUM_THREADS decides.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = TrainConfig(steps=1, batch_size=32, device="cpu")
    assert train(build_seeded(tiny_arch(), 0), splits, cfg, 0, log=lambda _: None).threads == 1
    assert torch.get_num_threads() == before


def test_logs_images_per_second(splits) -> None:
    lines: list[str] = []
    train(build_seeded(tiny_arch(), 0), splits,
          TrainConfig(steps=4, batch_size=32, log_every=2, **CPU), 0, log=lines.append)
    assert len(lines) == 2 and lines[-1].startswith("step 4/4 loss ")
    assert " img/s (cpu, 1 threads)" in lines[-1]


def test_evaluate_counts_top1_and_keeps_the_mode() -> None:
    images = torch.zeros(6, 3, 4, 4, dtype=torch.uint8)
    images[:, 0] = torch.tensor([0, 255, 0, 255, 0, 255], dtype=torch.uint8).view(6, 1, 1)
    labels = torch.tensor([0, 1, 0, 0, 0, 1])
    data = ImageSet(images, labels, ("dark", "red"), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))

    class RedDetector(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            red = x[:, 0].mean((1, 2))
            return torch.stack([0.5 - red, red - 0.5], 1)

    model = RedDetector().train()
    assert evaluate(model, data, batch_size=4, device="cpu") == pytest.approx(5 / 6)
    assert model.training


def test_recalibrate_bn_averages_over_batches() -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 4, 4), dtype=torch.uint8)
    data = ImageSet(images, torch.zeros(64, dtype=torch.long), ("a",), (0.5,) * 3, (0.25,) * 3)
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2, momentum=0.01))
    recalibrate_bn(model, data, num_batches=2, batch_size=32,
                   generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = model[0]((images.float() / 255 - 0.5) / 0.25)
    # Two batches covering all 64 images: the plain average of the two batch means.
    assert torch.allclose(model[1].running_mean, feats.mean((0, 2, 3)), atol=1e-5)
    assert model[1].momentum == 0.01


def test_cuda_without_a_gpu_is_a_user_error(splits) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match="train.device: cuda requested"):
        train(build_seeded(tiny_arch(), 0), splits, TrainConfig(steps=1, device="cuda"), 0)


@pytest.mark.parametrize("kill_at", [3, 8, 17])  # mid-epoch, at an epoch edge (9/epoch), late
def test_a_killed_training_resumes_from_its_checkpoint_to_the_same_weights(
        splits, tmp_path, monkeypatch, kill_at) -> None:
    # 270 training images / 32 = 8 full batches an epoch: 20 steps cross two epochs
    cfg = TrainConfig(steps=20, batch_size=32, bn_recalibration=2, **CPU)
    whole = build_seeded(tiny_arch(), 4)
    train(whole, splits, cfg, 4, log=lambda _: None)

    import nas.train as trainer

    real = trainer.learning_rate

    def dies(c, step, total):
        if step == kill_at:
            raise KeyboardInterrupt  # the kill
        return real(c, step, total)

    ckpt = tmp_path / "final" / "train_checkpoint.pt"  # a folder not made yet, as final/ is
    model = build_seeded(tiny_arch(), 4)
    monkeypatch.setattr(trainer, "learning_rate", dies)
    with pytest.raises(KeyboardInterrupt):
        train(model, splits, cfg, 4, log=lambda _: None, checkpoint=ckpt, checkpoint_every=3)
    assert ckpt.is_file()
    monkeypatch.setattr(trainer, "learning_rate", real)
    logs: list[str] = []
    resumed = build_seeded(tiny_arch(), 99)  # its own init is overwritten by the checkpoint
    train(resumed, splits, cfg, 4, log=logs.append, checkpoint=ckpt, checkpoint_every=3)
    assert any(f"resuming training at step {kill_at // 3 * 3 + 1}/20" in m for m in logs)
    assert not ckpt.exists()
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_checkpoint_from_other_settings_is_a_user_error(splits, tmp_path) -> None:
    ckpt = tmp_path / "train_checkpoint.pt"
    cfg = TrainConfig(steps=4, batch_size=32, bn_recalibration=0, **CPU)
    import nas.train as trainer

    model = build_seeded(tiny_arch(), 1)
    opt = trainer._optimizer(model, cfg)
    trainer._save_checkpoint(ckpt, model, opt, torch.Generator(), 2, 99, [])
    with pytest.raises(UserError, match="for 99 steps, this training has 4"):
        train(build_seeded(tiny_arch(), 1), splits, cfg, 1, checkpoint=ckpt)


def test_threads_follow_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a machine shared through an affinity mask (a container, taskset), torch is not
    given more threads than the CPUs the process may run on; a Ray trial's share
    (OMP_NUM_THREADS) and the config still decide first."""
    import os

    from nas.train import TrainConfig, wanted_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert wanted_threads(TrainConfig()) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert wanted_threads(TrainConfig()) == 3
    assert wanted_threads(TrainConfig(threads=2)) == 2
