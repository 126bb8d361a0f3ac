"""The accuracy predictor: which children it scores, what it learns, what the trial log
records, and that a search using it resumes exactly."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from experiments import write_search
from nas.cli import main
from nas.ranking import kendall_tau
from nas.rundir import RunDir, TrialLog
from nas.search.controller import ControllerConfig
from nas.search.core import COLUMNS, SearchCore, run_inline
from nas.search.predictor import (MIN_FIT, AccuracyPredictor, PredictorConfig,
                                  predictor_stats)
from nas.search.rewards import Reward
from nas.search.strategies import EvolutionConfig, make_strategy
from search_spaces.counting import count
from search_spaces.factorized import make_space
from search_spaces.infra.jobs import Job, JobResult

REWARD = Reward("mnas", target_ms=5.0, alpha=-0.07, beta=-0.07)


def flops_latency(arch):
    return count(arch)[1] / 1e6 * 0.5, "flops"


def fake_train(job: Job) -> JobResult:
    """A deterministic stand-in for training: bigger nets score higher."""
    return JobResult(min(0.95, 0.2 + count(job.arch)[0] / 4e6))


@pytest.fixture
def space():
    return make_space("mobilenetv3", "mobilenetv3_small", resolution=32, stem_stride=1,
                      num_classes=10)


def make_core(run, space, trials, cfg, calls=None):
    strategy = make_strategy("rl", space, 0, ControllerConfig(batch_size=3),
                             EvolutionConfig(population=4))
    return SearchCore(space, strategy, flops_latency, REWARD, run, trials, 3,
                      log=lambda m: None, predictor=(cfg, AccuracyPredictor(space, cfg.ridge)))


def test_children_are_predicted_by_id_after_the_warm_up() -> None:
    cfg = PredictorConfig(real_every=3, warmup=4)
    assert [i for i in range(12) if cfg.predicts(i)] == [5, 6, 8, 9, 11]
    assert not any(PredictorConfig(real_every=1, warmup=4).predicts(i) for i in range(12))
    assert not any(PredictorConfig(real_every=0).predicts(i) for i in range(50))


def test_the_predictor_ranks_children_it_was_not_fitted_on(space) -> None:
    rng = random.Random(0)
    # an accuracy additive in the decisions: what the encoding can represent
    effect = [[rng.uniform(-0.05, 0.05) for _ in d.options] for d in space.decisions]

    def row(choices):
        acc = 0.5 + sum(e[c] for e, c in zip(effect, choices))
        macs = count(space.decode_indices(choices))[1]
        return {"decisions": json.dumps(choices), "macs": str(macs), "accuracy": str(acc)}

    draws = [[rng.randrange(len(d.options)) for d in space.decisions] for _ in range(140)]
    rows = [row(c) for c in draws]
    predictor = AccuracyPredictor(space, ridge=1.0)
    assert predictor.predict(rows[:MIN_FIT - 1], draws[0], 1e6) is None
    guesses = [predictor.predict(rows[:100], c, float(r["macs"]))
               for c, r in zip(draws[100:], rows[100:])]
    assert kendall_tau(guesses, [float(r["accuracy"]) for r in rows[100:]]) > 0.6
    assert all(0 <= g <= 1 for g in guesses)


def test_predicted_rewards_are_logged_and_never_the_result(tmp_path: Path, space) -> None:
    run = RunDir.create(tmp_path, "exp", {"name": "exp"})
    cfg = PredictorConfig(real_every=3, warmup=4)
    jobs: list[str] = []
    run_inline(make_core(run, space, 14, cfg), lambda job: jobs.append(job.name)
               or fake_train(job), seed=0)
    rows = TrialLog(run.trials_csv, COLUMNS).read()
    predicted = [r for r in rows if r["status"] == "predicted"]
    assert [int(r["trial_id"]) for r in predicted] == [i for i in range(14) if cfg.predicts(i)]
    assert len(jobs) == 14 - len(predicted)  # no job for a predicted child
    assert all(r["accuracy_source"] == "predictor" and float(r["reward"]) ==
               pytest.approx(REWARD(float(r["accuracy"]), float(r["latency_ms"]))[0])
               for r in predicted)
    # real children carry the predictor's guess from before their result: from the
    # MIN_FIT-th real one on
    real = [r for r in rows if r["status"] == "ok"]
    assert [bool(r["predicted_accuracy"]) for r in real] == \
        [i >= MIN_FIT for i in range(len(real))]
    stats = predictor_stats(rows)
    assert stats["predicted"] == len(predicted) and stats["held_out"] == len(real) - MIN_FIT
    best = json.loads(run.best_metrics_json.read_text())
    assert best["accuracy_source"] == "train" and int(best["trial_id"]) not in \
        {int(r["trial_id"]) for r in predicted}


def test_a_search_with_the_predictor_resumes_to_the_same_log(tmp_path: Path, space) -> None:
    cfg = PredictorConfig(real_every=2, warmup=3)
    whole = RunDir.create(tmp_path, "whole", {"name": "whole"})
    run_inline(make_core(whole, space, 13, cfg), fake_train, seed=0)
    part = RunDir.create(tmp_path, "part", {"name": "part"})
    run_inline(make_core(part, space, 6, cfg), fake_train, seed=0)  # stopped after 6
    resumed = make_core(part, space, 13, cfg)
    assert resumed.replay() == 6
    run_inline(resumed, fake_train, seed=0)
    keys = ("trial_id", "decisions", "accuracy", "reward", "status", "predicted_accuracy")
    assert [[r[k] for k in keys] for r in TrialLog(part.trials_csv, COLUMNS).read()] == \
        [[r[k] for k in keys] for r in TrialLog(whole.trials_csv, COLUMNS).read()]


PREDICTOR = "predictor:\n  real_every: 2\n  warmup: 4\n"


def test_the_log_and_the_report_say_how_many_rewards_were_predicted(
        tmp_path: Path, capsys) -> None:
    exp = write_search(tmp_path, extra=PREDICTOR)
    assert main(["search", str(exp), "--set", "search.num_trials=8"]) == 0
    err = capsys.readouterr().err
    assert "predictor: 2 of 8 rewards predicted" in err and "(predicted)" in err
    run = next((tmp_path / "tiny").iterdir())
    report = (run / "report.md").read_text()
    assert "2 rewarded by the accuracy predictor" in report
    assert "predictor: 2 of 8 rewards predicted" in report
    assert main(["search", str(exp), "--set", "predictor.warmup=2"]) == 2
    assert "predictor.warmup: must be >= 3, got 2" in capsys.readouterr().err
