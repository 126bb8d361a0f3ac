"""The `train` evaluator (MnasNet sec. 4): each child is proxy-trained from scratch with
`train:`'s budget and scored on the validation split, one job per child, inline or as
Ray Tune trials; a killed search re-runs only the children not yet in its log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from nas.raytune import make_executor, run_ray
from nas.search.core import SearchCore, SearchFailed, run_inline, trial_seed
from nas.search.evaluators.base import ChildRecord, Evaluator
from nas.step import make_step
from search_spaces.infra.jobs import Job, JobResult

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
                   children: Sequence[tuple[int, Mapping[str, Any]]],
                   record: ChildRecord) -> None:
    """Proxy-train each of `children` stand-alone with `train:`'s budget, seeded as the
    search seeds a trial of the same index."""
    jobs = [Job(f"train_{i}", exp.space.decode(values), trial_seed(exp.config.seed, i))
            for i, values in children]
    train_jobs(exp, run, jobs,
               lambda job, result: record(int(job.name.rpartition("_")[2]), result))


def train_jobs(exp: "Experiment", run: "RunDir", jobs: Sequence[Job],
               done: Callable[[Job, JobResult], None]) -> None:
    """Train `jobs` stand-alone, in their order, with the experiment's executor (Ray:
    as trials of the proxy check's experiment)."""
    if not jobs:
        return
    cfg = exp.config
    executor = make_executor(cfg.search.executor, make_step(exp.data, cfg.train), cfg.ray,
                             run.ray_dir, "proxy_check")
    executor(jobs, done)
