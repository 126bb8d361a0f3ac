"""The `supernet` evaluator: train one weight-sharing supernet, score children from it.

TuNAS (Bender et al. 2020) on top of single-path one-shot training (Guo et al. 2019):

1. the supernet (`search_spaces.supernet`) trains as one job, one uniformly sampled
   child per step, with the proxy trainer's optimiser, schedule, augmentation,
   device and threads; it checkpoints every `supernet.checkpoint_every` steps and a
   killed training continues from there to the same weights;
2. each child the strategy asks for inherits its weights, has its BatchNorm
   statistics re-estimated on the same few training batches, and is scored on the
   fixed validation subset, in the driver;
3. the top `supernet.rerank_top_k` children by reward are proxy-trained stand-alone
   (the `train` evaluator's budget) and the best of them by reward is the search's
   result, so a supernet artefact cannot make the final choice alone.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Sequence

import torch
from torch import nn

from latency.measure import compute_lock
from nas.data import Splits
from nas.raytune import make_executor
from nas.rundir import RunDir
from nas.search.core import COLUMNS, SearchCore, run_inline, trial_seed
from nas.search.evaluators.base import ChildRecord, Evaluator
from nas.search.evaluators.sandwich import sandwich_loss
from nas.search.rewards import Reward
from nas.step import make_step
from nas.train import TrainConfig, evaluate, recalibrate_bn, resolve_device, train, wanted_threads
from search_spaces.factorized import FactorizedSpace
from search_spaces.infra.checks import non_negative, positive
from search_spaces.infra.errors import UserError
from search_spaces.infra.files import TrialLog, atomic_save, atomic_write, read_record, write_json
from search_spaces.infra.jobs import Executor, Job, JobResult, Step
from search_spaces.infra.seeds import seed_for
from search_spaces.infra.threads import available_cpus, torch_threads
from search_spaces.infra.weights import load_torch, why
from search_spaces.supernet import SuperNet, largest_child

if TYPE_CHECKING:
    from nas.experiment import Experiment
    from search_spaces.arch import Arch

DEFAULT_EPOCHS = 10.0


@dataclass
class SupernetConfig:
    """`supernet:` the weight-sharing evaluator (`search.evaluator: supernet`).

    The supernet trains for `epochs` or `steps` (neither: 10 epochs) with `train:`'s
    optimiser, schedule, batch size and device, at learning rate `lr`.
    """

    epochs: float | None = field(default=None, metadata={"check": positive})
    steps: int | None = field(default=None, metadata={"check": positive})
    # Default: a quarter of train.lr. Single-path training is less stable than one
    # child's: on CIFAR-10 at train.lr = 0.4 it diverged (NaN) within 210 steps, and
    # 0.1 gave the lowest loss of 0.05-0.4 after 600 steps (BENCHMARKS.md, issue 12).
    lr: float | None = field(default=None, metadata={"check": positive})
    checkpoint_every: int = field(default=100, metadata={"check": positive})  # steps
    # Training batches (train.eval_batch_size images each, the same ones for every
    # child) that re-estimate a child's BatchNorm statistics before it is scored.
    bn_batches: int = field(default=4, metadata={"check": positive})
    # Children (best by supernet reward) proxy-trained stand-alone before the choice;
    # 0 takes the supernet's best as it is.
    rerank_top_k: int = field(default=5, metadata={"check": non_negative})
    # CPUs of the supernet's Ray trial; absent: every CPU of a local Ray, else
    # ray.cpus_per_trial (GPUs: ray.gpus_per_trial).
    cpus: float | None = field(default=None, metadata={"check": positive})
    # `single_path`: one uniformly drawn child a step (Guo et al. 2019). `sandwich`: the
    # largest, the smallest and `random_children` drawn ones a step, summed (BigNAS
    # sec. 3.1, n = 2); a step then costs 2 + random_children forward/backward passes.
    sampling: Literal["single_path", "sandwich"] = "single_path"
    random_children: int = field(default=2, metadata={"check": non_negative})
    # With the sandwich: all but the largest learn from its outputs, not the labels
    # (in-place distillation).
    distill: bool = True
    # A dsconv takes the mbconv's weights at its position (an mbconv of expansion 1
    # without the expansion), so the two op kinds' updates train one set of weights.
    share_ops: bool = False

    def __post_init__(self) -> None:
        if self.epochs is not None and self.steps is not None:
            raise UserError("supernet: set epochs or steps, not both")

    def train_config(self, base: TrainConfig) -> TrainConfig:
        """`train:` with the supernet's budget and learning rate (no BN recalibration:
        the supernet keeps no statistics, each child's are re-estimated)."""
        epochs = self.epochs if self.epochs is not None or self.steps is not None \
            else DEFAULT_EPOCHS
        return replace(base, epochs=epochs, steps=self.steps, lr=self.lr or base.lr / 4,
                       bn_recalibration=0)


