"""`nas proxy-check`: rank correlations, the architectures it picks, the command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from nas.cli import main
from nas.stages.proxycheck import (kendall_tau, reference_seed, spearman_rho,
                                   spread_over_latency, summarise, tau_interval)
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


def test_the_bootstrap_interval_holds_the_tau_and_narrows_with_agreement() -> None:
    x = list(range(30))
    assert tau_interval(x, x, 200) == [1.0, 1.0]  # every resample agrees perfectly
    noisy = [v + 8 * ((v * 7) % 5 - 2) for v in x]  # a ranking that mostly agrees
    lo, hi = tau_interval(x, noisy, 500, seed=1)
    assert lo < kendall_tau(x, noisy) < hi and hi - lo > 0.05
    assert tau_interval(x, noisy, 500, seed=1) == [lo, hi]  # seeded
    assert all(math.isnan(v) for v in tau_interval(x, noisy, 0))  # off
    assert all(math.isnan(v) for v in tau_interval([1, 2], [2, 1], 100))  # too few


def test_the_second_reference_seeds_differ_from_the_first_and_from_each_other() -> None:
    from nas.search.core import trial_seed
    assert reference_seed(0, 3, 1) == trial_seed(0, 3)  # checks made before: unchanged
    seeds = {reference_seed(0, i, k) for i in range(5) for k in (1, 2, 3)}
    assert len(seeds) == 15


def _frame(rows: dict[str, list[float]], latency: list[float]) -> pd.DataFrame:
    return pd.DataFrame([{"index": i, "latency_ms": latency[i], "evaluator": name,
                          "accuracy": acc, "wall_s": 1.0, "error": None}
                         for name, accs in rows.items() for i, acc in enumerate(accs)])


def test_the_summary_gives_the_ceiling_the_band_and_each_share_of_the_ceiling() -> None:
    long = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    long_2 = [0.1, 0.3, 0.2, 0.4, 0.5, 0.6, 0.8, 0.7]  # 2 swaps: tau (28 - 4) / 28
    train = [0.2, 0.1, 0.4, 0.3, 0.6, 0.5, 0.8, 0.7]  # 4 swaps: tau (28 - 8) / 28
    latency = [1, 2, 3, 4, 5, 6, 7, 8]
    out = summarise(_frame({"long": long, "long_2": long_2, "train": train}, latency),
                    band=(2.5, 6.5), resamples=100)
    assert out["ceiling"]["kendall_tau"] == pytest.approx(24 / 28)
    entry = out["evaluators"]["train"]
    assert set(out["evaluators"]) == {"train"}  # the second reference is no evaluator
    assert entry["kendall_tau"] == pytest.approx(20 / 28)
    assert entry["of_ceiling"] == pytest.approx(20 / 24)
    lo, hi = entry["tau_ci95"]
    assert lo <= entry["kendall_tau"] <= hi
    # inside the band: archs 2-5, long 0.3-0.6, train 0.4, 0.3, 0.6, 0.5: 4 of 6 pairs
    assert entry["band"]["archs"] == 4
    assert entry["band"]["kendall_tau"] == pytest.approx((4 - 2) / 6)
    assert out["band_ms"] == [2.5, 6.5]
    narrow = summarise(_frame({"long": long, "train": train}, latency), band=(2.5, 4.5))
    assert narrow["evaluators"]["train"]["band"] == {"archs": 2}  # too few for a tau
    assert "ceiling" not in narrow and "of_ceiling" not in narrow["evaluators"]["train"]
    reversed_ = summarise(_frame({"long": long, "long_2": long[::-1], "train": train}, latency))
    assert reversed_["ceiling"]["kendall_tau"] == -1  # no ceiling to take a share of
    assert "of_ceiling" not in reversed_["evaluators"]["train"]


def test_more_architectures_are_drawn_inside_the_band() -> None:
    space = make_space("mobilenetv3", "mobilenetv3_small", 32, 1, 10)
    macs = lambda arch: count(arch)[1] / 1e6  # noqa: E731
    plain = spread_over_latency(space, macs, 6, 10, seed=0)
    lat = sorted(macs(space.decode(v)) for v in plain)
    band = (lat[2], lat[3])
    picked = spread_over_latency(space, macs, 6, 10, seed=0, band=band, band_archs=5)
    assert picked[:6] == plain  # the spread does not depend on the band
    extra = [macs(space.decode(v)) for v in picked[6:]]
    assert len(extra) == 5 and all(band[0] <= m <= band[1] for m in extra)
    hashes = {space.decode(v).hash() for v in picked}
    assert len(hashes) == 11  # distinct


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


def test_two_reference_seeds_give_the_ceiling_and_the_band_its_architectures(
        tmp_path: Path, capsys) -> None:
    exp = tmp_path / "pc.yaml"
    exp.write_text(TINY.replace("  archs: 4\n", "  archs: 4\n  reference_seeds: 2\n"
                                "  band_archs: 2\n  band: 0.5\n  evaluators: [train]\n")
                   + "reward:\n  target_ratio: 0.8\n")
    assert main(["proxy-check", str(exp)]) == 0
    out, err = capsys.readouterr()
    run = next((tmp_path / "pc_proxy_check").iterdir())
    frame = pd.read_csv(run / "proxy_check.csv")
    assert sorted(frame.groupby("evaluator").size().items()) == [
        ("long", 6), ("long_2", 6), ("train", 6)]
    summary = json.loads((run / "proxy_check.json").read_text())
    assert summary["reference_seeds"] == 2 and "ceiling" in summary
    lo, hi = summary["band_ms"]
    assert lo == pytest.approx(summary["target_ms"] * 0.5)
    assert ((frame["latency_ms"] >= lo) & (frame["latency_ms"] <= hi)).sum() >= 2 * 3
    assert out.splitlines()[1].startswith("ceiling") and "inside the band" in err


def test_band_architectures_without_a_target_are_refused(tmp_path: Path, capsys) -> None:
    exp = tmp_path / "pc.yaml"
    exp.write_text(TINY.replace("  archs: 4\n", "  archs: 4\n  band_archs: 2\n"))
    assert main(["proxy-check", str(exp)]) == 2
    err = capsys.readouterr().err
    assert "proxy_check.band_archs" in err and "pc.yaml" in err and len(err.splitlines()) == 1


def test_references_are_copied_from_another_check_of_the_same_setup(
        tmp_path: Path, capsys) -> None:
    first = tmp_path / "pc.yaml"
    first.write_text(TINY.replace("  archs: 4\n", "  archs: 3\n  evaluators: [train]\n"))
    assert main(["proxy-check", str(first)]) == 0
    source = next((tmp_path / "pc_proxy_check").iterdir())
    # one reference lost from the first check: trained here, the other two copied
    lines = (source / "proxy_check.csv").read_text().splitlines()
    (source / "proxy_check.csv").write_text("\n".join(lines[:-1]) + "\n")
    old = pd.read_csv(source / "proxy_check.csv")
    old = old[old["evaluator"] == "long"]
    second = tmp_path / "b.yaml"
    second.write_text(TINY.replace("name: pc", "name: b").replace(
        "  archs: 4\n", f"  archs: 3\n  evaluators: [supernet]\n  references: {source}\n"))
    capsys.readouterr()
    assert main(["proxy-check", str(second)]) == 0
    err = capsys.readouterr().err
    run = next((tmp_path / "b_proxy_check").iterdir())
    new = pd.read_csv(run / "proxy_check.csv")
    long = new[new["evaluator"] == "long"]
    assert len(long) == 3 and "2 stand-alone trainings copied" in err
    assert err.count(" long: ") == 1  # the lost one, trained here
    copied = long.set_index("arch_hash").loc[old["arch_hash"]]
    assert copied["accuracy"].tolist() == old["accuracy"].tolist()
    assert main(["proxy-check", str(run)]) == 0  # resumed: nothing copied twice
    assert len(pd.read_csv(run / "proxy_check.csv")) == len(new)
    # the evaluators may score on more validation images than the references were
    fourth = tmp_path / "d.yaml"
    fourth.write_text(TINY.replace("name: pc", "name: d").replace("  val_subset: 60", "").replace(
        "  archs: 4\n", f"  archs: 3\n  evaluators: [train]\n  references: {source}\n"))
    capsys.readouterr()
    assert main(["proxy-check", str(fourth)]) == 0
    assert "scored on val_subset 60, this check's evaluators on None" in capsys.readouterr().err
    capsys.readouterr()
    # references trained differently are refused before anything is written, naming the key
    third = tmp_path / "c.yaml"
    third.write_text(TINY.replace("name: pc", "name: c").replace("  epochs: 0.2\n", f"  epochs: 0.3\n  references: {source}\n"))
    assert main(["proxy-check", str(third)]) == 2
    err = capsys.readouterr().err
    assert "proxy_check.references" in err and "proxy_check.epochs" in err \
        and "c.yaml" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "c_proxy_check").exists()
