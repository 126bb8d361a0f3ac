"""`nas netadapt` end to end on tiny synthetic data: start resolution, the files it
writes, bad inputs, kill -9 and resume, the search -> netadapt pipeline, Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from arch_fixtures import small_arch
from experiments import write_exp
from helpers import kill_once_logged
from nas.cli import main
from search_spaces.builder import build_model
from search_spaces.transforms import with_width_multiplier

NAS = str(Path(sys.executable).parent / "nas")

def the_run(folder: Path) -> Path:
    runs = sorted((folder / "shrink").iterdir())
    assert len(runs) == 1
    return runs[0]


def test_netadapt_from_a_folder_without_weights(tmp_path: Path) -> None:
    assert main(["netadapt", str(write_exp(tmp_path))]) == 0
    run = the_run(tmp_path)
    summary = json.loads((run / "netadapt" / "summary.json").read_text())
    assert summary["target_met"] and summary["final_ms"] <= summary["target_ms"]
    assert summary["delta_ms"] == pytest.approx(0.08 * summary["L0_ms"])
    history = pd.read_csv(run / "netadapt" / "history.csv")
    assert history["iteration"].max() == summary["iterations"] >= 1
    assert set(history.columns) >= {"iteration", "proposal", "layers", "width_before",
                                    "width_after", "latency_ms", "measured_ms", "accuracy",
                                    "metric", "chosen"}
    assert history["accuracy"].between(0, 1).all()
    for rel in ("iter_0/arch.json", "iter_0/weights.pt", "iter_1/arch.json",
                "iter_1/weights.pt", "final/arch.json", "final/weights.pt"):
        assert (run / "netadapt" / rel).is_file(), rel
    config = (run / "config.yaml").read_text()
    assert "- netadapt" in config and str(tmp_path / "net") in config  # absolute start


def test_weights_beside_the_arch_are_used_and_checked(tmp_path: Path) -> None:
    exp = write_exp(tmp_path)
    torch.save(build_model(small_arch()).state_dict(), tmp_path / "net" / "weights.pt")
    assert main(["netadapt", str(exp), "--set", "netadapt.target_ratio=0.9"]) == 0
    history = pd.read_csv(the_run(tmp_path) / "netadapt" / "history.csv")
    assert history["proposal"][0] == "start"


@pytest.mark.parametrize("case, expect", [
    ("missing", "netadapt.start: "),
    ("classes", "the network has 4 classes, the data 10"),
    ("corrupt", "weights.pt: not a readable weights file"),
    ("other_net", "weights.pt: key 'stem.0.weight' has shape"),
    ("no_section", "netadapt: missing required section"),
    ("two_targets", "netadapt: set exactly one of target_ms and target_ratio"),
    ("bad_kind", "netadapt.proposals[0]: 'width' is not one of expansion, bottleneck"),
])
def test_bad_input_exits_2_naming_the_key_and_leaves_no_run(tmp_path: Path, case: str,
                                                             expect: str) -> None:
    exp = write_exp(tmp_path)
    args = [NAS, "netadapt", str(exp)]
    if case == "missing":
        args += ["--set", "netadapt.start=nowhere/arch.json"]
    elif case == "classes":
        args += ["--set", "data.synthetic.num_classes=10"]
    elif case == "corrupt":
        (tmp_path / "net" / "weights.pt").write_bytes(b"not a checkpoint")
    elif case == "other_net":
        narrow = with_width_multiplier(small_arch(), 0.5)
        torch.save(build_model(narrow).state_dict(), tmp_path / "net" / "weights.pt")
    elif case == "no_section":
        exp.write_text(exp.read_text().split("netadapt:")[0] + "ray:\n  num_cpus: 2\n")
    elif case == "two_targets":
        args += ["--set", "netadapt.target_ms=1.0"]
    elif case == "bad_kind":
        args += ["--set", "netadapt.proposals=[width]"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], lines
    assert not (tmp_path / "shrink").exists()


@pytest.mark.slow
def test_kill_9_during_netadapt_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([NAS, "netadapt", str(write_exp(whole))], check=True, capture_output=True,
                   timeout=600)
    proc = subprocess.Popen([NAS, "netadapt", str(write_exp(killed))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kill inside iteration 2, once a proposal of it has finished
    kill_once_logged(proc, killed / "shrink", "*/netadapt/iter_2/proposals.csv", 2)
    run = the_run(killed)
    out = subprocess.run([NAS, "resume", str(run)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert "resuming after iteration 1" in out.stderr
    keys = ["iteration", "proposal", "width_after", "latency_ms", "accuracy", "chosen"]
    assert pd.read_csv(run / "netadapt" / "history.csv")[keys].equals(
        pd.read_csv(the_run(whole) / "netadapt" / "history.csv")[keys])


@pytest.mark.slow
def test_search_then_netadapt_in_one_run_on_ray(tmp_path: Path) -> None:
    exp = write_exp(tmp_path, executor="ray", extra="stages: [search, netadapt]\n")
    text = exp.read_text().replace("  start: net\n", "")  # start from the search's best
    exp.write_text(text)
    out = subprocess.run([NAS, "search", str(exp)], capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    run = the_run(tmp_path)
    assert (run / "search" / "best.json").is_file()
    summary = json.loads((run / "netadapt" / "summary.json").read_text())
    assert summary["status"] == "done"
    start = json.loads((run / "netadapt" / "iter_0" / "arch.json").read_text())
    assert start == json.loads((run / "search" / "best.json").read_text())
    assert "pre-training the starting network" in out.stderr


@pytest.mark.slow
def test_kill_9_during_the_search_of_a_pipeline_then_resume(tmp_path: Path) -> None:
    """search -> netadapt, killed in the search: the resumed run's trials.csv and
    history.csv equal an uninterrupted run's."""
    extra = "stages: [search, netadapt]\n"
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for folder in (whole, killed):
        exp = write_exp(folder, extra=extra)
        exp.write_text(exp.read_text().replace("  start: net\n", "")
                       .replace("num_trials: 2", "num_trials: 4"))
    subprocess.run([NAS, "search", str(whole / "shrink.yaml")], check=True,
                   capture_output=True, timeout=600)
    proc = subprocess.Popen([NAS, "search", str(killed / "shrink.yaml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_once_logged(proc, killed / "shrink", "*/search/trials.csv", 3)  # 2 trials
    run = the_run(killed)
    assert not (run / "netadapt").exists()
    out = subprocess.run([NAS, "resume", str(run)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    ref = the_run(whole)
    trial_keys = ["trial_id", "decisions", "arch_hash", "accuracy", "reward", "status"]
    assert pd.read_csv(run / "search" / "trials.csv")[trial_keys].equals(
        pd.read_csv(ref / "search" / "trials.csv")[trial_keys])
    keys = ["iteration", "proposal", "width_after", "latency_ms", "accuracy", "chosen"]
    assert pd.read_csv(run / "netadapt" / "history.csv")[keys].equals(
        pd.read_csv(ref / "netadapt" / "history.csv")[keys])
