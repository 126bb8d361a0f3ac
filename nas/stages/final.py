"""The final stages: train the chosen network, score it once on the test split, export.

The network comes from the stage before: NetAdapt's `netadapt/final/` when NetAdapt
ran, else the search's `best.json`. MobileNetV3 trains its final model from scratch
(`final.init: scratch`); `final.init: netadapt` continues from NetAdapt's weights;
`final.init` naming the search's evaluator (one that shares weights) from the weights
the search's best inherits from it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from latency.deployed import latency_record, pricing, time_exported
from latency.measure import compute_lock
from latency.drift import measure_drift
from latency.model import LatencyModel, TableModel
from nas.data import Splits
from nas.experiment import Experiment
from nas.resolve import run_net
from nas.rundir import RunDir, write_json
from nas.stages.export import (INT8_FILE, OnnxModule, Preprocessing, calibration_batches, export,
                              export_int8, load_model)
from nas.stages.report import FINAL_METRICS, result_target
from nas.train import TrainConfig, TrainStats, build_seeded, evaluate, train, wanted_threads
from search_spaces.arch import Arch
from search_spaces.counting import count
from search_spaces.infra.errors import UserError
from search_spaces.infra.files import atomic_write, read_record
from search_spaces.infra.threads import torch_threads
from search_spaces.infra.weights import read_weights, write_weights
from search_spaces.reference import BASELINES, load_reference
from search_spaces.transforms import with_input


def final_source(run: RunDir) -> tuple[Arch, Path | None, str]:
    """The network the final stage trains: NetAdapt's result, else the search's best;
    the last is the stage it came from."""
    try:
        net = run_net(run, "netadapt")
    except UserError:
        raise UserError("final_train: no network to train (neither netadapt/final nor "
                        "search/best.json exists)", str(run.root)) from None
    return net.arch, net.weights, net.origin


def final_train(exp: Experiment, run: RunDir, log: Callable[[str], None]) -> dict:
    """Train and score the final network into `final/` (with `final:`'s budget over
    `train:`); skipped when already done, continued from its checkpoint when killed."""
    cfg_train, final, splits, seed = exp.config.train, exp.config.final, exp.data, \
        exp.config.seed
    latency = exp.latency
    assert latency is not None
    folder = run.final
    metrics_path = folder.metrics_json
    if folder.complete():
        log(f"final_train: already done ({metrics_path})")
        return read_record(metrics_path, FINAL_METRICS)
    arch, weights, source = final_source(run)
    if final.init == "netadapt" and weights is None:
        raise UserError("final.init: netadapt needs NetAdapt's weights (netadapt/final), "
                        "but the network comes from the search", str(run.config_path))
    cfg = replace(cfg_train, lr=final.lr or cfg_train.lr)
    if final.epochs or final.steps:  # the final budget replaces train:'s as a whole
        cfg = replace(cfg, epochs=final.epochs, steps=final.steps)
    start = time.perf_counter()
    initial = None
    if final.init == "netadapt":
        assert weights is not None
        initial = read_weights(weights, arch)
    elif final.init != "scratch":  # the search's evaluator (`nas.config` checked it)
        if source != "search":
            raise UserError(f"final.init: {final.init} fine-tunes the search's best child "
                            f"with the weights it inherits; the network to train comes "
                            f"from {source}", str(run.config_path))
        initial = inherited_weights(exp, run, arch)
    what = {"scratch": "from scratch", "netadapt": "from NetAdapt's weights"}.get(
        final.init, f"from the weights it inherits from the {final.init} evaluator")
    log(f"final_train: {len(arch.layers)}-layer network from {source}, trained {what}")
    # a killed final training continues from its last checkpoint on resume
    model, stats, val, test = train_and_score(arch, cfg, splits, seed, log, initial,
                                              checkpoint=folder.checkpoint_pt)
    atomic_write(folder.arch_json, arch.to_json())
    write_weights(model.state_dict(), folder.weights_pt)
    atomic_write(folder.preprocessing_json,
                 Preprocessing(arch.resolution, splits.mean, splits.std, splits.classes).to_json())
    est = latency.predict(arch)
    params, macs = count(arch)
    metrics = {"test_top1": test, "val_top1": val, "latency_ms": est.ms,
               "latency_source": est.source, "params": params, "macs": macs,
               "source": source, "init": final.init, "steps": stats.steps,
               "epochs": stats.epochs, "train_wall_s": stats.wall_s,
               "wall_s": time.perf_counter() - start, "test_images": len(splits.test or ())}
    if exp.config.report.train_references:
        write_json(folder.references_json,
                   _train_references(arch, cfg, splits, seed, log))
    write_json(metrics_path, metrics)  # last: the stage is complete
    test_text = f"test top-1 {test:.4f}" if test is not None else "no test split"
    log(f"final_train: {test_text}, val top-1 {val:.4f}, {est.ms:.3f} ms, {params:,} params, "
        f"{macs / 1e6:.1f}M MACs -> {folder.root}")
    return metrics


def inherited_weights(exp: Experiment, run: RunDir, arch: Arch) -> dict[str, torch.Tensor]:
    """The weights the search's best child (`arch`) inherits from the run's evaluator."""
    child, state = exp.evaluator.inherit(exp, run, "best")
    if child.hash() != arch.hash():
        raise UserError(f"final.init: {exp.config.final.init}: the network to train is not "
                        f"the search's best child", str(run.root))
    return state


def train_and_score(arch: Arch, cfg: TrainConfig, splits: Splits, seed: int,
                    log: Callable[[str], None] | None = None,
                    initial: Mapping[str, torch.Tensor] | None = None,
                    checkpoint: Path | None = None
                    ) -> tuple[nn.Module, TrainStats, float, float | None]:
    """The one final training: `arch` built from `seed` (or loaded with `initial`),
    trained on `splits.train` under `cfg`; the model, what the training did, and its
    validation and test top-1 (None without a test split). The final network, the
    reference nets and the benchmarks' baselines all go through it, so they compare."""
    model = build_seeded(arch, seed)
    if initial is not None:
        model.load_state_dict(initial)
    with compute_lock(), torch_threads(wanted_threads(cfg)):
        stats = train(model, splits.train, cfg, seed, log, checkpoint=checkpoint)
        val = evaluate(model, splits.val, cfg.eval_batch_size)
        test = evaluate(model, splits.test, cfg.eval_batch_size) if splits.test else None
    return model, stats, val, test


