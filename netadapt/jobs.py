"""What NetAdapt asks of a trainer, and how the work is run.

NetAdapt does not train anything itself: it hands `Job`s (train this Arch from these
weights for so many steps, save the result, report validation top-1) to a `Step`,
and batches of jobs to an `Executor` (inline here; `nas` adds Ray Tune). Weights
travel as files, so jobs are small, run anywhere the run directory is reachable,
and a finished proposal survives a crash of the driver.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from search_spaces.arch import Arch


@dataclass(frozen=True)
class Job:
    """Train `arch` (from `weights`, or freshly initialised from `seed` when None) for
    `steps` steps or `epochs` epochs (neither: evaluate only), save the trained state
    dict to `out` (when given), and score it on the validation split."""

    name: str
    arch: Arch
    weights: Path | None
    out: Path | None
    seed: int
    steps: int | None = None
    epochs: float | None = None


@dataclass(frozen=True)
class JobResult:
    """Validation top-1 (0..1), or why the job failed."""

    accuracy: float | None
    error: str = ""
    wall_s: float = 0.0


Step = Callable[[Job], JobResult]
OnResult = Callable[[Job, JobResult], None]


class Executor(Protocol):
    """Runs every job, in any order or in parallel, calling `on_result` as each ends."""

    def __call__(self, jobs: Sequence[Job], on_result: OnResult) -> None: ...


def error_line(err: BaseException) -> str:
    """An exception as the one line a results table records."""
    return f"{type(err).__name__}: {err}".splitlines()[0][:300]


def run_guarded(step: Step, job: Job) -> JobResult:
    """`step(job)`, with an exception turned into a failed result (one line)."""
    start = time.perf_counter()
    try:
        result = step(job)
    except Exception as err:  # a broken proposal must not end the whole run
        return JobResult(None, error_line(err), time.perf_counter() - start)
    return result


def inline_executor(step: Step) -> Executor:
    """Jobs one after another in this process."""

    def run(jobs: Sequence[Job], on_result: OnResult) -> None:
        for job in jobs:
            on_result(job, run_guarded(step, job))

    return run
