"""One experiment, opened once: the config as written plus everything derived from it.

`open_experiment` reads the YAML (or takes a loaded config), learns the data's class
count (loading the splits only when asked), builds the space, resolves NetAdapt's
start, plans/builds/loads the latency tables, checks they cover every operator the
experiment prices, and resolves the latency targets. The result is a frozen
`Experiment`; nothing is written back into the config. Every command and stage that
needs an experiment takes one (`nas.pipeline`, the proxy check, a supernet child's
export, the report, `nas latency export-ops --space EXP.yaml`, the benchmarks).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from latency import runtime
from latency.drift import level_factor, measure_drift
from latency.model import LatencyModel, TableModel, make_model
from latency.profiler import Coverage
from latency.signature import Signature
from nas.config import (ExperimentConfig, NetAdaptSection, build_space, load_config,
                        target_reference)
from nas.coverage import check_coverage, coverage_of, experiment_signatures, netadapt_signatures
from nas.data import Splits, class_count, load_data
from nas.raytune import check_address
from nas.resolve import Net, resolve_net
from nas.search.evaluators import Evaluator, make_evaluator
from nas.search.rewards import Reward, make_reward
from nas.tables import TablePlan, build_planned, experiment_plans
from nas.train import resolve_device
from search_spaces.arch import Arch, load_arch, size_problems
from search_spaces.factorized import FactorizedSpace
from search_spaces.infra.errors import UserError
from search_spaces.infra.weights import read_weights
from search_spaces.transforms import with_input

# How `open_experiment` treats the latency models: build a missing `build: if_missing`
# table first, only plan it (a preview: `latency` is None while one is still to
# build), load what exists without checking coverage (a finished run's report), or
# leave them out (nothing priced).
LatencyMode = Literal["build", "plan", "load", "none"]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Experiment:
    """An experiment's config (as the user wrote it) and what the stages derive from it."""

    config: ExperimentConfig
    num_classes: int
    space: FactorizedSpace
    evaluator: Evaluator  # `search.evaluator`
    splits: Splits | None = None  # None when opened without data
    # NetAdapt's start when it does not come from this run's search (arch, weights)
    netadapt_start: tuple[Arch, Path | None] | None = None
    latency: LatencyModel | None = None  # `latency:`
    netadapt_latency: LatencyModel | None = None  # `netadapt.latency:` (or `latency:`)
    # The targets in ms once resolved (a relative target priced under `latency:`);
    # NetAdapt's is None when it is a ratio of its own start (`netadapt.target_ratio`).
    reward_target_ms: float | None = None
    netadapt_target_ms: float | None = None
    reward: Reward | None = None  # the search's (None without a search stage)
    tables: tuple[TablePlan, ...] = field(default=())  # `build: if_missing` tables

    @property
    def source(self) -> str:
        return self.config.source

    @property
    def data(self) -> Splits:
        """The splits (an experiment opened with `data=False` has none)."""
        if self.splits is None:
            raise RuntimeError("this experiment was opened without its data")
        return self.splits

    @property
    def netadapt(self) -> NetAdaptSection:
        """`netadapt:` with its target resolved (the reward's when it defaults to it)."""
        na = self.config.netadapt
        if na is None:
            raise UserError("netadapt: missing required section", self.source)
        if na.target_ms is None and na.target_ratio is None:
            return replace(na, target_ms=self.netadapt_target_ms)
        return na

    def resolved_config(self) -> dict[str, Any]:
        """The config as a run records it (`config.yaml`): the user's, with the targets
        resolved, so a resumed run keeps the target it started with."""
        data = self.config.to_dict()
        if self.config.reward.target_ratio is not None and self.reward_target_ms is not None:
            data["reward"].update(target_ms=self.reward_target_ms, target_ratio=None,
                                  target_reference=None)
        na = self.config.netadapt
        if na is not None and "netadapt" in self.config.stages and na.target_ms is None \
                and na.target_ratio is None:
            data["netadapt"]["target_ms"] = self.netadapt_target_ms
        return data

    def coverage(self, label: str | None = None) -> Coverage:
        """Every operator the experiment prices, as a table identity (what `nas latency
        export-ops --space EXP.yaml` exports and `build: if_missing` times)."""
        start = self.netadapt_start[0] if self.netadapt_start else None
        return coverage_of(self.config, label or Path(self.source).stem, self.space, start,
                           experiment_signatures(self.config, self.space, start))


