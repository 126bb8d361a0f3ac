"""The job contract: every training that a stage hands out, and how jobs are run.

A `Job` says what to train (an Arch, from weights or from a seed), for how long, and
where to save the result; a `Step` (the trainer, which `nas` provides) turns it into
a `JobResult`: validation top-1 or the one-line reason it failed, and its speed. A
search child and a NetAdapt proposal are both jobs. Weights travel as files, so jobs
are small, run anywhere the run directory is reachable, and a finished job survives
a crash of the driver.

Who hands out jobs is a `JobFeed`: the search asks its strategy for the next child,
NetAdapt offers a fixed batch (`JobList`). One guarded runner (`run_guarded`) runs a
job so that an exception fails that job only; `run_feed` drives a feed inline, and
`nas.raytune` drives the same feed on Ray Tune.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from search_spaces.arch import Arch, arch_from_dict


@dataclass(frozen=True)
class Job:
    """Train `arch` (from `weights`, or freshly initialised from `seed` when None), save
    the trained state dict to `out` (when given), score it on the validation split.

    The budget: `steps` or `epochs`; neither: the trainer's own (the `train:`
    section, as a search child trains); `steps=0` or `epochs=0`: evaluate only.
    `arch` is None for a job whose step builds its own network (the supernet);
    `choices` are a search child's decisions (option indices) when it has them.
    """

    name: str
    arch: Arch | None
    seed: int
    weights: Path | None = None
    out: Path | None = None
    steps: int | None = None
    epochs: float | None = None
    choices: tuple[int, ...] | None = None

    @property
    def trains(self) -> bool:
        """False for an evaluate-only job."""
        return self.steps != 0 and self.epochs != 0

    def to_dict(self) -> dict[str, Any]:
        """Plain data (a Ray Tune trial's config)."""
        return {"name": self.name, "arch": None if self.arch is None else self.arch.to_dict(),
                "seed": self.seed,
                "weights": None if self.weights is None else str(self.weights),
                "out": None if self.out is None else str(self.out),
                "steps": self.steps, "epochs": self.epochs,
                "choices": None if self.choices is None else list(self.choices)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Job":
        return cls(data["name"], None if data["arch"] is None else arch_from_dict(data["arch"]),
                   data["seed"],
                   None if data["weights"] is None else Path(data["weights"]),
                   None if data["out"] is None else Path(data["out"]),
                   data["steps"], data["epochs"],
                   None if data.get("choices") is None else tuple(data["choices"]))


@dataclass(frozen=True)
class JobResult:
    """Validation top-1 (0..1), or None and why the job failed; how long it took and
    how fast it trained (None when it did not train)."""

    accuracy: float | None
    error: str = ""
    wall_s: float = 0.0
    images_per_s: float | None = None


Step = Callable[[Job], JobResult]
OnResult = Callable[[Job, JobResult], None]


class Executor(Protocol):
    """Runs every job, in any order or in parallel, calling `on_result` as each ends."""

    def __call__(self, jobs: Sequence[Job], on_result: OnResult) -> None: ...


class JobFeed(Protocol):
    """Hands out jobs and takes their results; executors drive it."""

    def next_job(self) -> Job | None:
        """The next job to start; None: none now (wait for a running job's result)."""

    def exhausted(self) -> bool:
        """True once no job will be handed out and every result is in."""

    def record(self, job: Job, result: JobResult) -> None:
        """Take a finished job's result."""


class JobList:
    """A fixed batch of jobs as a `JobFeed`, each result passed to `on_result`."""

    def __init__(self, jobs: Sequence[Job], on_result: OnResult) -> None:
        self.todo = list(jobs)
        self.on_result = on_result
        self.running = 0

    def next_job(self) -> Job | None:
        if not self.todo:
            return None
        self.running += 1
        return self.todo.pop(0)

    def exhausted(self) -> bool:
        return not self.todo and not self.running

    def record(self, job: Job, result: JobResult) -> None:
        self.running -= 1
        self.on_result(job, result)


def error_line(err: BaseException) -> str:
    """An exception as the one line a results table records."""
    return f"{type(err).__name__}: {err}".splitlines()[0][:300]


def run_guarded(step: Step, job: Job) -> JobResult:
    """`step(job)`, with an exception turned into a failed result (one line): a broken
    child or proposal (say, out of memory) fails alone, not the whole run."""
    start = time.perf_counter()
    try:
        return step(job)
    except Exception as err:
        return JobResult(None, error_line(err), time.perf_counter() - start)


def run_feed(step: Step, feed: JobFeed) -> None:
    """Every job of `feed`, one after another in this process."""
    while not feed.exhausted():
        job = feed.next_job()
        if job is None:  # nothing runs inline, so nothing can free another job
            return
        feed.record(job, run_guarded(step, job))


def inline_executor(step: Step) -> Executor:
    """Jobs one after another in this process."""

    def run(jobs: Sequence[Job], on_result: OnResult) -> None:
        run_feed(step, JobList(jobs, on_result))

    return run
