"""The search stage: strategy proposes, space decodes, trainer + latency score, reward.

`SearchCore` holds everything but execution; `SearchFeed` hands its children out as
jobs (`search_spaces.infra.jobs`), which `run_inline` and `nas.raytune.run_ray` run. The trial
log (`search/trials.csv`) is replayed on start, which makes a killed search resume
exactly where it stopped (see `SearchCore.replay`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from nas.rundir import RunDir, TrialLog, atomic_write, cell, write_csv, write_json
from nas.search.predictor import MIN_FIT, AccuracyPredictor, PredictorConfig
from nas.search.rewards import Reward
from nas.search.strategies import Strategy
from search_spaces.arch import Arch
from search_spaces.counting import count
from search_spaces.factorized import FactorizedSpace
from search_spaces.infra.errors import UserError
from search_spaces.infra.jobs import Job, JobResult, Step, run_feed
from search_spaces.infra.seeds import seed_for

COLUMNS = ["trial_id", "asked", "decisions", "arch_hash", "params", "macs", "latency_ms",
           "latency_source", "accuracy", "reward", "latency_factor", "status", "error",
           "wall_s", "images_per_s", "accuracy_source", "predicted_accuracy"]
# Rows the strategy was told a reward for (`predicted`: by the accuracy predictor,
# never the search's result nor a cache entry).
TOLD = ("ok", "cached", "predicted")


class SearchFailed(Exception):
    """Too many trials failed (past `search.max_failed_trials`)."""


@dataclass
class Trial:
    """One child: its identity, architecture and latency, before training."""

    trial_id: int
    choices: list[int]
    arch: Arch
    latency_ms: float
    latency_source: str
    cached: dict[str, str] | None = None  # the earlier row of the same architecture
    predicted: bool = False  # told the accuracy predictor's estimate, not evaluated
    started: float = field(default_factory=time.time)


class SearchCore:
    """The search's state and bookkeeping; executors call `next_trial` and `finish`."""

    def __init__(self, space: FactorizedSpace, strategy: Strategy,
                 predict_latency: Callable[[Arch], tuple[float, str]], reward: Reward,
                 run: RunDir, num_trials: int, max_failed: int,
                 log: Callable[[str], None] | None = None,
                 accuracy_source: str = "train",
                 predictor: tuple[PredictorConfig, AccuracyPredictor] | None = None) -> None:
        self.space = space
        self.strategy = strategy
        self.predict_latency = predict_latency
        self.reward = reward
        self.run = run
        self.num_trials = num_trials
        self.max_failed = max_failed
        self.accuracy_source = accuracy_source  # the evaluator's name (trials.csv records it)
        self.predictor = predictor
        self.print = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.trials = TrialLog(run.trials_csv, COLUMNS)
        self.rows: list[dict[str, str]] = []
        self.asks = 0
        self.requeue: list[tuple[int, list[int]]] = []
        self.cache: dict[str, dict[str, str]] = {}
        self.in_flight = 0
        # (time, trials done) when this process's first trial began: the ETA's rate
        # counts only trials timed here, not a replayed log or a supernet's training
        self._clock: tuple[float, int] | None = None

    # ------------------------------------------------------------ resume

    def replay(self) -> int:
        """Rebuild the strategy from the trial log; returns the rows replayed.

        Each row records how many children had been asked when it was told (`asked`),
        so the exact ask/tell interleaving, and with it the strategy's state, is
        reproduced. Children asked but never told (in flight at a kill) are re-run
        with the same ids and decisions.
        """
        asked: dict[int, list[int]] = {}
        for line, row in enumerate(self.trials.read(), start=2):
            try:
                n_asked, tid = int(row["asked"]), int(row["trial_id"])
                logged = json.loads(row["decisions"])
                if row["status"] in TOLD:
                    for key in ("reward", "accuracy", "latency_ms"):
                        if not math.isfinite(float(row[key])):
                            raise ValueError(key)
            except ValueError:
                raise UserError(f"line {line}: unreadable trial_id, asked, decisions, reward, "
                                f"accuracy or latency_ms (a damaged log)",
                                str(self.trials.path)) from None
            while self.asks < n_asked:
                asked[self.asks] = self.strategy.ask()
                self.asks += 1
            choices = asked.pop(tid, None)
            if choices != logged:
                raise UserError(f"trial {tid} does not replay (was the run's config.yaml "
                                f"or seed changed?)", str(self.trials.path))
            self._record(row, choices)
            if not self.run.arch_json(row["arch_hash"]).is_file():  # derivable: re-made
                self._write_arch(self.space.decode_indices(choices))
        self.requeue = sorted(asked.items())
        return len(self.rows)

    # ------------------------------------------------------------ trials

    @property
    def done(self) -> int:
        return len(self.rows)

    # The budget (`search.num_trials`) counts attempts: failed and cached children too.

    def wants_more(self) -> bool:
        """Whether another child may start now (the budget is not all done or running)."""
        return self.done + self.in_flight < self.num_trials

    @property
    def finished(self) -> bool:
        """Whether the whole budget is done."""
        return self.done >= self.num_trials

    def next_trial(self) -> Trial:
        if self.requeue:
            tid, choices = self.requeue.pop(0)
        else:
            tid, choices = self.asks, self.strategy.ask()
            self.asks += 1
        arch = self.space.decode_indices(choices)
        arch = arch.replace(name=f"trial_{tid}")
        h = arch.hash()
        self.in_flight += 1
        if h in self.cache:
            row = self.cache[h]
            return Trial(tid, choices, arch, float(row["latency_ms"]), row["latency_source"],
                         cached=row)
        ms, source = self.predict_latency(arch)
        predicted = self.predictor is not None and self.predictor[0].predicts(tid)
        return Trial(tid, choices, arch, ms, source, predicted=predicted)

    def predicted_accuracy(self, choices: list[int], macs: int) -> float | None:
        """The predictor's accuracy for `choices`, fitted on the real evaluations told
        so far (one row per architecture; None without a predictor or enough rows)."""
        if self.predictor is None:
            return None
        return self.predictor[1].predict(list(self.cache.values()), choices, macs)

    def finish(self, trial: Trial, outcome: JobResult) -> dict[str, str]:
        """Score, log and learn from one finished child."""
        self.in_flight -= 1
        params, macs = count(trial.arch)
        row: dict[str, Any] = {
            "trial_id": trial.trial_id, "asked": self.asks,
            "decisions": trial.choices, "arch_hash": trial.arch.hash(), "params": params,
            "macs": macs, "latency_ms": trial.latency_ms, "latency_source": trial.latency_source,
            "wall_s": round(time.time() - trial.started, 3),
        }
        acc = outcome.accuracy
        evaluated = acc is not None and math.isfinite(acc)
        guess = self.predicted_accuracy(trial.choices, macs) \
            if trial.cached is None and (trial.predicted or evaluated) else None
        if trial.predicted:
            if guess is None:
                row.update(status="failed", error=f"predictor: fewer than {MIN_FIT} real "
                                                  f"evaluations to fit on")
            else:
                reward, factor = self.reward(guess, trial.latency_ms)
                row.update(accuracy=guess, reward=reward, latency_factor=factor,
                           status="predicted", accuracy_source="predictor")
        elif trial.cached is not None:
            cached = trial.cached
            row.update(accuracy=cached["accuracy"], reward=cached["reward"],
                       latency_factor=cached["latency_factor"], status="cached",
                       images_per_s=cached["images_per_s"],
                       accuracy_source=cached["accuracy_source"])
        elif not evaluated:
            row.update(status="failed", error=outcome.error or "no accuracy")
        else:
            reward, factor = self.reward(acc, trial.latency_ms)
            # what the predictor said before this result was known: its held-out error
            row.update(accuracy=acc, reward=reward, latency_factor=factor, status="ok",
                       images_per_s=outcome.images_per_s,
                       accuracy_source=self.accuracy_source, predicted_accuracy=guess)
        self._write_arch(trial.arch)
        self.trials.append(row)
        text_row = {k: cell(row.get(k)) for k in COLUMNS}  # exactly what replay reads
        self._record(text_row, trial.choices)
        self._write_summaries()
        self._progress(text_row)
        failed = sum(r["status"] == "failed" for r in self.rows)
        if failed > self.max_failed:
            raise SearchFailed(f"{failed} trials failed (search.max_failed_trials is "
                               f"{self.max_failed}); last error: {row.get('error')}")
        return text_row

    def _record(self, row: dict[str, str], choices: list[int]) -> None:
        """Apply a logged row to the in-memory state (live or on replay)."""
        self.rows.append(row)
        ok = row["status"] in TOLD
        self.strategy.tell(choices, float(row["reward"]) if ok else None)
        if row["status"] == "ok":
            self.cache.setdefault(row["arch_hash"], row)

    # ------------------------------------------------------------ outputs

    def _write_arch(self, arch: Arch) -> None:
        path = self.run.arch_json(arch.hash())
        if not path.exists():
            atomic_write(path, arch.replace(name=arch.hash()).to_json())

    def best(self) -> dict[str, str] | None:
        ok = [r for r in self.rows if r["status"] in ("ok", "cached")]  # not predicted
        return max(ok, key=lambda r: float(r["reward"])) if ok else None

    def write_best(self, row: dict[str, str], **metrics: Any) -> None:
        """`search/best.json` (a plain Arch JSON, so any command takes it) and
        `best_metrics.json` for the child of `row`; `metrics` add or replace entries
        (a re-ranked child's trained accuracy)."""
        atomic_write(self.run.best_json, self.run.arch_json(row["arch_hash"]).read_text())
        write_json(self.run.best_metrics_json, {
            "trial_id": int(row["trial_id"]), "arch_hash": row["arch_hash"],
            "decisions": json.loads(row["decisions"]),
            "reward": float(row["reward"]), "accuracy": float(row["accuracy"]),
            "accuracy_source": row["accuracy_source"] or "train",
            "latency_ms": float(row["latency_ms"]), "params": int(row["params"]),
            "macs": int(row["macs"]), **metrics})

    def _write_summaries(self) -> None:
        best = self.best()
        if best is not None:
            self.write_best(best)
        write_csv(self.run.pareto_csv, pareto_front(self.rows), COLUMNS)
        state = getattr(self.strategy, "trainer", None)
        if state is not None:
            atomic_write(self.run.controller_pt, state.to_bytes())

    def _progress(self, row: dict[str, str]) -> None:
        best = self.best()
        now = time.time()
        if self._clock is None:
            self._clock = (now - float(row["wall_s"] or 0), self.done - 1)
        began, done_before = self._clock
        eta = (now - began) / max(self.done - done_before, 1) * (self.num_trials - self.done)
        if row["status"] == "failed":
            what = f"FAILED: {row['error']}"
        else:
            what = (f"acc {float(row['accuracy']):.3f} lat {float(row['latency_ms']):.2f} ms "
                    f"reward {float(row['reward']):.4f}"
                    + (f" ({row['status']})" if row["status"] in ("cached", "predicted")
                       else ""))
        best_text = (f" | best {float(best['reward']):.4f} (#{best['trial_id']})"
                     if best else "")
        self.print(f"[done {self.done:>4}/{self.num_trials}] trial {row['trial_id']}: {what}"
                   f"{best_text} | {float(row['wall_s']):.1f}s, ETA {eta / 60:.1f} min")


