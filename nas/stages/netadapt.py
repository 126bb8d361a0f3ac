"""The NetAdapt stage: where it starts, the trainer and executor it gets, its folder.

The `netadapt` package holds the algorithm; this module wires in what it leaves
open: the starting network (anything `nas.resolve` takes), the proxy trainer as its
fine-tune step, and the inline or Ray executor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from latency.model import LatencyModel
from nas.config import ExperimentConfig
from nas.data import Splits
from nas.raytune import make_executor
from nas.resolve import Net, resolve_net
from nas.step import make_step
from netadapt.loop import NetAdapt, NetAdaptResult
from search_spaces.arch import Arch, load_arch
from search_spaces.infra.errors import UserError
from search_spaces.transforms import with_input
from search_spaces.infra.weights import read_weights


def resolve_start(cfg: ExperimentConfig, num_classes: int,
                  search_best: Path | None = None) -> tuple[Arch, Path | None]:
    """The starting Arch and its weights (None: pre-train first), checked against the
    data; `search_best` is this run's search result when a search stage ran."""
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


def netadapt_stage(cfg: ExperimentConfig, splits: Splits, latency: LatencyModel,
                   start: tuple[Arch, Path | None], folder: Path, ray_storage: Path,
                   log: Callable[[str], None], measure: LatencyModel | None = None
                   ) -> NetAdaptResult:
    """Run (or continue) NetAdapt from `start` in `folder`."""
    na = cfg.netadapt
    assert na is not None
    # Pre-training uses `train:` as it is; fine-tunes (from weights) use `netadapt.lr`,
    # default a tenth of `train.lr`.
    step = make_step(splits, cfg.train, na.lr)
    executor = make_executor(cfg.search.executor, step, cfg.ray, ray_storage)
    loop = NetAdapt(na, lambda a: latency.predict(a).ms, executor, folder, cfg.seed, log,
                    measure=(lambda a: measure.predict(a).ms) if measure else None,
                    pretrain_epochs=na.pretrain_epochs)
    result = loop.run(*start)
    log(f"netadapt done: {result.start_ms:.3f} -> {result.latency_ms:.3f} ms in "
        f"{result.iterations} iterations, top-1 {result.accuracy:.4f} -> "
        f"{loop.dir.final.root}")
    return result