def describe_training(cfg: SupernetConfig, base: TrainConfig) -> str:
    """`10 epochs of single-path sampling`, `600 steps of the sandwich rule (...)`."""
    tcfg = cfg.train_config(base)
    budget = f"{tcfg.steps} steps" if tcfg.steps else f"{tcfg.epochs:g} epochs"
    shared = ", dsconv sharing mbconv's weights" if cfg.share_ops else ""
    if cfg.sampling == "single_path":
        return f"{budget} of single-path sampling{shared}"
    how = "in-place distillation" if cfg.distill else "labels only"
    drawn = f"{cfg.random_children} random child{'' if cfg.random_children == 1 else 'ren'}"
    return (f"{budget} of the sandwich rule (largest, smallest and {drawn} a step; "
            f"{how}){shared}")


def checkpoint_of(out: Path) -> Path:
    """Where the training of the supernet saved to `out` checkpoints while it runs."""
    return out.with_name(f"{out.stem}_checkpoint.pt")


def supernet_step(space: FactorizedSpace, splits: Splits, base: TrainConfig,
                  cfg: SupernetConfig, log: Callable[[str], None] | None = None) -> Step:
    """The job that trains a supernet of `space` from `job.seed` into `job.out`.

    Its accuracy is the largest child's validation top-1 (a sanity number)."""

    def step(job: Job) -> JobResult:
        assert job.out is not None
        start = time.perf_counter()
        tcfg = cfg.train_config(base)
        supernet = SuperNet(space, job.seed, cfg.share_ops)
        loss = sandwich_loss(supernet, cfg.random_children, cfg.distill,
                             tcfg.label_smoothing) if cfg.sampling == "sandwich" else None
        with compute_lock(), torch_threads(wanted_threads(tcfg)):
            stats = train(supernet, splits.train, tcfg, job.seed, log,
                          checkpoint=checkpoint_of(job.out),
                          checkpoint_every=cfg.checkpoint_every, loss_fn=loss)
            supernet.cpu()
            atomic_save(supernet.state_dict(), job.out)
            scorer = ChildScorer(supernet, splits, tcfg, cfg.bn_batches, job.seed)
            accuracy = scorer.score(largest_child(space))
        return JobResult(accuracy, "", time.perf_counter() - start, stats.images_per_s)

    return step


def supernet_file(path: Path, source: str) -> Path:
    """`search.supernet`'s file: the path itself, or a run folder's search/supernet.pt
    (a UserError, naming the key and `source`, when there is none)."""
    if path.is_dir():
        path = RunDir(path).supernet_pt
    if not path.is_file():
        raise UserError(f"search.supernet: {path} does not exist (a run's folder, or its "
                        f"search/supernet.pt, once that run's supernet is trained)", source)
    return path


def load_supernet(space: FactorizedSpace, path: Path, seed: int, share_ops: bool = False
                  ) -> SuperNet:
    """The trained supernet saved at `path` (a UserError naming it when it does not fit
    `space` and `share_ops` or is damaged)."""
    supernet = SuperNet(space, seed, share_ops)
    try:
        supernet.load_state_dict(load_torch(path, "supernet"))
    except Exception as err:
        text = err.message if isinstance(err, UserError) else \
            (f"not a supernet of this run's space with supernet.share_ops: "
             f"{str(share_ops).lower()} ({why(err)})")
        raise UserError(f"{text}; delete it to train the supernet again", str(path)) from None
    return supernet