def pareto_front(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows not dominated in (higher accuracy, lower latency), one per architecture."""
    ok = {}
    for r in rows:
        if r["status"] == "ok":
            ok.setdefault(r["arch_hash"], r)
    ordered = sorted(ok.values(), key=lambda r: (float(r["latency_ms"]), -float(r["accuracy"])))
    front, best_acc = [], -1.0
    for r in ordered:
        if float(r["accuracy"]) > best_acc:
            front.append(r)
            best_acc = float(r["accuracy"])
    return front


def trial_seed(seed: int, trial_id: int) -> int:
    """A child's training seed: the run's seed and the trial id alone (resume-stable)."""
    return seed_for(seed, trial_id, "linear")


class SearchFeed:
    """The search as a `JobFeed`: each child the strategy proposes becomes a job.

    Up to `window` children are out at once (the executor's concurrency). Results are
    told to the strategy in trial-id order, however the jobs finish, and the next
    child is asked right after each tell, so what is asked depends on the seed and
    the window only: a resumed Ray search takes the path an uninterrupted one takes.
    A child whose architecture was trained before is scored from its earlier row,
    without a job. Children train for the trainer's own budget (`train:`).
    """

    def __init__(self, core: SearchCore, seed: int, window: int = 1) -> None:
        self.core = core
        self.seed = seed
        self.window = max(1, window)
        self.live: dict[str, Trial] = {}
        self.ready: list[Trial] = []  # asked, to be handed out
        self.untold: list[Trial] = []  # asked and not yet told, in ask order
        self.results: dict[int, JobResult] = {}  # finished, waiting for their turn

    def _fill(self) -> None:
        while len(self.untold) < self.window and self.core.wants_more():
            trial = self.core.next_trial()
            self.untold.append(trial)
            if trial.cached is not None or trial.predicted:  # no job: scored at its tell
                self.results[trial.trial_id] = JobResult(None)
            else:
                self.ready.append(trial)

    def _tell(self) -> None:
        while self.untold and self.untold[0].trial_id in self.results:
            trial = self.untold.pop(0)
            self.core.finish(trial, self.results.pop(trial.trial_id))
            self._fill()  # the next ask sees exactly the children told so far

    def next_job(self) -> Job | None:
        self._fill()
        self._tell()  # cached children at the head
        if not self.ready:
            return None
        trial = self.ready.pop(0)
        job = Job(f"trial_{trial.trial_id}", trial.arch,
                  trial_seed(self.seed, trial.trial_id), choices=tuple(trial.choices))
        self.live[job.name] = trial
        return job

    def exhausted(self) -> bool:
        return self.core.finished

    def record(self, job: Job, result: JobResult) -> None:
        self.results[self.live.pop(job.name).trial_id] = result
        self._tell()


def run_inline(core: SearchCore, step: Step, seed: int) -> None:
    """Run trials one after another in this process (debugging, tests, small machines)."""
    run_feed(step, SearchFeed(core, seed))
