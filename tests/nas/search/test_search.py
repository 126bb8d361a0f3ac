"""The search core: trial log, replay/resume, caching, failures, outputs."""

import json

import pytest

from nas.rundir import RunDir, TrialLog
from nas.search.controller import ControllerConfig
from nas.search.core import COLUMNS, SearchCore, SearchFailed, run_inline
from nas.search.rewards import Reward
from nas.search.strategies import EvolutionConfig, make_strategy
from search_spaces.arch import load_arch
from search_spaces.counting import count
from search_spaces.factorized import FactorizedSpace, make_space
from search_spaces.infra.errors import UserError
from search_spaces.infra.jobs import Job, JobResult
from search_spaces.skeletons import BlockSpec, Skeleton

REWARD = Reward("mnas", target_ms=5.0, alpha=-0.07, beta=-0.07)


def flops_latency(arch):
    return count(arch)[1] / 1e6 * 0.5, "flops"


def fake_train(job: Job) -> JobResult:
    """A deterministic stand-in for training: bigger nets score higher."""
    params = count(job.arch)[0]
    return JobResult(min(0.95, 0.2 + params / 4e6), images_per_s=1000.0)


def make_core(run, space, num_trials, strategy="rl", seed=0, max_failed=3, logs=None):
    strat = make_strategy(strategy, space, seed, ControllerConfig(batch_size=3),
                          EvolutionConfig(population=4))
    return SearchCore(space, strat, flops_latency, REWARD, run, num_trials, max_failed,
                      log=(logs.append if logs is not None else lambda m: None))


@pytest.fixture
def space():
    return make_space("mobilenetv3", "mobilenetv3_small", resolution=32, stem_stride=1,
                      num_classes=10)


def new_run(tmp_path, name="exp"):
    return RunDir.create(tmp_path, name, {"name": name})


def read_rows(run):
    return TrialLog(run.trials_csv, COLUMNS).read()


def test_inline_search_writes_the_run_directory(tmp_path, space):
    run = new_run(tmp_path)
    logs = []
    core = make_core(run, space, 7, logs=logs)
    run_inline(core, fake_train, seed=0)
    rows = read_rows(run)
    assert [int(r["trial_id"]) for r in rows] == list(range(7))
    assert all(r["status"] == "ok" and r["latency_source"] == "flops" for r in rows)
    for r in rows:
        acc, lat = float(r["accuracy"]), float(r["latency_ms"])
        assert float(r["reward"]) == pytest.approx(REWARD(acc, lat)[0])
        assert run.arch_json(r["arch_hash"]).is_file()
    best = json.loads(run.best_metrics_json.read_text())
    assert best["reward"] == max(float(r["reward"]) for r in rows)
    arch = load_arch(run.best_json)  # a plain Arch: any stage takes it
    assert arch.hash() == best["arch_hash"]
    assert run.pareto_csv.is_file()
    assert run.controller_pt.is_file()
    assert len(logs) == 7 and "best" in logs[-1] and "ETA" in logs[-1]


@pytest.mark.parametrize("strategy", ["rl", "evolution", "random"])
def test_resume_replays_to_the_same_log(tmp_path, space, strategy):
    """A search stopped after 4 trials and continued equals an uninterrupted one."""
    whole = new_run(tmp_path, "whole")
    run_inline(make_core(whole, space, 9, strategy), fake_train, seed=0)
    part = new_run(tmp_path, "part")
    run_inline(make_core(part, space, 4, strategy), fake_train, seed=0)
    resumed = make_core(part, space, 9, strategy)
    assert resumed.replay() == 4
    run_inline(resumed, fake_train, seed=0)
    keys = ("trial_id", "decisions", "accuracy", "reward", "status")
    assert [[r[k] for k in keys] for r in read_rows(part)] == \
           [[r[k] for k in keys] for r in read_rows(whole)]


def test_resume_honours_the_budget(tmp_path, space):
    run = new_run(tmp_path)
    run_inline(make_core(run, space, 5), fake_train, seed=0)
    again = make_core(run, space, 5)
    again.replay()
    calls = []
    run_inline(again, lambda job: calls.append(1) or fake_train(job), seed=0)
    assert calls == [] and len(read_rows(run)) == 5


