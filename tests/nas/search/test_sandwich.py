"""The supernet's sandwich rule with in-place distillation: which children a step
trains, what the others learn from, and that a killed training resumes exactly."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from nas.data import DataConfig, SyntheticConfig, load_data
from nas.search.evaluators.sandwich import sandwich_loss, soft_cross_entropy
from nas.train import TrainConfig, train
from search_spaces.builder import build_model
from search_spaces.counting import count
from search_spaces.factorized import make_space
from search_spaces.supernet import SuperNet, largest_child, smallest_child

SPACE = ("mobilenetv3", "mobilenetv3_small", 16, 1, 10)
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def test_the_extremes_are_the_dearest_and_the_cheapest_children() -> None:
    space = make_space(*SPACE)
    macs = lambda v: count(space.decode(v))[1]  # noqa: E731
    pool = [macs(space.sample(random.Random(k))) for k in range(200)]
    small, large = smallest_child(space), largest_child(space)
    assert macs(small) < min(pool) and macs(large) > max(pool)
    # the first option is no guide: a full conv costs more than a dsconv
    assert {v for k, v in small.items() if k.endswith("/op")} == {"dsconv"}
    # skips hold no weights: both keep every residual the shapes allow, without which
    # the largest child (the teacher) barely trains
    for values in (small, large):
        assert {v for k, v in values.items() if k.endswith("/skip")} == {"pool"}
        layers = space.decode(values).layers
        assert [layer.skip != "none" for layer in layers] == [
            layer.in_ch == layer.out_ch for layer in layers]


def test_a_sandwich_step_trains_the_largest_the_smallest_and_the_random_children() -> None:
    space = make_space(*SPACE)
    net = SuperNet(space, seed=3).train()
    calls: list[dict] = []
    forward = net.forward
    net.forward = lambda x, values=None, buffers=None: (  # type: ignore[method-assign]
        calls.append(dict(values)) or forward(x, values, buffers))
    loss = sandwich_loss(net, random_children=2, distill=True)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    loss(net, x, y).backward()
    assert calls == [largest_child(space), smallest_child(space), net.sample(0),
                     net.sample(0, 1)]
    assert int(net.sampled) == 1  # one step, however many children
    assert calls[2] != calls[3]
    # every child's path got gradients, summed into the one update
    touched = {k for k, p in net.shared.items() if p.grad is not None}
    for values in calls:
        arch, slots = net.child(values)
        assert {net.shared_key(k, slots) for k in build_model(arch).state_dict()
                if not k.endswith(BN_BUFFERS)} <= touched
    calls.clear()
    loss(net, x, y)
    assert calls[2:] == [net.sample(1), net.sample(1, 1)]  # the next step draws anew


@pytest.mark.parametrize("distill", [True, False])
def test_distillation_uses_the_largest_childs_outputs(distill: bool) -> None:
    space = make_space(*SPACE)
    net = SuperNet(space, seed=0).train()
    x, y = torch.randn(6, 3, 16, 16), torch.randint(0, 10, (6,))
    torch.manual_seed(5)  # the head's dropout draws from the global stream
    got = sandwich_loss(net, 1, distill)(net, x, y)
    torch.manual_seed(5)
    children = net.sandwich(0, 1)
    teacher = net(x, children[0])
    want = F.cross_entropy(teacher, y)
    for values in children[1:]:
        logits = net(x, values)
        want = want + (soft_cross_entropy(logits, teacher.detach().softmax(1)) if distill
                       else F.cross_entropy(logits, y))
    assert torch.allclose(got, want)
    # the students' terms do not see the labels: only the teacher's changes with them
    other = (y + 1) % 10
    torch.manual_seed(5)
    net.sampled.zero_()
    moved = sandwich_loss(net, 1, distill)(net, x, other) - got
    torch.manual_seed(5)
    teacher_moved = F.cross_entropy(net(x, children[0]), other) - F.cross_entropy(teacher, y)
    assert torch.allclose(moved, teacher_moved, atol=1e-5) == distill


def test_soft_cross_entropy_is_the_cross_entropy_for_one_hot_targets() -> None:
    logits, y = torch.randn(5, 10), torch.tensor([0, 3, 9, 2, 2])
    assert torch.allclose(soft_cross_entropy(logits, F.one_hot(y, 10).float()),
                          F.cross_entropy(logits, y))


class _Stop(Exception):
    pass


def test_a_killed_sandwich_training_resumes_to_the_same_weights(tmp_path: Path) -> None:
    space = make_space(*SPACE)
    data = load_data(DataConfig(synthetic=SyntheticConfig(train_size=64, test_size=0,
                                                          image_size=16)), 16, "exp.yaml")
    cfg = TrainConfig(steps=6, batch_size=8, lr=0.05, device="cpu", threads=1)

    def trained(stop_at: int | None) -> SuperNet:
        net = SuperNet(space, seed=1)
        loss = sandwich_loss(net, 1, True)

        def stopping(model, x, y):
            if stop_at is not None and int(net.sampled) == stop_at:
                raise _Stop
            return loss(model, x, y)

        train(net, data, cfg, 1, checkpoint=tmp_path / "ck.pt", checkpoint_every=2,
              loss_fn=stopping)
        return net

    whole = trained(None).state_dict()
    with pytest.raises(_Stop):
        trained(5)  # killed in its sixth step; checkpointed after the fourth
    assert (tmp_path / "ck.pt").is_file()
    resumed = trained(None).state_dict()
    assert int(resumed["sampled"]) == 6
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
