"""`nas proxy-check`: rank correlations, the architectures it picks, the command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from nas.cli import main
from nas.stages.proxycheck import kendall_tau, spearman_rho, spread_over_latency
from search_spaces.counting import count
from search_spaces.factorized import make_space


def test_kendall_tau_b_and_spearman_by_hand() -> None:
    # 5 concordant pairs, 1 discordant: tau (5 - 1) / 6; rho 1 - 6 * 2 / (4 * 15)
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert spearman_rho([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # a tie in x: tau-b = (2 - 0) / sqrt((3 - 1) * 3)
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)
    assert math.isnan(kendall_tau([1], [2]))


def test_architectures_are_spread_over_the_latency_range() -> None:
    space = make_space("mobilenetv3", "mobilenetv3_small", 32, 1, 10)
    macs = lambda arch: count(arch)[1] / 1e6  # noqa: E731
    picked = spread_over_latency(space, macs, 6, 10, seed=0)
    lat = [macs(space.decode(v)) for v in picked]
    assert len(picked) == 6 and lat == sorted(lat)
    pool = [macs(space.decode(space.sample(__import__("random").Random(k))))
            for k in range(60)]
    assert lat[0] <= sorted(pool)[10] and lat[-1] >= sorted(pool)[-10]  # both ends reached
    assert picked == spread_over_latency(space, macs, 6, 10, seed=0)  # seeded


TINY = """
name: pc
seed: 0
search:
  space: mobilenetv3
  skeleton: mobilenetv3_small
  resolution: 16
  stem_stride: 1
  executor: inline
data:
  kind: synthetic
  synthetic: {train_size: 300, test_size: 50, image_size: 16}
  val_subset: 60
train:
  steps: 2
  batch_size: 16
  threads: 1
  eval_batch_size: 32
supernet:
  steps: 4
  bn_batches: 1
latency:
  kind: flops
proxy_check:
  archs: 4
  epochs: 0.2
"""


def test_the_command_scores_every_arch_with_every_evaluator_and_resumes(
        tmp_path: Path, capsys) -> None:
    exp = tmp_path / "pc.yaml"
    exp.write_text(TINY)
    assert main(["proxy-check", str(exp), "--archs", "3"]) == 0
    out = capsys.readouterr().out
    run = next((tmp_path / "pc_proxy_check").iterdir())
    frame = pd.read_csv(run / "proxy_check.csv")
    assert sorted(frame.groupby("evaluator").size().items()) == [
        ("long", 3), ("supernet", 3), ("train", 3)]
    summary = json.loads((run / "proxy_check.json").read_text())
    assert set(summary["evaluators"]) == {"train", "supernet"}
    assert "Kendall tau" in out and "supernet training" in out
    # a lost row is re-scored on resume, nothing else is
    lines = (run / "proxy_check.csv").read_text().splitlines()
    (run / "proxy_check.csv").write_text("\n".join(lines[:-1]) + "\n")
    assert main(["proxy-check", str(run)]) == 0
    err = capsys.readouterr().err
    assert err.count("proxy check: arch ") == 1
    assert len(pd.read_csv(run / "proxy_check.csv")) == 9
    assert main(["resume", str(run)]) == 2  # not a run of stages
    assert "nas proxy-check" in capsys.readouterr().err
