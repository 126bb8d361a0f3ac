"""From an opened experiment to a run directory: the stages in order, resumable.

`nas.experiment.open_experiment` checks everything a user can get wrong (config, data,
latency table, reward) before `start` creates the run directory, so a bad input
leaves no half-written run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from nas.experiment import Experiment, open_experiment
from nas.rundir import RunDir
from nas.search.core import SearchCore, SearchFailed
from nas.search.predictor import AccuracyPredictor, predictor_summary
from nas.search.strategies import make_strategy
from nas.stages.final import export_stage, final_train
from nas.stages.netadapt import netadapt_stage
from nas.stages.report import write_report
from search_spaces.arch import Arch
from search_spaces.infra.errors import UserError
from search_spaces.infra.files import read_record


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def search_stage(exp: Experiment, run: RunDir, log: Callable[[str], None]) -> SearchCore:
    """Run (or continue) the controller search in `run` with the experiment's evaluator."""
    cfg = exp.config
    strategy = make_strategy(cfg.search.strategy, exp.space, cfg.seed, cfg.controller,
                             cfg.evolution)
    latency = exp.latency
    assert latency is not None and exp.reward is not None

    def predict(arch: Arch) -> tuple[float, str]:
        est = latency.predict(arch)
        return est.ms, est.source

    pc = cfg.predictor
    predictor = (pc, AccuracyPredictor(exp.space, pc.ridge)) if pc.real_every else None
    core = SearchCore(exp.space, strategy, predict, exp.reward, run, cfg.search.num_trials,
                      cfg.search.max_failed_trials, log, exp.evaluator.name, predictor)
    replayed = core.replay()
    if replayed:
        log(f"resuming: {replayed} trials already in {core.trials.path}")
    log(f"search: {cfg.search.strategy} over {exp.space.name} "
        f"({exp.space.size():.2e} architectures), {cfg.search.num_trials} trials, "
        f"{cfg.search.executor} executor, {exp.evaluator.name} evaluator; "
        f"{exp.data.summary()}")
    exp.evaluator.search(exp, run, core, log)
    if core.finished and core.best() is None:  # nothing to hand on: not a success
        last = next((r["error"] for r in reversed(core.rows) if r["error"]), "")
        raise SearchFailed(f"every one of the {core.done} trials failed; last error: {last}")
    if predictor is not None:
        log(predictor_summary(core.rows))
    if run.best_metrics_json.is_file():
        best = read_record(run.best_metrics_json,
                           ("trial_id", "reward", "accuracy", "latency_ms"))
        how = " (re-ranked)" if best.get("selected_by") == "rerank" else ""
        log(f"search done: best trial {best['trial_id']}{how} reward {best['reward']:.4f} "
            f"accuracy {best['accuracy']:.3f} latency {best['latency_ms']:.2f} ms "
            f"-> {run.best_json}")
    return core


def run_stages(exp: Experiment, run: RunDir, log: Callable[[str], None]) -> None:
    """The config's stages in order; each resumes from what it already wrote."""
    for stage in exp.config.stages:
        if stage == "search":
            search_stage(exp, run, log)
        elif stage == "netadapt":
            netadapt_stage(exp, run, log)
        elif stage == "final_train":
            final_train(exp, run, log)
        elif stage == "export":
            export_stage(exp, run, log)
        write_report(exp, run)  # after each stage: always current
    log(f"report: {run.report_md}")


def start(exp: Experiment, log: Callable[[str], None] = _stderr) -> RunDir:
    """Create the run directory of an opened experiment and run its stages."""
    cfg = exp.config
    assert cfg.output_dir is not None and cfg.name is not None
    run = RunDir.create(cfg.output_dir, cfg.name, exp.resolved_config())
    log(f"run directory: {run.root}")
    with run.writing():
        run_stages(exp, run, log)
    return run


def resume(run_dir: str | Path, log: Callable[[str], None] = _stderr) -> RunDir:
    """Continue a run where it stopped, from its own resolved config."""
    run = RunDir.open(run_dir)
    if run.is_proxy_check():
        raise UserError("a proxy check, not a run of stages: continue it with "
                        "`nas proxy-check` on this folder", str(run.root))
    with run.writing():  # taken first: a second resume stops before it reads anything
        run_stages(open_experiment(run.config_path, log=log), run, log)
    return run
