"""`search.evaluator: supernet` end to end on tiny synthetic data: the supernet trains
as one job, children are scored from it, the top ones are re-ranked by proxy
training, and a killed run resumes to the same result."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers import kill_once_logged
from nas.cli import main
from nas.config import load_config
from search_spaces.arch import load_arch
from search_spaces.builder import build_model
from search_spaces.infra.errors import UserError

NAS = str(Path(sys.executable).parent / "nas")

TINY = """
name: tiny
seed: 2
stages: {stages}
search:
  space: {space}
  skeleton: {skeleton}
  resolution: 16
  stem_stride: 1
  strategy: {strategy}
  num_trials: {trials}
  executor: inline
  evaluator: supernet
data:
  kind: synthetic
  synthetic: {{train_size: 300, test_size: 50, image_size: 16}}
  val_subset: 60
train:
  steps: 2
  batch_size: 16
  threads: 1
  eval_batch_size: 32
supernet:
  steps: {sn_steps}
  checkpoint_every: 2
  bn_batches: 2
  rerank_top_k: 2
latency:
  kind: flops
reward:
  target_ms: 2.0
controller:
  batch_size: 2
final:
  init: supernet
  steps: 2
"""


def write_exp(folder: Path, space="mobilenetv3", skeleton="mobilenetv3_small", trials=6,
              strategy="rl", sn_steps=6, stages="[search]") -> Path:
    path = folder / "tiny.yaml"
    path.write_text(TINY.format(space=space, skeleton=skeleton, trials=trials,
                                strategy=strategy, sn_steps=sn_steps, stages=stages))
    return path


def only_run(folder: Path) -> Path:
    runs = sorted((folder / "tiny").iterdir())
    assert len(runs) == 1
    return runs[0]


@pytest.mark.parametrize("space,skeleton", [("mobilenetv3", "mobilenetv3_small"),
                                            ("mnasnet", "a1")])
def test_children_are_scored_by_the_supernet_and_the_best_re_ranked(
        tmp_path: Path, capsys, space: str, skeleton: str) -> None:
    exp = write_exp(tmp_path, space, skeleton, stages="[search, final_train]")
    assert main(["search", str(exp)]) == 0
    err = capsys.readouterr().err
    run = only_run(tmp_path)
    trials = pd.read_csv(run / "search" / "trials.csv")
    assert len(trials) == 6 and set(trials["accuracy_source"]) == {"supernet"}
    assert err.count("] trial ") == 6 and "supernet: trained" in err
    assert (run / "search" / "supernet.pt").is_file()
    assert not (run / "search" / "supernet_checkpoint.pt").exists()
    rerank = pd.read_csv(run / "search" / "rerank.csv")
    ok = trials[trials["status"] == "ok"].sort_values("reward", ascending=False)
    assert list(rerank["trial_id"]) == list(ok.drop_duplicates("arch_hash")["trial_id"][:2])
    best = json.loads((run / "search" / "best_metrics.json").read_text())
    winner = rerank.loc[rerank["reward"].idxmax()]
    assert best["selected_by"] == "rerank" and best["trial_id"] == winner["trial_id"]
    assert best["accuracy"] == pytest.approx(winner["accuracy"])
    assert load_arch(run / "search" / "best.json").hash() == winner["arch_hash"]
    # final.init: supernet fine-tunes the winner from its inherited weights
    assert "from the weights it inherits from the supernet" in err
    assert json.loads((run / "final" / "metrics.json").read_text())["init"] == "supernet"


def test_an_exported_child_holds_the_weights_the_search_scored_it_with(
        tmp_path: Path, capsys) -> None:
    exp = write_exp(tmp_path, trials=3, strategy="random")
    assert main(["search", str(exp)]) == 0
    run = only_run(tmp_path)
    trials = pd.read_csv(run / "search" / "trials.csv")
    row = trials.iloc[1]
    out = tmp_path / "child"
    assert main(["export", str(run), "--child", str(row["trial_id"]), "-o", str(out)]) == 0
    arch = load_arch(out / "arch.json")
    assert arch.hash() == row["arch_hash"]
    model = build_model(arch)
    model.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
    from nas.data import load_data
    from nas.train import evaluate

    cfg = load_config(run / "config.yaml")
    splits = load_data(cfg.data, 16, cfg.source)
    assert evaluate(model, splits.val) == pytest.approx(row["accuracy"])
    # the same child by its decisions, as a JSON list of option indices
    again = tmp_path / "again"
    assert main(["export", str(run), "--child", row["decisions"], "-o", str(again)]) == 0
    a = torch.load(out / "weights.pt", weights_only=True)
    b = torch.load(again / "weights.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    assert main(["export", str(run), "--child", "[1, 2]", "-o", str(tmp_path / "x")]) == 2
    assert "option indices" in capsys.readouterr().err
    assert main(["export", str(run), "--child", "99", "-o", str(tmp_path / "x")]) == 2
    assert "no trial 99" in capsys.readouterr().err


def test_supernet_settings_are_checked_when_the_config_loads(tmp_path: Path) -> None:
    exp = write_exp(tmp_path)
    with pytest.raises(UserError, match="supernet: set epochs or steps, not both"):
        load_config(exp, ["supernet.epochs=2"])
    with pytest.raises(UserError, match="final.init: supernet"):
        load_config(exp, ["search.evaluator=train", "stages=[search, final_train]"])
    with pytest.raises(UserError, match="search.evaluator"):
        load_config(exp, ["search.evaluator=oneshot"])
    with pytest.raises(UserError, match="supernet.sampling"):
        load_config(exp, ["supernet.sampling=sandwiches"])
    with pytest.raises(UserError, match="supernet.random_children"):
        load_config(exp, ["supernet.sampling=sandwich", "supernet.random_children=-1"])


def test_a_sandwich_supernet_trains_and_scores_children(tmp_path: Path, capsys) -> None:
    exp = write_exp(tmp_path, trials=3, sn_steps=2)
    exp.write_text(exp.read_text().replace("  rerank_top_k: 2\n", "  rerank_top_k: 0\n"
                                           "  sampling: sandwich\n  random_children: 1\n"
                                           "  share_ops: true\n"))
    assert main(["search", str(exp)]) == 0
    err = capsys.readouterr().err
    assert "2 steps of the sandwich rule (largest, smallest and 1 random child a step; " \
           "in-place distillation), dsconv sharing mbconv's weights" in err
    run = only_run(tmp_path)
    state = torch.load(run / "search" / "supernet.pt", weights_only=True)
    assert int(state["sampled"]) == 2  # one count per step, not per child
    assert len(pd.read_csv(run / "search" / "trials.csv")) == 3


def test_a_second_search_scores_from_the_first_runs_supernet(tmp_path: Path, capsys) -> None:
    exp = write_exp(tmp_path, trials=3, strategy="random")
    assert main(["search", str(exp)]) == 0
    first = only_run(tmp_path)
    trials = pd.read_csv(first / "search" / "trials.csv")
    capsys.readouterr()
    # the same children scored from the reused supernet: the same accuracies, no training
    again = tmp_path / "again"
    again.mkdir()
    exp2 = write_exp(again, trials=3, strategy="random")
    assert main(["search", str(exp2), "--set", f"search.supernet={first}"]) == 0
    err = capsys.readouterr().err
    assert "supernet: reusing" in err and "supernet: training" not in err
    second = only_run(again)
    assert (second / "search" / "supernet.pt").read_bytes() == \
        (first / "search" / "supernet.pt").read_bytes()
    pd.testing.assert_series_equal(pd.read_csv(second / "search" / "trials.csv")["accuracy"],
                                   trials["accuracy"])
    # a supernet of another space, a missing one, or one the evaluator cannot use: refused
    (tmp_path / "x").mkdir()
    other = write_exp(tmp_path / "x", space="mnasnet", skeleton="a1")
    assert main(["search", str(other), "--set", f"search.supernet={first}"]) == 2
    assert "supernet.pt" in capsys.readouterr().err
    (tmp_path / "y").mkdir()  # the same space, its dsconv weights held apart: refused
    shared = write_exp(tmp_path / "y", trials=3, strategy="random")
    assert main(["search", str(shared), "--set", f"search.supernet={first}",
                 "--set", "supernet.share_ops=true"]) == 2
    assert "with supernet.share_ops: true" in capsys.readouterr().err
    with pytest.raises(UserError, match="search.supernet: .* does not exist"):
        load_config(exp, [f"search.supernet={tmp_path / 'none.pt'}"])
    with pytest.raises(UserError, match="search.supernet: only the supernet evaluator"):
        load_config(exp, ["search.evaluator=train", f"search.supernet={first}"])


def _supernet_checkpoint(folder: Path) -> bool:
    return any(folder.glob("tiny/*/search/supernet_checkpoint.pt"))


@pytest.mark.slow
def test_kill_9_in_the_supernet_training_and_in_the_search_then_resume(tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir()
    killed.mkdir()
    kwargs = dict(trials=8, sn_steps=40)
    subprocess.run([NAS, "search", str(write_exp(whole, **kwargs))], check=True,
                   capture_output=True, timeout=600)
    # 1. killed while the supernet trains (it has checkpointed at least once)
    proc = subprocess.Popen([NAS, "search", str(write_exp(killed, **kwargs))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not _supernet_checkpoint(killed) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    run = only_run(killed)
    assert not (run / "search" / "supernet.pt").exists()
    # 2. resumed, and killed again once the search against it has logged a few children
    proc = subprocess.Popen([NAS, "resume", str(run)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    kill_once_logged(proc, run, "search/trials.csv", 4)
    assert "continuing from its checkpoint" in proc.stderr.read()
    # 3. resumed to the end
    out = subprocess.run([NAS, "resume", str(run)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    ref = only_run(whole)
    a = torch.load(ref / "search" / "supernet.pt", weights_only=True)
    b = torch.load(run / "search" / "supernet.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    keys = ["trial_id", "decisions", "arch_hash", "accuracy", "reward", "status"]
    for log in ("trials.csv", "rerank.csv"):
        got = pd.read_csv(run / "search" / log)
        want = pd.read_csv(ref / "search" / log)
        cols = [k for k in keys if k in want.columns]
        assert got[cols].equals(want[cols]), log


@pytest.mark.slow
def test_on_ray_the_supernet_trains_as_one_trial_and_children_score_in_the_driver(
        tmp_path: Path) -> None:
    exp = write_exp(tmp_path, trials=4)
    exp.write_text(exp.read_text().replace("executor: inline", "executor: ray")
                   + "ray:\n  cpus_per_trial: 1\n  num_cpus: 2\n")
    out = subprocess.run([NAS, "search", str(exp)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    run = only_run(tmp_path)
    assert (run / "search" / "supernet.pt").is_file()
    trials = pd.read_csv(run / "search" / "trials.csv")
    assert len(trials) == 4 and set(trials["accuracy_source"]) == {"supernet"}
    assert len(pd.read_csv(run / "search" / "rerank.csv")) == 2
    experiments = {p.name.split("_")[1] for p in (run / "ray").iterdir() if p.is_dir()}
    # the training ran as a Tune experiment of its own, the re-ranking as another
    assert experiments == {"supernet", "rerank"}
