"""Rewards against hand-computed values."""

import math

import pytest

from nas.search.rewards import RewardConfig, make_reward
from search_spaces.infra.errors import UserError


def test_mnas_soft_default_w():
    r = make_reward(RewardConfig(target_ms=80.0))
    assert (r.alpha, r.beta) == (-0.07, -0.07)
    reward, factor = r(0.75, 100.0)
    assert factor == pytest.approx(1.25 ** -0.07)
    assert reward == pytest.approx(0.75 * 0.98450, abs=1e-5)  # 1.25^-0.07 = 0.984500
    reward, _ = r(0.75, 40.0)  # faster than the target is rewarded, mildly
    assert reward == pytest.approx(0.75 * 0.5 ** -0.07)


def test_small_preset():
    r = make_reward(RewardConfig(target_ms=10.0, preset="small"))
    assert (r.alpha, r.beta) == (-0.15, -0.15)
    assert r(0.6, 20.0)[0] == pytest.approx(0.6 * 2 ** -0.15)


def test_alpha_beta_split_at_target():
    r = make_reward(RewardConfig(target_ms=10.0, alpha=0.0, beta=-0.5))
    assert r(0.5, 8.0) == (0.5, 1.0)  # under the target: alpha = 0, no bonus
    assert r(0.5, 10.0)[0] == 0.5  # exactly on it: w = alpha
    assert r(0.5, 40.0)[0] == pytest.approx(0.5 * 4 ** -0.5)


def test_hard_constraint():
    r = make_reward(RewardConfig(kind="mnas_hard", target_ms=10.0))
    assert (r.alpha, r.beta) == (0.0, -1.0)
    assert r(0.8, 5.0)[0] == 0.8
    assert r(0.8, 20.0)[0] == pytest.approx(0.4)


def test_tunas_abs():
    r = make_reward(RewardConfig(kind="abs", target_ms=10.0, beta=-0.5))
    reward, term = r(0.7, 12.0)
    assert term == pytest.approx(-0.1) and reward == pytest.approx(0.6)
    assert r(0.7, 8.0)[0] == pytest.approx(0.6)  # symmetric: slower and faster both cost
    assert make_reward(RewardConfig(kind="abs", target_ms=1.0)).beta == -0.07


@pytest.mark.parametrize("cfg, message", [
    (RewardConfig(), "reward.target_ms: missing"),
    (RewardConfig(target_ms=1.0, kind="mnas_hard", beta=-2.0), "mnas_hard fixes"),
    (RewardConfig(target_ms=1.0, preset="small", alpha=-0.1), "either a preset or alpha/beta"),
    (RewardConfig(target_ms=1.0, kind="abs", alpha=-0.1), "only beta"),
])
def test_conflicts_are_user_errors(cfg, message):
    with pytest.raises(UserError, match=message):
        make_reward(cfg, "exp.yaml")


def test_reward_is_monotone_in_latency_over_target():
    r = make_reward(RewardConfig(target_ms=10.0))
    values = [r(0.7, ms)[0] for ms in (10, 12, 15, 20, 40)]
    assert values == sorted(values, reverse=True) and all(math.isfinite(v) for v in values)
