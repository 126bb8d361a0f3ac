"""The `train` evaluator (MnasNet sec. 4): each child is proxy-trained from scratch with
`train:`'s budget and scored on the validation split, one job per child, inline or as
Ray Tune trials; a killed search re-runs only the children not yet in its log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from nas.raytune import make_executor, run_ray
from nas.search.core import SearchCore, SearchFailed, run_inline, trial_seed
from nas.search.evaluators.base import ChildRecord, Evaluator
from nas.step import make_step
from search_spaces.infra.jobs import Job

if TYPE_CHECKING:
    from nas.experiment import Experiment
    from nas.rundir import RunDir


class TrainEvaluator(Evaluator):
    """A child costs one proxy training (minutes); its accuracy is the trained one."""

    name = "train"

    def search(self, exp: "Experiment", run: "RunDir", core: SearchCore,
               log: Callable[[str], None]) -> None:
        cfg = exp.config
        step = make_step(exp.data, cfg.train)  # children train from scratch for train:
        if cfg.search.executor == "inline":
            run_inline(core, step, cfg.seed)
        elif not core.finished:
            run_ray(core, step, cfg.seed, cfg.ray, run.ray_dir)
            if not core.finished:  # Tune ended early: never hand a partial search on
                raise SearchFailed(f"Ray Tune stopped after {core.done} of "
                                   f"{cfg.search.num_trials} trials; `nas resume {run.root}` "
                                   f"continues")

    def score_children(self, exp: "Experiment", run: "RunDir",
                       children: Sequence[tuple[int, Mapping[str, Any]]],
                       record: ChildRecord, log: Callable[[str], None]) -> float | None:
        train_children(exp, run, children, record)
        return None


def train_children(exp: "Experiment", run: "RunDir",
                   children: Sequence[tuple[int, Mapping[str, Any]]], record: ChildRecord,
                   epochs: float | None = None, label: str = "train",
                   seed_of: Callable[[int], int] | None = None) -> None:
    """Train each of `children` stand-alone (`epochs`, or `train:`'s budget) with the
    experiment's executor, seeded by `seed_of(index)`, by default as the search seeds a
    trial of the same index."""
    cfg = exp.config
    seed = seed_of or (lambda i: trial_seed(cfg.seed, i))
    jobs = [Job(f"{label}_{i}", exp.space.decode(values), seed(i), epochs=epochs)
            for i, values in children]
    if not jobs:
        return
    executor = make_executor(cfg.search.executor, make_step(exp.data, cfg.train), cfg.ray,
                             run.ray_dir, "proxy_check")
    executor(jobs, lambda job, result: record(int(job.name.rpartition("_")[2]), result))
