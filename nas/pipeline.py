"""From a loaded config to a run directory: prepare everything, then run the stages.

Everything a user can get wrong (config, data, latency table, reward) is checked
before the run directory is created, so a bad input leaves no half-written run.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Callable

import torch

from latency.model import LatencyModel, TableModel, make_model
from latency.signature import Signature
from nas.config import (ExperimentConfig, build_latency_model, build_space, load_config,
                        target_reference)
from nas.coverage import check_coverage, experiment_signatures, netadapt_signatures
from nas.data import Splits, load_data
from nas.raytune import check_address, make_executor, run_ray
from nas.rundir import RunDir
from nas.search.core import SearchCore, SearchFailed, run_inline
from nas.search.rewards import Reward, make_reward
from nas.search.strategies import make_strategy
from nas.search.supernet import (ChildScorer, child_values, ensure_supernet,
                                 inherited_child, rerank, supernet_step)
from nas.stages.final import export_stage, final_train
from nas.stages.netadapt import netadapt_stage, resolve_start
from nas.stages.report import result_target, write_report
from nas.step import make_step
from nas.tables import TablePlan, build_planned, experiment_plans
from nas.train import resolve_device
from search_spaces.arch import Arch, size_problems
from search_spaces.infra.errors import UserError
from search_spaces.factorized import FactorizedSpace
from search_spaces.infra.files import read_record
from search_spaces.supernet import SuperNet
from search_spaces.infra.threads import available_cpus


@dataclass
class Prepared:
    """What the stages need, built once and validated before anything is written."""

    cfg: ExperimentConfig
    splits: Splits
    space: FactorizedSpace
    latency: LatencyModel | None  # None only in a preview with a table still to build
    reward: Reward | None  # the search's (None without a search stage)
    netadapt_latency: LatencyModel | None = None
    # NetAdapt's start when it does not come from this run's search.
    netadapt_start: tuple[Arch, Path | None] | None = None
    tables: list[TablePlan] = field(default_factory=list)  # `build: if_missing` tables


def _check_data_paths(cfg: ExperimentConfig) -> None:
    """A missing data file named by its config key. (`load_data` names the file alone,
    which is what a caller of the data API wants; a user of a YAML wants the key.)"""
    for key in ("path", "test_path"):
        path = getattr(cfg.data, key)
        if path is not None and not path.exists() and not cfg.data.download:
            raise UserError(f"data.{key}: {path} does not exist", cfg.source)


def prepare(cfg: ExperimentConfig, build_tables: bool = True) -> Prepared:
    """Load and check every input. Nothing is written but a `build: if_missing` latency
    table (`nas.tables`); with `build_tables` false (a preview) it is only planned, and
    `latency` is None when one is still to build."""
    _check_data_paths(cfg)
    try:  # a device this machine lacks: refused before any run directory exists
        resolve_device(cfg.train.device)
    except UserError as err:
        raise UserError(err.message, cfg.source) from None
    if cfg.latency.kind == "measure" and cfg.latency.device == "cuda" \
            and not torch.cuda.is_available():
        raise UserError("latency.device: cuda requested but torch sees no CUDA device",
                        cfg.source)
    splits = load_data(cfg.data, cfg.search.resolution, cfg.source,
                       cfg.limits.max_data_gib)
    space = build_space(cfg, num_classes=splits.num_classes)
    if cfg.search.executor == "ray":
        check_address(cfg.ray, cfg.source)
    start = None
    if "netadapt" in cfg.stages:
        assert cfg.netadapt is not None
        if cfg.netadapt.start is not None or "search" not in cfg.stages:
            start = resolve_start(cfg, splits.num_classes)
            problems = size_problems(start[0], cfg.limits.max_params)
            if problems:
                raise UserError(f"netadapt.start: {problems[0]}", cfg.source)
    # what the experiment prices: enumerated at most once, only if a table needs it
    needed = cache(lambda: experiment_signatures(cfg, space, start[0] if start else None))
    plans = experiment_plans(cfg, space, needed, start[0] if start else None)
    pending = [p for p in plans if p.action != "reuse"]
    if pending and not build_tables:  # a preview: the tables are not there to load yet
        return Prepared(cfg, splits, space, None, _reward(cfg), None, start, plans)
    for plan in pending:
        build_planned(plan, _stderr)
    latency = build_latency_model(cfg)
    prep = Prepared(cfg, splits, space, latency, None, None, start, plans)
    if "netadapt" in cfg.stages:
        prep.netadapt_latency = build_latency_model(cfg, "netadapt.latency")
    _check_tables(prep, needed)
    _resolve_target(cfg, latency, splits.num_classes)
    prep.reward = _reward(cfg)
    return prep


def _reward(cfg: ExperimentConfig) -> Reward | None:
    """The search's reward (None without a search stage, or in a preview whose relative
    target waits for its table)."""
    if "search" not in cfg.stages or cfg.reward.target_ratio is not None:
        return None
    return make_reward(cfg.reward, cfg.source)


def _resolve_target(cfg: ExperimentConfig, latency: LatencyModel, num_classes: int) -> None:
    """`reward.target_ratio` x the reference's latency under `latency:` becomes
    `reward.target_ms` (and NetAdapt's target when it defaults to the reward's). The run
    records the resolved config, so a resumed run keeps the target it started with."""
    rw, na = cfg.reward, cfg.netadapt
    if rw.target_ratio is None:
        return
    ref = target_reference(cfg, num_classes)
    ref_ms = latency.predict(ref).ms
    rw.target_ms = round(rw.target_ratio * ref_ms, 4)
    _stderr(f"reward: target {rw.target_ratio:g} x {ref.name or 'the reference'} "
            f"({ref_ms:.3f} ms under latency: {cfg.latency.kind}) = {rw.target_ms:.3f} ms")
    if na is not None and "netadapt" in cfg.stages and na.target_ms is None \
            and na.target_ratio is None:
        na.target_ms = rw.target_ms
    rw.target_ratio = rw.target_reference = None


def _check_tables(prep: Prepared, needed: Callable[[], list[Signature]]) -> None:
    """Every operator the experiment prices (`needed`) is in its latency table(s) or
    fillable under the policy (`nas.coverage`), before anything trains."""
    cfg = prep.cfg
    start = prep.netadapt_start[0] if prep.netadapt_start else None
    if isinstance(prep.latency, TableModel):
        check_coverage(prep.latency, needed(), "latency.path", cfg.source,
                       (start or prep.space).resolution)
    na = prep.netadapt_latency
    if isinstance(na, TableModel) and na is not prep.latency and start is not None:
        assert cfg.netadapt is not None
        check_coverage(na, netadapt_signatures(start, cfg.netadapt.channel_step),
                       "netadapt.latency.path", cfg.source, start.resolution)


def search_stage(prep: Prepared, run: RunDir, log: Callable[[str], None]) -> SearchCore:
    """Run (or continue) the controller search in `run`."""
    cfg = prep.cfg
    strategy = make_strategy(cfg.search.strategy, prep.space, cfg.seed, cfg.controller,
                             cfg.evolution)

    def predict(arch: Arch) -> tuple[float, str]:
        est = prep.latency.predict(arch)
        return est.ms, est.source

    assert prep.reward is not None
    core = SearchCore(prep.space, strategy, predict, prep.reward, run, cfg.search.num_trials,
                      cfg.search.max_failed_trials, log, cfg.search.evaluator)
    replayed = core.replay()
    if replayed:
        log(f"resuming: {replayed} trials already in {core.trials.path}")
    log(f"search: {cfg.search.strategy} over {prep.space.name} "
        f"({prep.space.size():.2e} architectures), {cfg.search.num_trials} trials, "
        f"{cfg.search.executor} executor, {cfg.search.evaluator} evaluator; "
        f"{prep.splits.summary()}")
    step = make_step(prep.splits, cfg.train)  # children train from scratch for train:
    if cfg.search.evaluator == "supernet":
        supernet = load_or_train_supernet(prep, run, log)
        scorer = ChildScorer(supernet, prep.splits, cfg.train, cfg.supernet.bn_batches,
                             cfg.seed)
        run_inline(core, scorer.step, cfg.seed)  # a second or so each: in the driver
        if cfg.supernet.rerank_top_k:
            rerank(core, prep.reward, cfg.supernet.rerank_top_k, cfg.seed,
                   make_executor(cfg.search.executor, step, cfg.ray, run.ray_dir, "search"),
                   log)
    elif cfg.search.executor == "inline":
        run_inline(core, step, cfg.seed)
    elif not core.finished:
        run_ray(core, step, cfg.seed, cfg.ray, run.ray_dir)
        if not core.finished:  # Tune ended early: never hand a partial search on
            raise SearchFailed(f"Ray Tune stopped after {core.done} of "
                               f"{cfg.search.num_trials} trials; `nas resume {run.root}` "
                               f"continues")
    if core.finished and core.best() is None:  # nothing to hand on: not a success
        last = next((r["error"] for r in reversed(core.rows) if r["error"]), "")
        raise SearchFailed(f"every one of the {core.done} trials failed; last error: {last}")
    if run.best_metrics_json.is_file():
        best = read_record(run.best_metrics_json,
                           ("trial_id", "reward", "accuracy", "latency_ms"))
        how = " (re-ranked)" if best.get("selected_by") == "rerank" else ""
        log(f"search done: best trial {best['trial_id']}{how} reward {best['reward']:.4f} "
            f"accuracy {best['accuracy']:.3f} latency {best['latency_ms']:.2f} ms "
            f"-> {run.best_json}")
    return core


def load_or_train_supernet(prep: Prepared, run: RunDir, log: Callable[[str], None]
                           ) -> SuperNet:
    """The run's supernet, trained first (one job: a Ray trial with every local CPU,
    or `supernet.cpus`) when `search/supernet.pt` is not there yet."""
    cfg = prep.cfg
    step = supernet_step(prep.space, prep.splits, cfg.train, cfg.supernet, log)
    cpus = cfg.supernet.cpus or (cfg.ray.cpus_per_trial if cfg.ray.address
                                 else cfg.ray.num_cpus or available_cpus())
    ray = replace(cfg.ray, cpus_per_trial=cpus)
    return ensure_supernet(prep.space, prep.splits, cfg.train, cfg.supernet, run, cfg.seed,
                           make_executor(cfg.search.executor, step, ray, run.ray_dir, "search"),
                           log)


def supernet_init(prep: Prepared, run: RunDir, arch: Arch) -> dict[str, torch.Tensor]:
    """The weights the search's best child (`arch`) inherits from the run's supernet."""
    child, state = inherited_child(prep.cfg, run, prep.splits, prep.space,
                                   child_values("best", prep.space, run))
    if child.hash() != arch.hash():
        raise UserError("final.init: supernet: the network to train is not the search's "
                        "best child", str(run.root))
    return state


def run_netadapt(prep: Prepared, run: RunDir, log: Callable[[str], None]) -> None:
    """Run (or continue) NetAdapt in `run`, from its start or this run's search best."""
    cfg = prep.cfg
    assert cfg.netadapt is not None and prep.netadapt_latency is not None
    start = prep.netadapt_start or resolve_start(cfg, prep.splits.num_classes, run.best_json)
    measure = None
    if cfg.netadapt.measure:  # the measurement protocol, with the experiment's settings
        options = asdict(cfg.latency)
        options.pop("kind")
        measure = make_model("measure", **options)
    netadapt_stage(cfg, prep.splits, prep.netadapt_latency, start, run.netadapt.root,
                   run.ray_dir, log, measure)


