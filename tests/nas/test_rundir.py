"""The run directory owns its layout: one accessor per file of DESIGN.md's picture."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nas.rundir import RunDir
from netadapt.layout import NetAdaptDir
from search_spaces.infra.errors import UserError


# Every file and folder of the picture in DESIGN.md ("The run directory"), and what
# the code writes besides (checkpoints, best_metrics.json, references.json, ray/).
@pytest.mark.parametrize("accessor, expect", [
    (lambda r: r.config_path, "config.yaml"),
    (lambda r: r.trials_csv, "search/trials.csv"),
    (lambda r: r.arch_json("ab12"), "search/archs/ab12.json"),
    (lambda r: r.controller_pt, "search/controller.pt"),
    (lambda r: r.best_json, "search/best.json"),
    (lambda r: r.best_metrics_json, "search/best_metrics.json"),
    (lambda r: r.pareto_csv, "search/pareto.csv"),
    (lambda r: r.netadapt.history_csv, "netadapt/history.csv"),
    (lambda r: r.netadapt.summary_json, "netadapt/summary.json"),
    (lambda r: r.netadapt.iteration(3).arch_json, "netadapt/iter_3/arch.json"),
    (lambda r: r.netadapt.iteration(3).weights_pt, "netadapt/iter_3/weights.pt"),
    (lambda r: r.netadapt.iteration(3).metrics_json, "netadapt/iter_3/metrics.json"),
    (lambda r: r.netadapt.iteration(3).proposals_csv, "netadapt/iter_3/proposals.csv"),
    (lambda r: r.netadapt.iteration(3).proposal_start("expansion/2"),
     "netadapt/iter_3/proposals/expansion_2/start.pt"),
    (lambda r: r.netadapt.iteration(3).proposal_weights("expansion/2"),
     "netadapt/iter_3/proposals/expansion_2/weights.pt"),
    (lambda r: r.netadapt.final.arch_json, "netadapt/final/arch.json"),
    (lambda r: r.netadapt.final.weights_pt, "netadapt/final/weights.pt"),
    (lambda r: r.netadapt.final.metrics_json, "netadapt/final/metrics.json"),
    (lambda r: r.final.arch_json, "final/arch.json"),
    (lambda r: r.final.weights_pt, "final/weights.pt"),
    (lambda r: r.final.model("onnx"), "final/model.onnx"),
    (lambda r: r.final.model("pt2"), "final/model.pt2"),
    (lambda r: r.final.metrics_json, "final/metrics.json"),
    (lambda r: r.final.preprocessing_json, "final/preprocessing.json"),
    (lambda r: r.final.references_json, "final/references.json"),
    (lambda r: r.final.checkpoint_pt, "final/train_checkpoint.pt"),
    (lambda r: r.ray_dir, "ray"),
    (lambda r: r.report_md, "report.md"),
    (lambda r: r.pareto_png, "pareto.png"),
])
def test_accessor_paths(tmp_path: Path, accessor, expect: str) -> None:
    run = RunDir(tmp_path / "run")
    assert accessor(run).relative_to(run.root).as_posix() == expect


def test_netadapt_folder_stands_alone(tmp_path: Path) -> None:
    """netadapt/ never imports nas: its layout works on any folder."""
    folder = NetAdaptDir(tmp_path)
    assert folder.iteration(0).root == tmp_path / "iter_0"
    assert folder.final.root == tmp_path / "final"


def test_create_writes_the_config_and_open_finds_it(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "exp", {"name": "exp", "seed": 1})
    assert yaml.safe_load(run.config_path.read_text()) == {"name": "exp", "seed": 1}
    assert RunDir.is_run(run.root) and not RunDir.is_run(tmp_path)
    assert RunDir.open(run.root).root == run.root
    assert RunDir.open(run.config_path).root == run.root
    again = RunDir.create(tmp_path, "exp", {})  # the same second: a fresh folder
    assert again.root != run.root
    with pytest.raises(UserError, match="not a run directory .*the latest run in it"):
        RunDir.open(tmp_path / "exp")


def test_create_is_atomic_for_runs_started_in_the_same_second(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mkdir without exist_ok: a folder made by someone else in between is skipped."""
    import time

    monkeypatch.setattr(time, "strftime", lambda fmt: "20260101-000000")
    (tmp_path / "exp" / "20260101-000000").mkdir(parents=True)  # another process's
    (tmp_path / "exp" / "20260101-000000-2").mkdir()
    run = RunDir.create(tmp_path, "exp", {})
    assert run.root.name == "20260101-000000-3"


@pytest.mark.parametrize("name", ["../escaped", "/abs/olute", "a\\b", "..", "", "a\x00b"])
def test_create_keeps_the_run_inside_output_dir(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError, match="^name: "):
        RunDir.create(tmp_path / "out", name, {})
    assert not (tmp_path / "out").exists() and not (tmp_path / "escaped").exists()


def test_one_writer_per_run_and_a_killed_writer_does_not_block(tmp_path: Path) -> None:
    """A second writer is refused naming the holder's pid; the OS drops the lock of
    a process killed with SIGKILL, so the next writer goes ahead."""
    import os

    from helpers import run_lock_held_elsewhere

    run = RunDir.create(tmp_path, "exp", {})
    with run_lock_held_elsewhere(run.root) as pid:
        with pytest.raises(UserError, match=f"another nas command \\(pid {pid}\\) is "
                                            "writing this run"):
            with run.writing():
                pass
    with run.writing():  # stale lock: released with its process
        assert (run.root / ".lock").read_text() == str(os.getpid())
    with run.writing():  # and released again by the block's end
        pass
