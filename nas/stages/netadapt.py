"""The NetAdapt stage: where it starts, the trainer and executor it gets, its folder.

The `netadapt` package holds the algorithm; this module wires in what it leaves
open: the starting network (the experiment's, or this run's search best), the proxy
trainer as its fine-tune step, the inline or Ray executor, and the optional
measurement of every proposal.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Callable

from latency.model import make_model
from nas.experiment import Experiment, resolve_start
from nas.raytune import make_executor
from nas.rundir import RunDir
from nas.step import make_step
from netadapt.loop import NetAdapt, NetAdaptResult


def netadapt_stage(exp: Experiment, run: RunDir, log: Callable[[str], None]
                   ) -> NetAdaptResult:
    """Run (or continue) NetAdapt in `run`'s `netadapt/`, from the experiment's start
    or this run's search best, to its resolved target."""
    cfg, na, latency = exp.config, exp.netadapt, exp.netadapt_latency
    assert latency is not None
    start = exp.netadapt_start or resolve_start(cfg, exp.num_classes, run.best_json)
    measure = None
    if na.measure:  # the measurement protocol, with the experiment's settings
        options = asdict(cfg.latency)
        options.pop("kind")
        measure = make_model("measure", **options)
    # Pre-training uses `train:` as it is; fine-tunes (from weights) use `netadapt.lr`,
    # default a tenth of `train.lr`.
    step = make_step(exp.data, cfg.train, na.lr)
    executor = make_executor(cfg.search.executor, step, cfg.ray, run.ray_dir)
    loop = NetAdapt(na, lambda a: latency.predict(a).ms, executor, run.netadapt.root,
                    cfg.seed, log,
                    measure=(lambda a: measure.predict(a).ms) if measure else None,
                    pretrain_epochs=na.pretrain_epochs)
    result = loop.run(*start)
    log(f"netadapt done: {result.start_ms:.3f} -> {result.latency_ms:.3f} ms in "
        f"{result.iterations} iterations, top-1 {result.accuracy:.4f} -> "
        f"{loop.dir.final.root}")
    return result
