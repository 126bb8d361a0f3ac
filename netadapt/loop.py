"""The NetAdapt loop: propose, fine-tune each proposal, keep the best, until the target.

Everything lives in one folder (a run's `netadapt/`; its files: `netadapt.layout`).
A killed run resumes at the iteration it was in: finished proposals are not trained
again, and with deterministic jobs the history equals an uninterrupted run's.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from netadapt.config import NetAdaptConfig
from netadapt.inherit import inherit
from netadapt.layout import IterationFolder, NetAdaptDir
from netadapt.proposals import Proposal, choose, make_proposals, score
from search_spaces.arch import Arch, load_arch
from search_spaces.infra.jobs import Executor, Job, JobResult
from search_spaces.infra.files import (TrialLog, atomic_write, cell, read_record, write_csv,
                                 write_json)
from search_spaces.infra.seeds import seed_for
from search_spaces.infra.weights import read_weights, write_weights

HISTORY_COLUMNS = ["iteration", "proposal", "layers", "width_before", "width_after",
                   "latency_ms", "latency_drop_ms", "measured_ms", "accuracy", "metric",
                   "chosen", "error", "wall_s"]
PROPOSAL_COLUMNS = ["proposal", "accuracy", "error", "wall_s"]

Latency = Callable[[Arch], float]


class NetAdaptFailed(Exception):
    """Every proposal of an iteration failed: there is nothing to continue from."""


@dataclass(frozen=True)
class NetAdaptResult:
    """Where the loop ended: the final network (after the long-term fine-tune)."""

    arch: Arch
    weights: Path
    accuracy: float
    latency_ms: float
    start_ms: float
    target_ms: float
    target_met: bool
    iterations: int


def job_seed(seed: int, name: str) -> int:
    """A seed per job from the run's seed and the job's name alone (resume-stable)."""
    return seed_for(seed, f"netadapt/{name}", "hash56")


class NetAdapt:
    """One NetAdapt run in `folder`; `run()` starts or continues it."""

    def __init__(self, cfg: NetAdaptConfig, latency: Latency, executor: Executor,
                 folder: Path, seed: int = 0, log: Callable[[str], None] = print,
                 measure: Latency | None = None, pretrain_epochs: float = 1.0) -> None:
        self.cfg = cfg
        self.latency = latency
        self.executor = executor
        self.folder = folder
        self.dir = NetAdaptDir(folder)
        self.seed = seed
        self.log = log
        self.measure = measure
        self.pretrain_epochs = pretrain_epochs

    # ------------------------------------------------------------ files

    def _iter(self, k: int) -> IterationFolder:
        return self.dir.iteration(k)

    def _complete(self, k: int) -> bool:
        return self._iter(k).complete()

    def _metrics(self, k: int) -> dict:
        return read_record(self._iter(k).metrics_json)

    def _run_one(self, job: Job) -> JobResult:
        results: list[JobResult] = []
        self.executor([job], lambda _job, result: results.append(result))
        if not results or results[0].accuracy is None:
            reason = results[0].error if results else "no result"
            raise NetAdaptFailed(f"{job.name} failed: {reason}")
        return results[0]

    # ------------------------------------------------------------ the loop

    def run(self, arch: Arch, weights: Path | None) -> NetAdaptResult:
        """Shrink `arch` (with `weights`, or pre-trained first when None) to the target."""
        self.folder.mkdir(parents=True, exist_ok=True)
        summary = self.dir.summary_json
        # L0 as first priced: a measuring latency model would move it on resume
        start_ms = read_record(summary, ("L0_ms",))["L0_ms"] if summary.is_file() \
            else self.latency(arch)
        delta = self.cfg.delta_ratio * start_ms
        target = self.cfg.target(start_ms)
        write_json(summary, {"L0_ms": start_ms, "delta_ms": delta, "target_ms": target,
                             "status": "running"})
        if not self._complete(0):
            self._start(arch, weights, start_ms)
        k = 0
        while self._complete(k + 1):
            k += 1
        cur = load_arch(self._iter(k).arch_json)
        last = self._metrics(k)
        cur_ms, cur_acc = last["latency_ms"], last["accuracy"]
        self.log(f"netadapt: L0 {start_ms:.3f} ms, target {target:.3f} ms, delta {delta:.4f} ms"
                 + (f"; resuming after iteration {k} ({cur_ms:.3f} ms)" if k else ""))
        while cur_ms > target and k < self.cfg.max_iterations:
            chosen = self._iteration(k + 1, cur, cur_ms, cur_acc, delta)
            if chosen is None:
                break
            k += 1
            cur, cur_ms, cur_acc = chosen.arch, chosen.latency_ms, self._metrics(k)["accuracy"]
            self.log(f"netadapt iteration {k}: kept {chosen.name} "
                     f"{chosen.width_before}->{chosen.width_after} ch: {cur_ms:.3f} ms, "
                     f"top-1 {cur_acc:.4f} (target {target:.3f} ms)")
        met = cur_ms <= target
        if not met:
            self.log(f"netadapt: stopped at {cur_ms:.3f} ms, above the target {target:.3f} ms")
        final = self._long_term(k, cur)
        result = NetAdaptResult(cur, self.dir.final.weights_pt, final["accuracy"],
                                cur_ms, start_ms, target, met, k)
        write_json(summary, {"L0_ms": start_ms, "delta_ms": delta, "target_ms": target,
                             "status": "done", "target_met": met, "iterations": k,
                             "final_ms": cur_ms, "final_accuracy": final["accuracy"],
                             "start_accuracy": self._metrics(0)["accuracy"]})
        return result

    def _start(self, arch: Arch, weights: Path | None, start_ms: float) -> None:
        """iter_0: the starting network, pre-trained first when it has no weights."""
        out = self._iter(0).weights_pt
        if weights is None:
            self.log(f"netadapt: pre-training the starting network for "
                     f"{self.pretrain_epochs:g} epochs")
            job = Job("pretrain", arch, job_seed(self.seed, "pretrain"), out=out,
                      epochs=self.pretrain_epochs)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(weights, out)
            job = Job("start", arch, job_seed(self.seed, "start"), weights=out, steps=0)
        result = self._run_one(job)
        atomic_write(self._iter(0).arch_json, arch.to_json())
        self._write_metrics(0, {"accuracy": result.accuracy, "latency_ms": start_ms,
                                "measured_ms": self._measured(arch), "proposal": "start"})
        self._write_history()

    def _iteration(self, k: int, cur: Arch, cur_ms: float, cur_acc: float,
                   delta: float) -> Proposal | None:
        proposals, skipped = make_proposals(cur, self.latency, delta, self.cfg.proposals,
                                            self.cfg.channel_step, self.cfg.min_channels)
        if skipped:  # the reasons go into iter_<k>/metrics.json
            names = ", ".join(r.partition(":")[0] for r in skipped)
            self.log(f"netadapt iteration {k}: {len(proposals)} proposals; {len(skipped)} "
                     f"cannot save delta and are skipped ({names})")
        if not proposals:
            self.log(f"netadapt iteration {k}: no proposal saves delta = {delta:.4f} ms")
            return None
        folder = self._iter(k)
        log = TrialLog(folder.proposals_csv, PROPOSAL_COLUMNS)
        done = {row["proposal"]: row for row in log.read()}
        parent = read_weights(self._iter(k - 1).weights_pt, cur)
        jobs = []
        for p in proposals:
            if p.name in done:
                continue
            start = folder.proposal_start(p.name)
            write_weights(inherit(cur, parent, p.arch), start)
            jobs.append(Job(f"iter_{k}/{p.name}", p.arch,
                            job_seed(self.seed, f"iter_{k}/{p.name}"), weights=start,
                            out=folder.proposal_weights(p.name),
                            steps=self.cfg.short_term_steps))
        by_name = {p.name: p for p in proposals}
        t0, finished = time.time(), len(done)

        def on_result(job: Job, result: JobResult) -> None:
            nonlocal finished
            p = by_name[job.name.split("/", 1)[1]]
            log.append({"proposal": p.name, "accuracy": result.accuracy,
                        "error": result.error, "wall_s": round(result.wall_s, 3)})
            done[p.name] = {"accuracy": cell(result.accuracy), "error": result.error,
                            "wall_s": cell(round(result.wall_s, 3))}
            finished += 1
            left = len(proposals) - finished
            eta = (time.time() - t0) / max(finished - (len(proposals) - len(jobs)), 1) * left
            acc = "failed: " + result.error if result.accuracy is None else \
                f"top-1 {result.accuracy:.4f}"
            self.log(f"netadapt iteration {k} [{finished}/{len(proposals)}] {p.name} "
                     f"{p.width_before}->{p.width_after} ch, {p.latency_ms:.3f} ms: {acc}"
                     + (f" (ETA {eta:.0f} s)" if left else ""))

        if jobs:
            self.executor(jobs, on_result)
        accs = [float(done[p.name]["accuracy"]) if done[p.name]["accuracy"] else None
                for p in proposals]
        scores = [None if a is None else score(self.cfg.metric, a, cur_acc, p.latency_ms, cur_ms)
                  for p, a in zip(proposals, accs)]
        best = choose(scores)
        if best is None:
            raise NetAdaptFailed(f"every proposal of iteration {k} failed (see "
                                 f"{log.path})")
        chosen = proposals[best]
        kept = folder.proposal_weights(chosen.name)
        if kept.exists():  # (already moved when a kill came before metrics.json)
            kept.replace(folder.weights_pt)
        atomic_write(folder.arch_json, chosen.arch.to_json())
        rows = [{"proposal": p.name, "layers": p.layers_touched, "width_before": p.width_before,
                 "width_after": p.width_after, "latency_ms": p.latency_ms,
                 "latency_drop_ms": cur_ms - p.latency_ms, "measured_ms": self._measured(p.arch),
                 "accuracy": a, "metric": s, "chosen": int(i == best),
                 "error": done[p.name]["error"], "wall_s": done[p.name]["wall_s"]}
                for i, (p, a, s) in enumerate(zip(proposals, accs, scores))]
        self._write_metrics(k, {"accuracy": accs[best], "latency_ms": chosen.latency_ms,
                                "measured_ms": rows[best]["measured_ms"],
                                "proposal": chosen.name, "rows": rows, "skipped": skipped})
        shutil.rmtree(folder.proposals_dir, ignore_errors=True)
        self._write_history()
        return chosen

    def _long_term(self, k: int, arch: Arch) -> dict:
        """The final network: iteration k's, fine-tuned for `long_term_epochs`."""
        final = self.dir.final
        if final.complete():
            return read_record(final.metrics_json)
        epochs = self.cfg.long_term_epochs  # 0: evaluate only
        if epochs:
            self.log(f"netadapt: long-term fine-tune, {epochs:g} epochs")
        result = self._run_one(Job("final", arch, job_seed(self.seed, "final"),
                                   weights=self._iter(k).weights_pt, out=final.weights_pt,
                                   epochs=epochs))
        atomic_write(final.arch_json, arch.to_json())
        metrics = {"accuracy": result.accuracy, "latency_ms": self.latency(arch),
                   "measured_ms": self._measured(arch), "iteration": k}
        write_json(final.metrics_json, metrics)
        return metrics

    # ------------------------------------------------------------ helpers

    def _measured(self, arch: Arch) -> float | None:
        return None if self.measure is None else self.measure(arch)

    def _write_metrics(self, k: int, metrics: dict) -> None:
        write_json(self._iter(k).metrics_json, metrics)

    def _write_history(self) -> None:
        rows = []
        k = 0
        while self._complete(k):
            m = self._metrics(k)
            if k == 0:
                rows.append({"iteration": 0, "proposal": "start", "latency_ms": m["latency_ms"],
                             "measured_ms": m["measured_ms"], "accuracy": m["accuracy"],
                             "chosen": 1})
            for row in m.get("rows", []):
                rows.append({"iteration": k, **row})
            k += 1
        write_csv(self.dir.history_csv, rows, HISTORY_COLUMNS)
