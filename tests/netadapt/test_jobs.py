"""The one job contract: jobs, the guarded runner, feeds, the inline and Ray drivers,
and the proxy trainer as the step of a search child and of a NetAdapt proposal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arch_fixtures import small_arch
from nas.data import DataConfig, SyntheticConfig, load_data
from nas.raytune import make_searcher
from nas.step import make_step
from nas.train import TrainConfig, train_and_evaluate
from search_spaces.builder import build_model
from search_spaces.infra.jobs import Job, JobList, JobResult, inline_executor, run_feed, run_guarded
from search_spaces.infra.weights import read_weights, write_weights

CFG = TrainConfig(steps=3, batch_size=16, device="cpu", threads=1, bn_recalibration=1,
                  log_every=1000)


@pytest.fixture(scope="module")
def splits():
    cfg = DataConfig(synthetic=SyntheticConfig(num_classes=4, train_size=120, test_size=0,
                                               image_size=16), val_subset=40)
    return load_data(cfg, 16, "exp.yaml")


def test_a_job_travels_as_plain_data(tmp_path: Path) -> None:
    job = Job("iter_1/expansion/2", small_arch(), 7, tmp_path / "a.pt", tmp_path / "b.pt",
              steps=5)
    assert Job.from_dict(job.to_dict()) == job
    assert Job.from_dict(Job("c", small_arch(), 1).to_dict()) == Job("c", small_arch(), 1)
    assert job.trains and Job("x", small_arch(), 0).trains
    assert not Job("x", small_arch(), 0, steps=0).trains
    assert not Job("x", small_arch(), 0, epochs=0.0).trains


def test_the_guarded_runner_turns_an_exception_into_one_failed_line() -> None:
    def boom(job: Job) -> JobResult:
        raise RuntimeError("CUDA out of memory.\nmore")

    def killed(job: Job) -> JobResult:
        raise KeyboardInterrupt

    result = run_guarded(boom, Job("x", small_arch(), 0))
    assert result.accuracy is None and result.error == "RuntimeError: CUDA out of memory."
    with pytest.raises(KeyboardInterrupt):  # a kill is not a failed job
        run_guarded(killed, Job("x", small_arch(), 0))


def test_a_job_list_runs_inline_in_order() -> None:
    jobs = [Job(f"j{i}", small_arch(), i) for i in range(3)]
    seen: list[tuple[str, float | None]] = []
    inline_executor(lambda job: JobResult(job.seed / 10))(
        jobs, lambda job, result: seen.append((job.name, result.accuracy)))
    assert seen == [("j0", 0.0), ("j1", 0.1), ("j2", 0.2)]
    feed = JobList(jobs, lambda job, result: None)
    run_feed(lambda job: JobResult(0.5), feed)
    assert feed.exhausted()


def test_the_ray_searcher_feeds_jobs_and_collects_results() -> None:
    """The searcher alone (no Ray started): what Tune would see."""
    jobs = [Job(f"j{i}", small_arch(), i) for i in range(2)]
    got: list[JobResult] = []
    searcher = make_searcher(JobList(jobs, lambda job, result: got.append(result)))
    first, second = searcher.suggest("t1"), searcher.suggest("t2")
    assert Job.from_dict(first["job"]) == jobs[0] and Job.from_dict(second["job"]) == jobs[1]
    assert searcher.suggest("t3") is None  # both running: wait
    searcher.on_trial_complete("t2", {"accuracy": 0.5, "error": "", "wall_s": 1.0,
                                      "images_per_s": 20.0})
    searcher.on_trial_complete("t1", None, error=True)
    assert got == [JobResult(0.5, "", 1.0, 20.0),
                   JobResult(None, "the Ray trial crashed (see its log in ray/)")]
    assert searcher.suggest("t4") == "FINISHED"


def test_an_error_in_the_feed_ends_the_suggestions() -> None:
    def fail(job: Job, result: JobResult) -> None:
        raise ValueError("too many failures")

    searcher = make_searcher(JobList([Job("a", small_arch(), 0), Job("b", small_arch(), 1)],
                                     fail))
    searcher.suggest("t1")
    searcher.on_trial_complete("t1", {"accuracy": None, "error": "nan"})
    assert searcher.suggest("t2") == "FINISHED"
    assert isinstance(searcher.error, ValueError)


def test_a_search_child_trains_as_it_always_did(splits) -> None:
    """A job without a budget trains for train:'s, from its seed, like
    `train_and_evaluate` (the search's trainer before there was one contract)."""
    step = make_step(splits, CFG)
    result = step(Job("trial_0", small_arch(), 11))
    assert result.accuracy == train_and_evaluate(small_arch(), splits, CFG, 11).accuracy
    assert result.images_per_s is not None and result.images_per_s > 0
    assert result.wall_s > 0 and result.error == ""


def test_a_proposal_fine_tunes_from_weights_and_saves(tmp_path: Path, splits) -> None:
    start = tmp_path / "start.pt"
    write_weights(build_model(small_arch()).state_dict(), start)
    out = tmp_path / "out" / "weights.pt"
    step = make_step(splits, CFG, finetune_lr=0.01)
    result = step(Job("iter_1/x", small_arch(), 2, weights=start, out=out, steps=2))
    assert 0 <= result.accuracy <= 1
    trained = read_weights(out, small_arch())
    before = read_weights(start)
    assert any(not torch.equal(trained[k], before[k]) for k in before)
    # evaluate only: the weights come back unchanged
    again = tmp_path / "again.pt"
    evaluated = step(Job("start", small_arch(), 2, weights=out, out=again, steps=0))
    assert evaluated.images_per_s is None
    assert all(torch.equal(read_weights(again)[k], trained[k]) for k in trained)


def test_a_failed_training_is_a_recorded_failure(splits) -> None:
    step = make_step(splits, TrainConfig(steps=3, batch_size=16, lr=1e30, device="cpu",
                                         threads=1, log_every=1000))
    result = step(Job("trial_0", small_arch(), 0))
    assert result.accuracy is None and "loss became" in result.error