class ChildScorer:
    """Children with inherited weights and re-estimated BatchNorm statistics, scored
    on the validation split."""

    def __init__(self, supernet: SuperNet, splits: Splits, cfg: TrainConfig,
                 bn_batches: int, seed: int) -> None:
        self.device = resolve_device(cfg.device)
        self.supernet = supernet.to(self.device).eval()
        self.splits = splits
        self.cfg = cfg
        self.bn_batches = bn_batches
        self.bn_seed = seed_for(seed, "supernet/bn")

    def model(self, values: Mapping[str, Any]) -> nn.Module:
        """The child `values` as `build_model(child)`, ready to evaluate or fine-tune."""
        with torch.no_grad():
            model = self.supernet.inherit(values)
        # the same batches for every child: one generator, seeded afresh
        recalibrate_bn(model, self.splits.train, self.bn_batches, self.cfg.eval_batch_size,
                       torch.Generator().manual_seed(self.bn_seed))
        return model

    def score(self, values: Mapping[str, Any]) -> float:
        return evaluate(self.model(values), self.splits.val, self.cfg.eval_batch_size,
                        self.device)

    def step(self, job: Job) -> JobResult:
        """A search child as a job: scored, not trained."""
        assert job.choices is not None
        start = time.perf_counter()
        with torch_threads(wanted_threads(self.cfg)):
            accuracy = self.score(self.supernet.space.values_from_indices(job.choices))
        return JobResult(accuracy, "", time.perf_counter() - start)


def ensure_supernet(space: FactorizedSpace, splits: Splits, base: TrainConfig,
                    cfg: SupernetConfig, run: RunDir, seed: int, executor: Executor,
                    log: Callable[[str], None], reuse: Path | None = None) -> SuperNet:
    """The run's trained supernet: trained now (one job) unless `search/supernet.pt`
    exists; a killed training continues from its checkpoint. With `reuse` (another
    run's trained supernet), that one is checked against `space` and copied in."""
    path = run.supernet_pt
    if not path.is_file() and reuse is not None:
        load_supernet(space, reuse, seed, cfg.share_ops)  # refused when it does not fit
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, reuse.read_bytes())
        log(f"supernet: reusing {reuse} (trained before; no training in this run)")
    if not path.is_file():
        resumed = " (continuing from its checkpoint)" if checkpoint_of(path).is_file() else ""
        log(f"supernet: training {describe_training(cfg, base)} over {space.name}{resumed}")
        results: list[JobResult] = []
        executor([Job("supernet", None, seed, out=path)], lambda job, r: results.append(r))
        if not results or results[0].accuracy is None:
            why = results[0].error if results else "no result"
            raise UserError(f"supernet: the training failed: {why}", str(run.root))
        r = results[0]
        log(f"supernet: trained in {r.wall_s / 60:.1f} min "
            f"({r.images_per_s or 0:.0f} img/s); largest child val top-1 {r.accuracy:.3f}")
    return load_supernet(space, path, seed, cfg.share_ops)


RERANK_COLUMNS = ["trial_id", "arch_hash", "decisions", "latency_ms", "supernet_accuracy",
                  "supernet_reward", "accuracy", "reward", "status", "error", "wall_s"]