def open_experiment(source: str | Path | ExperimentConfig, overrides: list[str] | None = None,
                    *, data: bool = True, latency: LatencyMode = "build",
                    reward: bool = True, num_classes: int | None = None,
                    log: Callable[[str], None] = _stderr) -> Experiment:
    """Open and check an experiment: a YAML path (with `--set`-style `overrides`) or a
    loaded config. Everything a user can get wrong is refused here, before anything
    is written but a `build: if_missing` table; `data=False` learns only the class
    count (no images are read), or takes `num_classes` when the caller knows it (a
    run's own networks say it: then the data is not touched at all); `reward=False`
    leaves the search's reward out (a proxy check ranks children by accuracy alone)."""
    cfg = source if isinstance(source, ExperimentConfig) else load_config(source, overrides)
    evaluator = make_evaluator(cfg.search.evaluator)
    if data:
        _check_runtime(cfg)
        splits: Splits | None = load_data(cfg.data, cfg.search.resolution, cfg.source,
                                          cfg.limits.max_data_gib)
        assert splits is not None
        num_classes = splits.num_classes
    else:
        splits = None
        num_classes = num_classes or class_count(cfg.data, cfg.source)
    space = build_space(cfg, num_classes)
    start = None
    if "netadapt" in cfg.stages:
        assert cfg.netadapt is not None
        if cfg.netadapt.start is not None or "search" not in cfg.stages:
            start = resolve_start(cfg, num_classes)
            problems = size_problems(start[0], cfg.limits.max_params)
            if problems:
                raise UserError(f"netadapt.start: {problems[0]}", cfg.source)
    exp = Experiment(cfg, num_classes, space, evaluator, splits, start)
    if latency == "none":  # an absolute target needs no pricing; a relative one waits
        return _with_target(exp, _reward_target(cfg, None, num_classes, log), reward)
    # what the experiment prices: enumerated at most once, only if a table needs it
    arch = start[0] if start else None
    needed = cache(lambda: experiment_signatures(cfg, space, arch))
    plans = tuple(experiment_plans(cfg, space, needed, arch)) if latency != "load" else ()
    exp = replace(exp, tables=plans)
    pending = [p for p in plans if p.action != "reuse"]
    if pending and latency == "plan":  # a preview: the tables are not there to load yet
        return _with_target(exp, _reward_target(cfg, None, num_classes, log), reward)
    for plan in pending:
        build_planned(plan, log)
    model = build_latency_model(cfg)
    na_model = build_latency_model(cfg, "netadapt.latency") if "netadapt" in cfg.stages \
        else None
    exp = replace(exp, latency=model, netadapt_latency=na_model)
    if latency != "load":
        _check_tables(exp, needed)
        just_built = {p.path.resolve() for p in pending if p.action == "build"}
        for key, m in (("latency", model), ("netadapt.latency", na_model)):
            _apply_drift(cfg, key, m, just_built, log)
    return _with_target(exp, _reward_target(cfg, model, num_classes, log), reward)


def _with_target(exp: Experiment, target: float | None, reward: bool) -> Experiment:
    """`exp` with the reward's target in ms, NetAdapt's, and (`reward`) the reward."""
    return replace(exp, reward_target_ms=target,
                   netadapt_target_ms=_netadapt_target(exp.config, target),
                   reward=_reward(exp, target) if reward else None)


