"""The RNN controller, its training, and the strategies behind ask/tell."""

import random

import pytest
import torch

from nas.search.controller import Controller, ControllerConfig, ControllerTrainer
from nas.search.objectives import ChainObjective
from nas.search.strategies import EvolutionConfig, make_strategy
from search_spaces.factorized import make_space

OPTIONS = [4, 2, 2, 3, 3, 3]


def test_sample_is_conditioned_and_log_prob_matches_evaluate():
    ctrl = Controller(OPTIONS, hidden=16)
    g = torch.Generator().manual_seed(0)
    choices, log_prob, entropy = ctrl.sample(g)
    assert len(choices) == len(OPTIONS)
    assert all(0 <= c < n for c, n in zip(choices, OPTIONS))
    lp, ent = ctrl.evaluate([choices])
    assert lp.item() == pytest.approx(log_prob, abs=1e-5)
    assert ent.item() == pytest.approx(entropy, abs=1e-5)
    assert 0 < entropy <= sum(torch.log(torch.tensor(float(n))).item() for n in OPTIONS) + 1e-5
    # Changing an early choice changes later probabilities: decisions are conditioned.
    other = list(choices)
    other[0] = (other[0] + 1) % OPTIONS[0]
    lp_a = ctrl.evaluate([choices])[0] - ctrl.evaluate([choices[:1] + [0] * 5])[0]
    lp_b = ctrl.evaluate([other])[0] - ctrl.evaluate([other[:1] + [0] * 5])[0]
    assert lp_a.item() != pytest.approx(lp_b.item(), abs=1e-7)


def test_batch_evaluate_equals_one_by_one():
    ctrl = Controller(OPTIONS, hidden=16)
    batch = [[0, 1, 0, 2, 1, 0], [3, 0, 1, 1, 2, 2]]
    lp, ent = ctrl.evaluate(batch)
    for i, c in enumerate(batch):
        one_lp, one_ent = ctrl.evaluate([c])
        assert lp[i].item() == pytest.approx(one_lp.item(), abs=1e-6)
        assert ent[i].item() == pytest.approx(one_ent.item(), abs=1e-6)


@pytest.mark.parametrize("algo", ["ppo", "reinforce"])
def test_learns_a_preferred_option(algo):
    """Rewarding option 0 everywhere makes the controller prefer it."""
    cfg = ControllerConfig(algo=algo, hidden=16, lr=0.05, batch_size=4, entropy_weight=0.0)
    trainer = ControllerTrainer(OPTIONS, cfg, seed=0)
    for _ in range(120):
        choices, lp = trainer.sample()
        trainer.observe(choices, lp, sum(c == 0 for c in choices) / len(choices))
    zeros = sum(trainer.sample()[0].count(0) for _ in range(20)) / (20 * len(OPTIONS))
    assert zeros > 0.8
    assert trainer.updates == 30


def test_save_and_restore_whole_state():
    cfg = ControllerConfig(hidden=16, batch_size=3)
    a = ControllerTrainer(OPTIONS, cfg, seed=1)
    for i in range(7):  # two updates and one child in the buffer
        c, lp = a.sample()
        a.observe(c, lp, 0.1 * i)
    blob = a.to_bytes()
    b = ControllerTrainer(OPTIONS, cfg, seed=99)
    b.from_bytes(blob)
    assert b.baseline == a.baseline and b.updates == a.updates and b.buffer == a.buffer
    for i in range(5):  # same samples, same learning from here on
        ca, lpa = a.sample()
        cb, lpb = b.sample()
        assert ca == cb and lpa == pytest.approx(lpb)
        a.observe(ca, lpa, 0.3 * i)
        b.observe(cb, lpb, 0.3 * i)
    for pa, pb in zip(a.controller.parameters(), b.controller.parameters()):
        assert torch.equal(pa, pb)


def test_reinforce_baseline_is_an_ema():
    cfg = ControllerConfig(algo="reinforce", hidden=8, batch_size=2, baseline_decay=0.5)
    t = ControllerTrainer(OPTIONS, cfg, seed=0)
    for r in (1.0, 3.0):
        c, lp = t.sample()
        t.observe(c, lp, r)
    # First batch: baseline starts at the batch mean (2.0), then 0.5*2+0.5*1, 0.5*1.5+0.5*3.
    assert t.baseline == pytest.approx(2.25)


@pytest.mark.parametrize("name", ["rl", "random", "evolution"])
def test_strategies_are_seeded_and_replayable(name):
    space = make_space("mnasnet")
    objective = ChainObjective([len(d.options) for d in space.decisions], seed=0)

    def trace(seed):
        s = make_strategy(name, space, seed, ControllerConfig(batch_size=4), EvolutionConfig(population=6))
        out = []
        for _ in range(20):
            c = s.ask()
            s.tell(c, objective(c))
            out.append(c)
        return out

    assert trace(3) == trace(3)
    assert trace(3) != trace(4)


def test_evolution_mutates_one_decision_of_a_tournament_winner():
    space = make_space("mnasnet")
    s = make_strategy("evolution", space, 0, ControllerConfig(),
                      EvolutionConfig(population=4, sample_size=4))
    parents = [s.ask() for _ in range(4)]
    for i, c in enumerate(parents):
        s.tell(c, float(i))
    child = s.ask()
    best = parents[3]
    assert sum(a != b for a, b in zip(child, best)) == 1


def test_rl_tell_needs_an_ask_and_skips_failures():
    space = make_space("mnasnet")
    s = make_strategy("rl", space, 0, ControllerConfig(batch_size=2), EvolutionConfig())
    c = s.ask()
    s.tell(c, None)  # a failed child is dropped, not learned from
    assert s.trainer.buffer == []
    with pytest.raises(KeyError):
        s.tell(c, 1.0)


def test_chain_objective_extremes_are_exact():
    from itertools import product
    f = ChainObjective([2, 3, 2, 3], seed=1)
    values = [f(c) for c in product(range(2), range(3), range(2), range(3))]
    assert min(values) == pytest.approx(0.0, abs=1e-12)
    assert max(values) == pytest.approx(1.0, abs=1e-12)
    rng = random.Random(0)
    assert 0 <= f([rng.randrange(n) for n in (2, 3, 2, 3)]) <= 1
