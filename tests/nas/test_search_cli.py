"""`nas search` / `resume` / `results` end to end on tiny synthetic data."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import kill_once_logged, strict_json
from nas.cli import main
from nas.raytune import session_pids

NAS = str(Path(sys.executable).parent / "nas")

TINY = """
name: tiny
seed: 3
search:
  space: mobilenetv3
  skeleton: mobilenetv3_small
  resolution: 16
  stem_stride: 1
  strategy: {strategy}
  num_trials: {trials}
  executor: {executor}
  max_failed_trials: 2
data:
  kind: synthetic
  synthetic: {{train_size: 300, test_size: 50, image_size: 16}}
  val_subset: 60
train:
  steps: 2
  batch_size: 16
  threads: 1
  bn_recalibration: 1
latency:
  kind: flops
reward:
  target_ms: 2.0
controller:
  batch_size: 2
ray:
  cpus_per_trial: 1
  num_cpus: 2
"""


def write_exp(tmp_path: Path, trials=6, executor="inline", strategy="rl", extra="") -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(trials=trials, executor=executor, strategy=strategy) + extra)
    return path


def only_run(tmp_path: Path) -> Path:
    runs = sorted((tmp_path / "tiny").iterdir())
    assert len(runs) == 1
    return runs[0]


def env() -> dict:
    return dict(os.environ)  # conftest gives the tests their own timing lock


def test_inline_search_and_results(tmp_path, capsys):
    exp = write_exp(tmp_path, trials=4)
    assert main(["search", str(exp)]) == 0
    run = only_run(tmp_path)
    for rel in ("config.yaml", "search/trials.csv", "search/best.json", "search/pareto.csv",
                "search/controller.pt"):
        assert (run / rel).is_file(), rel
    frame = pd.read_csv(run / "search" / "trials.csv")
    assert len(frame) == 4 and set(frame["status"]) <= {"ok", "cached"}
    assert frame["accuracy"].between(0, 1).all()
    capsys.readouterr()
    assert main(["results", str(run), "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4
    assert main(["results", str(run), "--pareto"]) == 0
    assert "latency_ms" in capsys.readouterr().out


def test_dry_run_writes_nothing(tmp_path, capsys):
    exp = write_exp(tmp_path)
    assert main(["search", str(exp), "--dry-run", "--set", "search.num_trials=9"]) == 0
    out = capsys.readouterr().out
    assert "num_trials: 9" in out and "distinct architectures" in out
    assert "a sampled child" in out and "(flops)" in out
    assert not (tmp_path / "tiny").exists()


def test_bad_input_leaves_no_run(tmp_path):
    exp = write_exp(tmp_path, extra="reward:\n  target_ms: -1\n")
    out = subprocess.run([NAS, "search", str(exp)], capture_output=True, text=True, env=env())
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "tiny").exists()
    exp = write_exp(tmp_path)
    out = subprocess.run([NAS, "search", str(exp), "--set", "data.kind=npz"],
                         capture_output=True, text=True, env=env())
    assert out.returncode == 2 and "data.path" in out.stderr
    assert not (tmp_path / "tiny").exists()


def test_nan_trials_fail_the_search_goes_on_and_ends_non_zero(tmp_path):
    """Each diverged child fails alone; a search where every child failed exits 1
    (nothing to hand on), and its results are still valid JSON (null accuracy)."""
    exp = write_exp(tmp_path, trials=3, strategy="random")
    out = subprocess.run([NAS, "search", str(exp), "--set", "train.lr=1e30",
                          "--set", "search.max_failed_trials=5"],
                         capture_output=True, text=True, env=env(), timeout=300)
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith(
        "nas: search stopped: every one of the 3 trials failed; last error: ")
    frame = pd.read_csv(only_run(tmp_path) / "search" / "trials.csv")
    assert len(frame) == 3 and (frame["status"] == "failed").all()
    assert frame["error"].str.contains("nan|inf", case=False).all()
    res = subprocess.run([NAS, "results", str(only_run(tmp_path)), "--format", "json"],
                         capture_output=True, text=True, env=env(), timeout=300)
    records = strict_json(res.stdout)
    assert len(records) == 3 and all(r["accuracy"] is None for r in records)


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path):
    whole_dir, killed_dir = tmp_path / "whole", tmp_path / "killed"
    whole_dir.mkdir()
    killed_dir.mkdir()
    trials = 8
    subprocess.run([NAS, "search", str(write_exp(whole_dir, trials=trials))], check=True,
                   capture_output=True, env=env(), timeout=600)
    proc = subprocess.Popen([NAS, "search", str(write_exp(killed_dir, trials=trials))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    # kill once a few trials are logged
    log = kill_once_logged(proc, killed_dir / "tiny", "*/search/trials.csv", 4)
    done = pd.read_csv(log)
    assert 3 <= len(done) < trials
    out = subprocess.run([NAS, "resume", str(log.parent.parent)], capture_output=True,
                         text=True, env=env(), timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"resuming: {len(done)} trials" in out.stderr
    keys = ["trial_id", "decisions", "arch_hash", "accuracy", "reward", "status"]
    resumed = pd.read_csv(log)[keys]
    whole = pd.read_csv(only_run(whole_dir) / "search" / "trials.csv")[keys]
    assert resumed.equals(whole)


@pytest.mark.slow
def test_ray_executor(tmp_path):
    exp = write_exp(tmp_path, trials=4, executor="ray", strategy="evolution")
    out = subprocess.run([NAS, "search", str(exp)], capture_output=True, text=True,
                         env=env(), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    frame = pd.read_csv(only_run(tmp_path) / "search" / "trials.csv")
    assert sorted(frame["trial_id"]) == [0, 1, 2, 3]
    assert set(frame["status"]) <= {"ok", "cached"}
    assert out.stderr.count("] trial ") == 4


def test_too_many_failures_stop_with_one_line(tmp_path):
    exp = write_exp(tmp_path, trials=3, strategy="random")
    out = subprocess.run([NAS, "search", str(exp), "--set", "train.lr=1e30",
                          "--set", "search.max_failed_trials=0"],
                         capture_output=True, text=True, env=env(), timeout=300)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("nas: search stopped: 1 trials failed") and "Traceback" not in out.stderr
    assert len(pd.read_csv(only_run(tmp_path) / "search" / "trials.csv")) == 1


@pytest.mark.slow
def test_kill_9_then_resume_on_ray_equals_an_uninterrupted_run(tmp_path):
    """Two trials side by side (their results arrive in any order): the resumed run
    asks and tells what the uninterrupted one does, and the killed driver's Ray
    processes are gone once the resume has finished."""
    trials = 6
    whole_dir, killed_dir = tmp_path / "whole", tmp_path / "killed"
    whole_dir.mkdir()
    killed_dir.mkdir()
    subprocess.run([NAS, "search", str(write_exp(whole_dir, trials, "ray"))],
                   check=True, capture_output=True, env=env(), timeout=600)
    proc = subprocess.Popen([NAS, "search", str(write_exp(killed_dir, trials, "ray"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    log = kill_once_logged(proc, killed_dir / "tiny", "*/search/trials.csv", 3)
    before = pd.read_csv(log)
    session = json.loads((log.parent.parent / "ray" / "driver.json").read_text())["session"]
    assert session_pids(session)  # the kill left Ray's agents behind: the check can see them
    out = subprocess.run([NAS, "resume", str(log.parent.parent)], capture_output=True,
                         text=True, env=env(), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    after = pd.read_csv(log)
    assert sorted(after["trial_id"]) == list(range(trials))  # none lost, none twice
    assert after.head(len(before)).equals(before)  # finished trials kept as they were
    keys = ["trial_id", "asked", "decisions", "arch_hash", "accuracy", "reward", "status"]
    whole = pd.read_csv(only_run(whole_dir) / "search" / "trials.csv")
    assert after[keys].equals(whole[keys])
    assert session_pids(session) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_is_one_line_and_the_run_resumes(tmp_path, signum):
    """Ctrl-C (or SIGTERM) mid-search: exit 130, one line naming how to continue, no
    traceback, no half-written file; `nas resume` then finishes the run."""
    # A suite started in the background (`make test &`) inherits an ignored SIGINT,
    # which Python keeps: the command gets Ctrl-C's default back, as in a terminal.
    proc = subprocess.Popen([NAS, "search", str(write_exp(tmp_path, trials=10))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env(), preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                       signal.SIG_DFL))
    deadline = time.monotonic() + 300
    trials = None
    while proc.poll() is None and time.monotonic() < deadline:
        found = list((tmp_path / "tiny").glob("*/search/trials.csv"))
        if found and len(found[0].read_text().splitlines()) >= 3:
            trials = found[0]
            break
        time.sleep(0.05)
    assert trials is not None and proc.poll() is None, "the search ended before the signal"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    run = trials.parent.parent
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == f"nas: interrupted; continue with: nas resume {run}"
    assert "Traceback" not in err
    assert not list(run.rglob(".*.tmp"))
    out = subprocess.run([NAS, "resume", str(run)], capture_output=True, text=True,
                         env=env(), timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(pd.read_csv(trials)) == 10