def _check_runtime(cfg: ExperimentConfig) -> None:
    """What running needs of this machine: the data files, the training device, a CUDA
    device for CUDA timing, a Ray cluster that answers (checked before any data is
    read)."""
    for key in ("path", "test_path"):
        # `load_data` names the file alone; a user of a YAML wants the key
        path = getattr(cfg.data, key)
        if path is not None and not path.exists() and not cfg.data.download:
            raise UserError(f"data.{key}: {path} does not exist", cfg.source)
    try:  # a device this machine lacks: refused before any run directory exists
        resolve_device(cfg.train.device)
    except UserError as err:
        raise UserError(err.message, cfg.source) from None
    if cfg.latency.kind == "measure" and cfg.latency.device == "cuda" \
            and not torch.cuda.is_available():
        raise UserError("latency.device: cuda requested but torch sees no CUDA device",
                        cfg.source)
    if cfg.search.executor == "ray":
        check_address(cfg.ray, cfg.source)
    # optional dependencies (the onnx extra), before anything trains for hours
    needs = []
    if "export" in cfg.stages and "onnx" in cfg.export.formats:
        needs.append(("export.formats: onnx", "int8" if cfg.export.int8 else "fp32"))
    for key, lat in (("latency", cfg.latency),
                     ("netadapt.latency", cfg.netadapt.latency if cfg.netadapt else None)):
        if lat is not None and lat.backend == "onnxruntime" and \
                (lat.kind == "measure" or lat.build != "never" or lat.policy == "measure"):
            needs.append((f"{key}.backend: onnxruntime", lat.dtype))
    for key, dtype in needs:
        try:
            runtime.require(dtype)
        except UserError as err:
            raise UserError(f"{key}: {err.message}", cfg.source) from None


def _reward_target(cfg: ExperimentConfig, latency: LatencyModel | None, num_classes: int,
                   log: Callable[[str], None]) -> float | None:
    """`reward.target_ms`, or `reward.target_ratio` x the reference's latency under
    `latency:` (rounded as the run records it; None while there is no model to price it)."""
    rw = cfg.reward
    if rw.target_ratio is None:
        return rw.target_ms
    if latency is None:
        return None
    ref = target_reference(cfg, num_classes)
    ref_ms = latency.predict(ref).ms
    target = round(rw.target_ratio * ref_ms, 4)
    log(f"reward: target {rw.target_ratio:g} x {ref.name or 'the reference'} "
        f"({ref_ms:.3f} ms under latency: {cfg.latency.kind}) = {target:.3f} ms")
    return target


def _netadapt_target(cfg: ExperimentConfig, reward_target: float | None) -> float | None:
    """NetAdapt's target in ms: its own, else the reward's (the user's latency target is
    the result's; `nas.config` refused the cases where the two models differ)."""
    na = cfg.netadapt
    if na is None or "netadapt" not in cfg.stages:
        return None
    if na.target_ms is not None or na.target_ratio is not None:
        return na.target_ms
    return reward_target


def _reward(exp: Experiment, target_ms: float | None) -> Reward | None:
    """The search's reward (None without a search stage, or while a relative target
    waits for its table; a missing target is `make_reward`'s error)."""
    cfg = exp.config
    if "search" not in cfg.stages or (target_ms is None and cfg.reward.target_ratio is not None):
        return None
    return make_reward(replace(cfg.reward, target_ms=target_ms, target_ratio=None,
                               target_reference=None), cfg.source)


def _check_tables(exp: Experiment, needed: Callable[[], list[Signature]]) -> None:
    """Every operator the experiment prices (`needed`) is in its latency table(s) or
    fillable under the policy (`nas.coverage`), before anything trains."""
    cfg = exp.config
    start = exp.netadapt_start[0] if exp.netadapt_start else None
    if isinstance(exp.latency, TableModel):
        check_coverage(exp.latency, needed(), "latency.path", cfg.source,
                       (start or exp.space).resolution)
    na = exp.netadapt_latency
    if isinstance(na, TableModel) and na is not exp.latency and start is not None:
        assert cfg.netadapt is not None
        check_coverage(na, netadapt_signatures(start, cfg.netadapt.channel_step),
                       "netadapt.latency.path", cfg.source, start.resolution)


