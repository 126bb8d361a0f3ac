"""The proxy trainer as the job contract's `Step`, for every stage that hands out jobs.

A search child is a job without weights and without its own budget (it trains for
`train:`'s); a NetAdapt proposal starts from inherited weights and trains for T steps;
NetAdapt's pre-training and long-term fine-tune set epochs; an evaluate-only job sets
a budget of 0. Fine-tunes (jobs with weights) use their own learning rate.
"""

from __future__ import annotations

import time
from dataclasses import replace

from latency.measure import compute_lock
from nas.data import Splits
from nas.train import TrainConfig, TrialError, build_seeded, evaluate, train, wanted_threads
from search_spaces.infra.jobs import Job, JobResult, Step
from search_spaces.infra.threads import torch_threads
from search_spaces.infra.weights import read_weights, write_weights


def make_step(splits: Splits, train_cfg: TrainConfig, finetune_lr: float | None = None
              ) -> Step:
    """Train a job's network on `splits.train` with `train_cfg` (the job's budget,
    when it sets one, replaces train:'s), score it on `splits.val`, save it to the
    job's `out`. `finetune_lr` (default: a tenth of `train_cfg.lr`) applies to jobs
    that start from weights."""
    lr = finetune_lr if finetune_lr is not None else train_cfg.lr / 10

    def step(job: Job) -> JobResult:
        start = time.perf_counter()
        if job.arch is None:
            raise ValueError(f"job {job.name} has no architecture to train")
        model = build_seeded(job.arch, job.seed)
        cfg = train_cfg
        if job.steps is not None or job.epochs is not None:
            cfg = replace(cfg, steps=job.steps, epochs=job.epochs)
        if job.weights is not None:
            model.load_state_dict(read_weights(job.weights, job.arch))
            cfg = replace(cfg, lr=lr)
        images_per_s = None
        try:
            # no latency timing on this machine while we train
            with compute_lock(), torch_threads(wanted_threads(cfg)):
                if job.trains:
                    images_per_s = train(model, splits.train, cfg, job.seed).images_per_s
                accuracy = evaluate(model, splits.val, cfg.eval_batch_size)
        except TrialError as err:
            return JobResult(None, str(err), time.perf_counter() - start)
        if job.out is not None:
            write_weights(model.state_dict(), job.out)
        return JobResult(accuracy, "", time.perf_counter() - start, images_per_s)

    return step
