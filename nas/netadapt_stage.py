"""The NetAdapt stage: where it starts, the trainer and executor it gets, its folder.

The `netadapt` package holds the algorithm; this module wires in what it leaves
open: the starting network (a folder, an Arch file, a run, a reference net), the
proxy trainer as its fine-tune step, and the inline or Ray executor.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from latency.measure import compute_lock
from latency.model import LatencyModel
from nas.config import ExperimentConfig, NetAdaptSection
from nas.data import Splits
from nas.export import read_weights
from nas.raytune import run_jobs_ray
from nas.train import (Threads, TrainConfig, TrialError, build_seeded, evaluate, train,
                       wanted_threads)
from netadapt.jobs import Executor, Job, JobResult, Step, inline_executor
from netadapt.loop import NetAdapt, NetAdaptResult, load_weights, save_weights
from search_spaces.arch import Arch, load_arch
from search_spaces.builder import check_state
from search_spaces.errors import UserError
from search_spaces.reference import load_reference, reference_names
from search_spaces.transforms import with_input

ARCH_FILE, WEIGHTS_FILE = "arch.json", "weights.pt"


def resolve_start(cfg: ExperimentConfig, num_classes: int,
                  search_best: Path | None = None) -> tuple[Arch, Path | None]:
    """The starting Arch and its weights (None: pre-train first), checked against the
    data; `search_best` is this run's search result when a search stage ran."""
    na = cfg.netadapt
    assert na is not None
    key = "netadapt.start"
    weights = na.weights
    if na.start is None:
        if search_best is None:
            raise UserError(f"{key}: missing (no search stage runs before netadapt)", cfg.source)
        arch = load_arch(search_best)
    elif na.start in reference_names():
        arch = with_input(load_reference(na.start), cfg.search.resolution, num_classes,
                          cfg.search.stem_stride)
    else:
        path = Path(na.start)
        if path.is_dir() and (path / "config.yaml").is_file():  # a run directory
            path = path / "search" / "best.json"
        elif path.is_dir():
            if weights is None and (path / WEIGHTS_FILE).is_file():
                weights = path / WEIGHTS_FILE
            path = path / ARCH_FILE
        if not path.is_file():
            close = difflib.get_close_matches(Path(na.start).name, reference_names(), n=1)
            hint = f" (did you mean the reference net '{close[0]}'?)" if close else ""
            raise UserError(f"{key}: {path} does not exist{hint}", cfg.source)
        arch = load_arch(path)
    if arch.resolution != cfg.search.resolution:
        raise UserError(f"{key}: the network is for {arch.resolution}x{arch.resolution} "
                        f"inputs, search.resolution is {cfg.search.resolution}", cfg.source)
    if arch.num_classes != num_classes:
        raise UserError(f"{key}: the network has {arch.num_classes} classes, the data "
                        f"{num_classes}", cfg.source)
    if weights is not None:
        check_weights(arch, weights)
    return arch, weights


def check_weights(arch: Arch, path: Path) -> None:
    """`path` must hold a state dict for `arch` (a UserError naming the file if not)."""
    check_state(arch, read_weights(path), str(path))


def make_step(splits: Splits, train_cfg: TrainConfig, na: NetAdaptSection) -> Step:
    """The fine-tune-and-evaluate step: pre-training uses `train:` as it is; fine-tunes
    (from weights) use `netadapt.lr`, default a tenth of `train.lr`."""
    finetune_lr = na.lr if na.lr is not None else train_cfg.lr / 10

    def step(job: Job) -> JobResult:
        start = time.perf_counter()
        model = build_seeded(job.arch, job.seed)
        if job.weights is not None:
            model.load_state_dict(load_weights(job.weights))
        cfg = replace(train_cfg, steps=job.steps, epochs=job.epochs,
                      lr=train_cfg.lr if job.weights is None else finetune_lr)
        try:
            with compute_lock(), Threads(wanted_threads(cfg)):
                if job.steps or job.epochs:
                    train(model, splits.train, cfg, job.seed)
                accuracy = evaluate(model, splits.val, cfg.eval_batch_size)
        except TrialError as err:
            return JobResult(None, str(err), time.perf_counter() - start)
        if job.out is not None:
            save_weights({k: v.cpu() for k, v in model.state_dict().items()}, job.out)
        return JobResult(accuracy, "", time.perf_counter() - start)

    return step


def netadapt_stage(cfg: ExperimentConfig, splits: Splits, latency: LatencyModel,
                   start: tuple[Arch, Path | None], folder: Path, ray_storage: Path,
                   log: Callable[[str], None], measure: LatencyModel | None = None
                   ) -> NetAdaptResult:
    """Run (or continue) NetAdapt from `start` in `folder`."""
    na = cfg.netadapt
    assert na is not None
    step = make_step(splits, cfg.train, na)
    executor: Executor
    if cfg.search.executor == "inline":
        executor = inline_executor(step)
    else:
        def executor(jobs, on_result):  # type: ignore[no-redef]
            run_jobs_ray(jobs, on_result, step, cfg.ray, ray_storage)

    loop = NetAdapt(na, lambda a: latency.predict(a).ms, executor, folder, cfg.seed, log,
                    measure=(lambda a: measure.predict(a).ms) if measure else None,
                    pretrain_epochs=na.pretrain_epochs)
    result = loop.run(*start)
    log(f"netadapt done: {result.start_ms:.3f} -> {result.latency_ms:.3f} ms in "
        f"{result.iterations} iterations, top-1 {result.accuracy:.4f} -> {folder / 'final'}")
    return result