def rerank(core: SearchCore, reward: Reward, top_k: int, seed: int, executor: Executor,
           log: Callable[[str], None]) -> dict[str, str] | None:
    """Proxy-train the `top_k` children of the search by supernet reward (one per
    architecture) and make the best of them by reward the search's result
    (`search/best.json`); each is logged in `search/rerank.csv` (resumable)."""
    best_first = sorted((r for r in core.rows if r["status"] == "ok"),
                        key=lambda r: -float(r["reward"]))
    candidates: list[dict[str, str]] = []
    for row in best_first:
        if len(candidates) < top_k and row["arch_hash"] not in {c["arch_hash"] for c in candidates}:
            candidates.append(row)
    if not candidates:
        return None
    log_file = TrialLog(core.run.rerank_csv, RERANK_COLUMNS)
    done = {r["trial_id"]: r for r in log_file.read()}
    todo = [c for c in candidates if c["trial_id"] not in done]
    if todo:
        log(f"rerank: proxy-training the top {len(candidates)} children by supernet reward "
            f"({len(todo)} to go)")
    by_name = {f"rerank_{c['trial_id']}": c for c in todo}

    def on_result(job: Job, result: JobResult) -> None:
        c = by_name[job.name]
        row: dict[str, Any] = {
            "trial_id": c["trial_id"], "arch_hash": c["arch_hash"], "decisions": c["decisions"],
            "latency_ms": c["latency_ms"], "supernet_accuracy": c["accuracy"],
            "supernet_reward": c["reward"], "wall_s": round(result.wall_s, 3)}
        if result.accuracy is None:
            row.update(status="failed", error=result.error)
            log(f"rerank: trial {c['trial_id']} FAILED: {result.error}")
        else:
            value, _ = reward(result.accuracy, float(c["latency_ms"]))
            row.update(accuracy=result.accuracy, reward=value, status="ok")
            log(f"rerank: trial {c['trial_id']}: supernet acc {float(c['accuracy']):.3f} -> "
                f"trained acc {result.accuracy:.3f}, reward {value:.4f} "
                f"({result.wall_s:.0f}s)")
        log_file.append(row)
        done[c["trial_id"]] = {k: str(v) for k, v in row.items()}

    jobs = [Job(name, core.space.decode_indices(json.loads(c["decisions"])),
                trial_seed(seed, int(c["trial_id"])), choices=tuple(json.loads(c["decisions"])))
            for name, c in by_name.items()]
    if jobs:
        executor(jobs, on_result)
    ranked = [done[c["trial_id"]] for c in candidates
              if done.get(c["trial_id"], {}).get("status") == "ok"]
    if not ranked:
        log("rerank: every re-trained child failed; the search's best stands")
        return None
    winner = max(ranked, key=lambda r: float(r["reward"]))
    row = next(c for c in candidates if c["trial_id"] == winner["trial_id"])
    core.write_best(row, accuracy=float(winner["accuracy"]), reward=float(winner["reward"]),
                    supernet_accuracy=float(row["accuracy"]),
                    supernet_reward=float(row["reward"]), selected_by="rerank")
    log(f"rerank: trial {winner['trial_id']} wins (trained acc "
        f"{float(winner['accuracy']):.3f}, reward {float(winner['reward']):.4f})")
    return winner


def child_values(spec: str | list | dict, space: FactorizedSpace, run: RunDir
                 ) -> dict[str, Any]:
    """Decision values from `spec`: `best` (the search's result), a trial id of the
    run, a JSON list of option indices, or a JSON object of decision values."""
    if isinstance(spec, str):
        text = spec.strip()
        if text == "best":
            path = run.best_metrics_json
            if not path.is_file():
                raise UserError(f"{path} does not exist (has the search run?)")
            return space.values_from_indices(read_record(path, ("decisions",))["decisions"])
        if text.isdigit():
            rows = [r for r in TrialLog(run.trials_csv, COLUMNS).read()
                    if r["trial_id"] == text]
            if not rows:
                raise UserError(f"no trial {text} in {run.trials_csv}")
            return space.values_from_indices(json.loads(rows[0]["decisions"]))
        try:
            spec = json.loads(text)
        except json.JSONDecodeError:
            raise UserError(f"--child: expected best, a trial id, a JSON list of option "
                            f"indices or a JSON object of decisions, got {spec!r}") from None
    if isinstance(spec, list):
        n = len(space.decisions)
        if len(spec) != n or not all(isinstance(i, int) and not isinstance(i, bool)
                                     for i in spec):
            raise UserError(f"--child: expected {n} option indices, got {spec!r}")
        bad = [(d.name, i) for d, i in zip(space.decisions, spec) if not 0 <= i < len(d.options)]
        if bad:
            raise UserError(f"--child: {bad[0][0]} has no option {bad[0][1]}")
        return space.values_from_indices(spec)
    if isinstance(spec, dict):
        space.indices_from_values(spec)  # a UserError naming a wrong decision
        return dict(spec)
    raise UserError(f"--child: expected a list or an object, got {spec!r}")