def run_stages(prep: Prepared, run: RunDir, log: Callable[[str], None]) -> None:
    """The config's stages in order; each resumes from what it already wrote."""
    for stage in prep.cfg.stages:
        if stage == "search":
            search_stage(prep, run, log)
        elif stage == "netadapt":
            run_netadapt(prep, run, log)
        elif stage == "final_train":
            final_train(prep.cfg.train, prep.cfg.final, prep.splits, prep.latency, run,
                        prep.cfg.seed, log, prep.cfg.report.train_references,
                        inherit=lambda arch: supernet_init(prep, run, arch))
        elif stage == "export":
            export_stage(prep.cfg.export, run, log, prep.latency, result_target(prep.cfg, run))
        write_report(run, prep.latency)  # after each stage: always current
    log(f"report: {run.report_md}")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def start(cfg: ExperimentConfig, log: Callable[[str], None] = _stderr) -> RunDir:
    """Validate everything, create the run directory, run the stages."""
    prep = prepare(cfg)
    assert cfg.output_dir is not None and cfg.name is not None
    run = RunDir.create(cfg.output_dir, cfg.name, cfg.to_dict())
    log(f"run directory: {run.root}")
    with run.writing():
        run_stages(prep, run, log)
    return run


def resume(run_dir: str | Path, log: Callable[[str], None] = _stderr) -> RunDir:
    """Continue a run where it stopped, from its own resolved config."""
    run = RunDir.open(run_dir)
    if run.is_proxy_check():
        raise UserError("a proxy check, not a run of stages: continue it with "
                        "`nas proxy-check` on this folder", str(run.root))
    with run.writing():  # taken first: a second resume stops before it reads anything
        cfg = load_config(run.config_path)
        run_stages(prepare(cfg), run, log)
    return run