def _apply_drift(cfg: ExperimentConfig, key: str, model: LatencyModel | None,
                 just_built: set[Path], log: Callable[[str], None]) -> None:
    """Time the drift probe of `key`'s table (built here, not just now) and set the level
    the run prices with (`latency.drift`): one line says how far it moved."""
    if not isinstance(model, TableModel) or model.table.path is None \
            or model.table.path.resolve() in just_built or model.level != 1.0:
        return  # a table shared by both sections is probed once
    lat = cfg.latency
    if key == "netadapt.latency" and cfg.netadapt is not None and cfg.netadapt.latency:
        lat = cfg.netadapt.latency
    try:
        drift = measure_drift(model.table)
    except UserError as err:
        raise UserError(f"{key}.path: {err.message}", cfg.source) from None
    if drift is None:
        return
    name = str(model.table.path)
    try:
        model.level = level_factor(drift, lat.drift, lat.drift_tolerance, name)
    except UserError as err:
        raise UserError(err.message, cfg.source) from None
    within = abs(drift.ratio - 1) <= lat.drift_tolerance
    then = ("within latency.drift_tolerance" if within else
            f"prices x{model.level:.3f} (latency.drift: rescale)" if model.level != 1.0 else
            "past latency.drift_tolerance, priced as built (latency.drift: warn)")
    log(f"{drift.describe(name)}: {then}")


def build_latency_model(cfg: ExperimentConfig, section: str = "latency") -> LatencyModel:
    """The latency model that `latency:` (or `netadapt.latency:`, falling back to
    `latency:`) describes; loads a table."""
    lat = cfg.latency
    if section == "netadapt.latency" and cfg.netadapt is not None and cfg.netadapt.latency:
        lat = cfg.netadapt.latency
    else:
        section = "latency"
    options = asdict(lat)
    kind = options.pop("kind")
    for key in ("build", "drift", "drift_tolerance"):  # nas.tables builds the file, and
        options.pop(key)  # open_experiment probes its drift
    if kind == "table" and lat.path is not None and not lat.path.exists():
        raise UserError(f"{section}.path: {lat.path} does not exist", cfg.source)
    try:
        return make_model(kind, **options)
    except UserError as err:
        if err.source:  # a problem inside the table file names that file
            raise
        raise UserError(f"{section}.{err.message}", cfg.source) from None


def resolve_start(cfg: ExperimentConfig, num_classes: int,
                  search_best: Path | None = None) -> tuple[Arch, Path | None]:
    """NetAdapt's starting Arch and its weights (None: pre-train first), checked against
    the data; `search_best` is this run's search result when a search stage ran."""
    na = cfg.netadapt
    assert na is not None
    key = "netadapt.start"
    if na.start is None:
        if search_best is None:
            raise UserError(f"{key}: missing (no search stage runs before netadapt)", cfg.source)
        net = Net(load_arch(search_best), None, "search")
    else:
        try:
            net = resolve_net(na.start, run_pick="search")  # a run: its search's best
        except UserError as err:
            if err.source is not None:  # a problem inside a file names that file
                raise
            raise UserError(f"{key}: {err.message}", cfg.source) from None
    arch = net.arch
    if net.origin == "reference":  # published at 224x224, 1000 classes: take the run's
        arch = with_input(arch, cfg.search.resolution, num_classes, cfg.search.stem_stride)
    if arch.resolution != cfg.search.resolution:
        raise UserError(f"{key}: the network is for {arch.resolution}x{arch.resolution} "
                        f"inputs, search.resolution is {cfg.search.resolution}", cfg.source)
    if arch.num_classes != num_classes:
        raise UserError(f"{key}: the network has {arch.num_classes} classes, the data "
                        f"{num_classes}", cfg.source)
    weights = na.weights if na.weights is not None else net.weights
    if weights is not None:
        read_weights(weights, arch)  # a damaged or foreign file fails before the run
    return arch, weights