def _train_references(arch: Arch, cfg: TrainConfig, splits: Splits, seed: int,
                      log: Callable[[str], None]) -> dict[str, float | None]:
    """Test top-1 of the reference nets trained from scratch on the same budget."""

    out: dict[str, float | None] = {}
    for name in BASELINES:
        ref = with_input(load_reference(name), arch.resolution, arch.num_classes,
                         arch.stem.stride)
        log(f"final_train: training the reference {name} on the same budget")
        _, _, _, out[name] = train_and_score(ref, cfg, splits, seed, log)
    return out


def export_stage(exp: Experiment, run: RunDir, log: Callable[[str], None]) -> None:
    """`final/model.onnx` (checked with ONNX Runtime) and/or `final/model.pt2`; with
    `export.int8`, `final/model.int8.onnx` and its test top-1 beside fp32's; then, with
    `export.measure`, the exported models timed here into `final/metrics.json` beside
    the prediction and the target it was meant to meet."""
    export_cfg, latency = exp.config.export, exp.latency
    folder = run.final
    if not folder.complete():
        raise UserError("export: no trained final network (run the final_train stage)",
                        str(run.root))
    net = run_net(run, "final")
    todo = [f for f in export_cfg.formats if not folder.model(f).is_file()]
    if not todo and not export_cfg.int8:
        log(f"export: already done ({', '.join(export_cfg.formats)})")
    for fmt in todo:
        diff = export(net.arch, net.weights, fmt, folder.model(fmt))
        log(f"export: {folder.model(fmt)} (max |torch - exported| {diff:.1e})")
    if export_cfg.int8:
        _export_int8(exp, run, log)
    if export_cfg.measure and latency is not None:
        _measure_exported(run, net.arch, net.weights, latency, result_target(exp, run), log)


def _export_int8(exp: Experiment, run: RunDir, log: Callable[[str], None]) -> None:
    """`final/model.int8.onnx`, calibrated on training images with the model's own
    preprocessing, and its test top-1 (ONNX Runtime) with the drop against the fp32
    network's in `final/metrics.json`."""
    folder, cfg = run.final, exp.config.export
    int8 = folder.root / INT8_FILE
    if exp.splits is None:
        raise UserError("export.int8: calibrating and scoring the int8 model needs the data",
                        exp.source)
    if not int8.is_file():
        batches = calibration_batches(exp.splits.train, cfg.int8_calibration_images)
        export_int8(folder.model("onnx"), int8, batches)
        log(f"export: {int8} (static QDQ int8, calibrated on "
            f"{sum(len(b) for b in batches)} training images)")
    metrics = read_record(folder.metrics_json, FINAL_METRICS)
    test = exp.splits.test
    if "int8_test_top1" in metrics or test is None:
        return
    with compute_lock():
        top1 = evaluate(OnnxModule(int8), test)
    drop = metrics["test_top1"] - top1
    write_json(folder.metrics_json, {**metrics, "int8_test_top1": top1, "int8_top1_drop": drop})
    log(f"export: int8 test top-1 {top1:.4f} (fp32 {metrics['test_top1']:.4f}, drop "
        f"{100 * drop:+.2f} points)")


def _measure_exported(run: RunDir, arch: Arch, weights: Path | None, latency: LatencyModel,
                      target_ms: float | None, log: Callable[[str], None]) -> None:
    """Time `final/model.onnx` (and `model.int8.onnx`, when exported) and the torch
    model with the latency protocol; add the measured and predicted latency to
    `final/metrics.json`, and how far the table's drift probe moved, if it has one."""
    folder = run.final
    metrics = read_record(folder.metrics_json, FINAL_METRICS)
    if "latency_measured_ms" in metrics:
        return
    price = pricing(latency)
    onnx, int8 = folder.model("onnx"), folder.root / INT8_FILE
    log(f"export: timing the exported model on this machine ({price.protocol.threads} "
        f"thread(s), batch 1, {price.protocol.repeats} runs)")
    timings = time_exported(load_model(arch, weights), (1, arch.in_ch, arch.resolution,
                                                        arch.resolution),
                            onnx if onnx.is_file() else None, price.protocol,
                            int8 if int8.is_file() else None)
    record = latency_record(metrics["latency_ms"], target_ms, timings, price)
    if isinstance(latency, TableModel):
        drift = measure_drift(latency.table)
        if drift is not None:
            record["latency_table_drift"] = drift.ratio - 1
            log(f"export: {drift.describe(str(latency.table.path))}")
    write_json(folder.metrics_json, {**metrics, **record})
    measured = ", ".join(f"{b} {t.ms:.3f} ms" for b, t in timings.items())
    error = record["latency_relative_error"]
    versus = (f"predicted {record['latency_predicted_ms']:.3f} ms ({error:+.1%} against "
              f"{record['latency_compared_backend']})" if error is not None else
              f"predicted {record['latency_predicted_ms']:.3f} ms for {price.describes}")
    log(f"export: measured {measured}; {versus}")
