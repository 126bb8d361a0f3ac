"""Ray Tune execution: each child is a Tune trial; our strategy sits behind a Searcher.

The same experiment runs on a laptop (a local Ray) or a cluster (`ray.address`).
Ray Tune checkpoints its own state only periodically, so resume does not use
`Tuner.restore`: the run's trial log is replayed into a new `SearchCore` instead.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from nas.configload import positive
from nas.search import SearchCore, SearchFailed, Trial, TrialOutcome, guarded, trial_seed
from netadapt.jobs import Job, JobResult, OnResult, Step, run_guarded
from search_spaces.arch import Arch, arch_from_dict


@dataclass
class RayConfig:
    """`ray:` where and how wide trials run."""

    address: str | None = None  # absent: start a local Ray; `auto` or host:port: join
    cpus_per_trial: float = field(default=1.0, metadata={"check": positive})
    gpus_per_trial: float = 0.0
    max_concurrent_trials: int | None = field(default=None, metadata={"check": positive})
    num_cpus: int | None = field(default=None, metadata={"check": positive})  # local Ray only


def _import_tune() -> Any:
    # The classic reporter, silent at verbose=0: progress is our one line per trial.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune
    from ray.tune.search import Searcher

    return tune, Searcher


def make_searcher(core: SearchCore, seed: int) -> Any:
    """A `ray.tune.search.Searcher` that asks `core` for children and tells it results."""
    _, Searcher = _import_tune()

    class NasSearcher(Searcher):
        def __init__(self) -> None:
            # No Tune metric: the reward is computed by `core` in the driver, where the
            # latency model lives; Tune only schedules.
            super().__init__()
            self.live: dict[str, Trial] = {}
            self.error: BaseException | None = None

        def suggest(self, trial_id: str) -> dict | str | None:
            if self.error is not None or core.done >= core.num_trials:
                return Searcher.FINISHED
            if not core.wants_more():
                return None  # the budget is in flight; a failure may still free a slot
            trial = core.next_trial()
            self.live[trial_id] = trial
            return {"arch": trial.arch.to_dict(), "seed": trial_seed(seed, trial.trial_id),
                    "cached": trial.cached is not None, "trial_id": trial.trial_id}

        def on_trial_complete(self, trial_id: str, result: dict | None = None,
                              error: bool = False) -> None:
            trial = self.live.pop(trial_id, None)
            if trial is None:
                return
            if result is None or error:
                outcome = TrialOutcome(None, "the Ray trial crashed (see its log in ray/)")
            else:
                outcome = TrialOutcome(result.get("accuracy"), result.get("error", ""),
                                       result.get("images_per_s"))
            try:
                core.finish(trial, outcome)
            except SearchFailed as err:
                self.error = err

        def save(self, checkpoint_path: str) -> None:
            # The trial log is the truth; this snapshot only serves Tune's own restore.
            with open(checkpoint_path, "w") as fh:
                json.dump({"asks": core.asks, "done": core.done}, fh)

        def restore(self, checkpoint_path: str) -> None:
            with open(checkpoint_path) as fh:
                state = json.load(fh)
            if state["done"] != core.done:
                raise RuntimeError("Tune restored a searcher out of step with the trial log")

    return NasSearcher()


def _trainable(config: dict, train_fn: Callable[[Arch, int], TrialOutcome]) -> None:
    tune, _ = _import_tune()
    if config["cached"]:
        tune.report({"accuracy": None, "error": "", "images_per_s": None})
        return
    outcome = guarded(train_fn, arch_from_dict(config["arch"]), config["seed"])
    tune.report({"accuracy": outcome.accuracy, "error": outcome.error,
                 "images_per_s": outcome.images_per_s})


def run_ray(core: SearchCore, train_fn: Callable[[Arch, int], TrialOutcome], seed: int,
            cfg: RayConfig, storage: Path) -> None:
    """Run the remaining trials as Ray Tune trials."""
    import ray

    tune, _ = _import_tune()
    _init_ray(cfg)
    total_cpus = ray.cluster_resources().get("CPU", 1)
    concurrent = cfg.max_concurrent_trials or max(1, int(total_cpus // cfg.cpus_per_trial))

    searcher = make_searcher(core, seed)
    # with_parameters ships the trial function (and the data it holds) through the
    # object store once, instead of pickling it into every trial.
    trainable = tune.with_parameters(_trainable, train_fn=train_fn)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial}),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1,
                                    max_concurrent_trials=concurrent, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(storage.resolve()), name="tune", verbose=0),
    )
    tuner.fit()
    if searcher.error is not None:
        raise searcher.error


def _init_ray(cfg: RayConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "configure_logging": False,
                              "log_to_driver": False}
    if cfg.address:
        ray.init(address=cfg.address, **kwargs)
    else:
        ray.init(num_cpus=cfg.num_cpus or os.cpu_count(), **kwargs)


def _run_job(config: dict, jobs: Sequence[Job], step: Step) -> None:
    tune, _ = _import_tune()
    result = run_guarded(step, jobs[config["index"]])
    tune.report({"accuracy": result.accuracy, "error": result.error, "wall_s": result.wall_s})


def run_jobs_ray(jobs: Sequence[Job], on_result: OnResult, step: Step, cfg: RayConfig,
                 storage: Path) -> None:
    """NetAdapt's jobs as Ray Tune trials, side by side; `on_result` as each ends."""
    import ray

    tune, _ = _import_tune()
    _init_ray(cfg)
    total_cpus = ray.cluster_resources().get("CPU", 1)
    concurrent = cfg.max_concurrent_trials or max(1, int(total_cpus // cfg.cpus_per_trial))

    class Collect(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            r = trial.last_result
            job = jobs[trial.config["index"]]
            on_result(job, JobResult(r.get("accuracy"), r.get("error", ""), r.get("wall_s", 0.0)))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            on_result(jobs[trial.config["index"]],
                      JobResult(None, "the Ray trial crashed (see its log in ray/)"))

    # one Tune experiment per batch; the time keeps a resumed batch's name fresh
    name = f"netadapt_{jobs[0].name.split('/')[0] if jobs else 'jobs'}_{time.strftime('%H%M%S')}"
    trainable = tune.with_parameters(_run_job, jobs=list(jobs), step=step)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial}),
        param_space={"index": tune.grid_search(list(range(len(jobs))))},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrent, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(storage.resolve()), name=name, verbose=0,
                                  callbacks=[Collect()]),
    )
    tuner.fit()