def test_children_in_flight_at_a_kill_are_rerun(tmp_path, space):
    """Parallel trials: asked 0, 1, 2; 1 and 0 finished; 2 was running at the kill."""
    run = new_run(tmp_path)
    core = make_core(run, space, 5)
    trials = [core.next_trial() for _ in range(3)]
    core.finish(trials[1], fake_train(Job("t1", trials[1].arch, 0)))
    core.finish(trials[0], fake_train(Job("t0", trials[0].arch, 0)))
    again = make_core(run, space, 5)
    assert again.replay() == 2
    rerun = again.next_trial()
    assert rerun.trial_id == 2 and rerun.choices == trials[2].choices
    fresh = again.next_trial()
    assert fresh.trial_id == 3


def test_a_damaged_log_is_a_user_error(tmp_path, space):
    run = new_run(tmp_path)
    run_inline(make_core(run, space, 2), fake_train, seed=0)
    with open(run.trials_csv, "a") as fh:
        fh.write("garbage,row\n")
    with pytest.raises(UserError, match=r"trials.csv: line 4: 2 fields, expected"):
        make_core(run, space, 5).replay()


def test_a_torn_last_line_is_dropped(tmp_path, space):
    run = new_run(tmp_path)
    run_inline(make_core(run, space, 3), fake_train, seed=0)
    path = run.trials_csv
    with open(path, "a") as fh:
        fh.write("3,4,\"[1,2")  # killed mid-write
    assert len(read_rows(run)) == 3
    assert path.read_text().endswith("\n")


def test_repeated_architectures_are_cached(tmp_path):
    # Only one decision with two options: repeats are certain.
    fixed = {"op": "mbconv3", "kernel": 3, "se": 0.0, "skip": "none", "width": 1.0}
    skeleton = Skeleton(stem=8, head_conv=32, blocks=[BlockSpec(width=16, layers=1, fixed=fixed)])
    tiny = FactorizedSpace("mnasnet", skeleton, resolution=16, num_classes=4)
    run = new_run(tmp_path)
    calls = []
    core = make_core(run, tiny, 8, strategy="random")
    run_inline(core, lambda job: calls.append(job.arch.hash()) or fake_train(job), seed=0)
    rows = read_rows(run)
    assert len(rows) == 8 and len(calls) == len(set(calls)) <= 2
    cached = [r for r in rows if r["status"] == "cached"]
    assert len(cached) == 8 - len(calls)
    first = {r["arch_hash"]: r for r in rows if r["status"] == "ok"}
    assert all(r["reward"] == first[r["arch_hash"]]["reward"] for r in cached)


def test_failed_trials_are_recorded_and_the_search_goes_on(tmp_path, space):
    run = new_run(tmp_path)

    def flaky(job):
        return JobResult(None, "loss became nan at step 3") if job.seed % 3 == 0 else fake_train(job)

    run_inline(make_core(run, space, 7, max_failed=5), flaky, seed=0)
    rows = read_rows(run)
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(rows) == 7 and len(failed) == 3
    assert all(r["error"] == "loss became nan at step 3" and r["reward"] == "" for r in failed)


def test_a_raising_trial_is_recorded_and_the_search_goes_on(tmp_path, space):
    run = new_run(tmp_path)

    def raising(job):
        if job.seed % 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore")
        return fake_train(job)

    run_inline(make_core(run, space, 6, max_failed=5), raising, seed=0)
    rows = read_rows(run)
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(rows) == 6 and len(failed) == 3
    assert all(r["error"] == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
               for r in failed)


def test_too_many_failures_stop_the_search(tmp_path, space):
    run = new_run(tmp_path)
    with pytest.raises(SearchFailed, match="3 trials failed"):
        run_inline(make_core(run, space, 10, max_failed=2),
                   lambda job: JobResult(None, "boom"), seed=0)
    assert len(read_rows(run)) == 3


def test_replay_refuses_a_different_seed(tmp_path, space):
    run = new_run(tmp_path)
    run_inline(make_core(run, space, 3), fake_train, seed=0)
    with pytest.raises(UserError, match="does not replay"):
        make_core(run, space, 5, seed=1).replay()
