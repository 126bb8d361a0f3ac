"""The final, report and NetAdapt stages called directly on an opened experiment and a
run directory, as `nas.pipeline` calls them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from experiments import write_exp, write_search
from nas.cli import main
from nas.experiment import open_experiment, resolve_start
from nas.pipeline import search_stage
from nas.rundir import RunDir
from nas.stages.final import export_stage, final_train
from nas.stages.netadapt import netadapt_stage
from nas.stages.report import FINAL_METRICS, result_target, write_report
from search_spaces.infra.errors import UserError

QUIET = lambda msg: None  # noqa: E731


def searched(tmp_path: Path, stages: str = "[search, final_train, export]"):
    """An opened tiny experiment and a run directory whose search has run."""
    exp = open_experiment(write_search(tmp_path, stages=stages), log=QUIET)
    run = RunDir.create(tmp_path / "out", "tiny", exp.resolved_config())
    with run.writing():
        search_stage(exp, run, QUIET)
    return exp, run


def test_final_train_trains_the_search_best_once_and_export_writes_onnx(tmp_path: Path) -> None:
    exp, run = searched(tmp_path)
    lines: list[str] = []
    with run.writing():
        metrics = final_train(exp, run, lines.append)
        assert set(FINAL_METRICS) <= set(metrics) and metrics["source"] == "search"
        assert metrics["steps"] == 2 and metrics["init"] == "scratch"
        assert final_train(exp, run, lines.append) == json.loads(
            run.final.metrics_json.read_text())  # done: read back, not trained again
        export_stage(exp, run, lines.append)
    assert any("already done" in line for line in lines)
    assert run.final.model("onnx").is_file()
    assert json.loads(run.final.arch_json.read_text())["num_classes"] == 4


def test_final_train_refuses_netadapt_weights_that_do_not_exist(tmp_path: Path) -> None:
    exp, run = searched(tmp_path)
    text = Path(exp.source).read_text().replace("final:\n", "final:\n  init: netadapt\n")
    Path(exp.source).write_text(text)
    again = open_experiment(exp.source, log=QUIET)
    with run.writing(), pytest.raises(UserError, match="final.init: netadapt needs"):
        final_train(again, run, QUIET)


def test_the_report_shows_the_resolved_target_and_the_result(tmp_path: Path) -> None:
    exp, run = searched(tmp_path)
    with run.writing():
        final_train(exp, run, QUIET)
        report = write_report(exp, run)
    text = report.read_text()
    assert "target 2.0 ms" in text and "mobilenet_v3_small" in text
    assert result_target(exp, run) == 2.0
    # NetAdapt's own resolved target, once its summary says it, is the result's
    run.netadapt.summary_json.parent.mkdir(parents=True, exist_ok=True)
    run.netadapt.summary_json.write_text(json.dumps({"target_ms": 1.25}))
    with_netadapt = open_experiment(write_search(
        tmp_path / "na", stages="[search, netadapt]",
        extra="netadapt: {start: mobilenet_v3_small}\n"), log=QUIET)
    assert result_target(with_netadapt, run) == 1.25


def test_netadapt_runs_from_its_start_to_its_target(tmp_path: Path) -> None:
    exp = open_experiment(write_exp(tmp_path), ["stages=[netadapt]"], log=QUIET)
    run = RunDir.create(tmp_path / "out", "shrink", exp.resolved_config())
    with run.writing():
        result = netadapt_stage(exp, run, QUIET)
    assert result.latency_ms <= result.start_ms and result.iterations >= 1
    assert (run.netadapt.root / "final" / "arch.json").is_file()
    summary = json.loads(run.netadapt.summary_json.read_text())
    assert summary["target_ms"] == pytest.approx(0.8 * result.start_ms)


def test_netadapt_start_must_fit_the_experiment(tmp_path: Path) -> None:
    exp = open_experiment(write_exp(tmp_path), ["stages=[netadapt]"], data=False,
                          latency="none")
    cfg = replace(exp.config, search=replace(exp.config.search, resolution=32))
    with pytest.raises(UserError, match="netadapt.start: the network is for 16x16 inputs"):
        resolve_start(cfg, exp.num_classes)


def test_a_run_reports_without_its_data(tmp_path: Path, capsys) -> None:
    """`nas report RUN` learns the class count from the run's own network: a run whose
    data file has gone since still reports."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, images=rng.integers(0, 255, (120, 16, 16, 3), dtype=np.uint8),
             labels=np.arange(120) % 4)
    text = write_search(tmp_path).read_text().replace(
        "  kind: synthetic\n  synthetic: {num_classes: 4, train_size: 120, test_size: 40, "
        "image_size: 16}\n", f"  kind: npz\n  path: {data}\n")
    (tmp_path / "tiny.yaml").write_text(text)
    exp = open_experiment(tmp_path / "tiny.yaml", log=QUIET)
    run = RunDir.create(tmp_path / "out", "tiny", exp.resolved_config())
    with run.writing():
        search_stage(exp, run, QUIET)
    data.unlink()
    assert main(["report", str(run.root)]) == 0
    assert "report.md" in capsys.readouterr().out