def inherited_child(exp: "Experiment", run: RunDir, values: Mapping[str, Any]
                    ) -> tuple["Arch", dict[str, torch.Tensor]]:
    """A child of the run's supernet as `build_model`'s state dict, with its BatchNorm
    statistics re-estimated as the search scored it."""
    if not run.supernet_pt.is_file():
        raise UserError(f"{run.supernet_pt} does not exist (a run with search.evaluator: "
                        "supernet has one once its supernet is trained)")
    cfg = exp.config
    supernet = load_supernet(exp.space, run.supernet_pt, cfg.seed, cfg.supernet.share_ops)
    scorer = ChildScorer(supernet, exp.data, cfg.train, cfg.supernet.bn_batches, cfg.seed)
    with torch_threads(wanted_threads(cfg.train)):
        model = scorer.model(values)
    return model.arch, {k: v.detach().cpu() for k, v in model.state_dict().items()}


def load_or_train_supernet(exp: "Experiment", run: RunDir, log: Callable[[str], None]
                           ) -> SuperNet:
    """The run's supernet, trained first (one job: a Ray trial with every local CPU,
    or `supernet.cpus`) when `search/supernet.pt` is not there yet."""
    cfg = exp.config
    step = supernet_step(exp.space, exp.data, cfg.train, cfg.supernet, log)
    cpus = cfg.supernet.cpus or (cfg.ray.cpus_per_trial if cfg.ray.address
                                 else cfg.ray.num_cpus or available_cpus())
    ray = replace(cfg.ray, cpus_per_trial=cpus)
    return ensure_supernet(exp.space, exp.data, cfg.train, cfg.supernet, run, cfg.seed,
                           make_executor(cfg.search.executor, step, ray, run.ray_dir, "search"),
                           log, cfg.search.supernet)


class SupernetEvaluator(Evaluator):
    """One supernet training up front (the cost of a few children), then a second or so
    per child: inherit, re-estimate BatchNorm, score; the top `supernet.rerank_top_k`
    are proxy-trained before the choice."""

    name = "supernet"
    gives_weights = True

    def params_bound(self, space: FactorizedSpace) -> tuple[int, str]:
        return space.params_bound(per_op=True), "the supernet holds"

    def describe(self, exp: "Experiment") -> list[str]:
        cfg = exp.config
        shared = sum(p.numel() for p in SuperNet(exp.space, cfg.seed,
                                                  cfg.supernet.share_ops).parameters())
        return [f"supernet: {shared:,} shared weights, trained "
                f"{describe_training(cfg.supernet, cfg.train)}; "
                f"{cfg.search.num_trials} children scored from it, the top "
                f"{cfg.supernet.rerank_top_k} re-ranked by proxy training"]

    def search(self, exp: "Experiment", run: RunDir, core: SearchCore,
               log: Callable[[str], None]) -> None:
        cfg = exp.config
        supernet = load_or_train_supernet(exp, run, log)
        scorer = ChildScorer(supernet, exp.data, cfg.train, cfg.supernet.bn_batches, cfg.seed)
        run_inline(core, scorer.step, cfg.seed)  # a second or so each: in the driver
        if cfg.supernet.rerank_top_k:
            assert exp.reward is not None
            step = make_step(exp.data, cfg.train)  # stand-alone, as the train evaluator
            rerank(core, exp.reward, cfg.supernet.rerank_top_k, cfg.seed,
                   make_executor(cfg.search.executor, step, cfg.ray, run.ray_dir, "search"),
                   log)

    def score_children(self, exp: "Experiment", run: RunDir,
                       children: Sequence[tuple[int, Mapping[str, Any]]],
                       record: ChildRecord, log: Callable[[str], None]) -> float | None:
        cfg = exp.config
        start = time.perf_counter()
        had = run.supernet_pt.is_file() or cfg.search.supernet is not None  # nothing timed
        scorer = ChildScorer(load_or_train_supernet(exp, run, log), exp.data, cfg.train,
                             cfg.supernet.bn_batches, cfg.seed)
        timing = run.supernet_train_s_json
        if not had:
            write_json(timing, {"wall_s": time.perf_counter() - start})
        for i, values in children:
            t0 = time.perf_counter()
            accuracy = scorer.score(values)
            record(i, JobResult(accuracy, "", time.perf_counter() - t0))
        return read_record(timing, ("wall_s",))["wall_s"] if timing.is_file() else None

    def inherit(self, exp: "Experiment", run: RunDir, child: str | list | dict
                ) -> tuple["Arch", dict[str, torch.Tensor]]:
        return inherited_child(exp, run, child_values(child, exp.space, run))
