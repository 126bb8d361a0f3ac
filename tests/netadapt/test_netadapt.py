"""NetAdapt's algorithm: proposals, the delta rule, the metric, the loop and resume.

The fine-tune step here is a fake (no training): accuracy is a fixed function of the
architecture, so the loop's choices can be checked by hand and run in milliseconds.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from arch_fixtures import small_arch
from latency.shrink import set_expansion
from netadapt.config import NetAdaptConfig
from netadapt.loop import NetAdapt, NetAdaptFailed
from netadapt.proposals import choose, make_proposals, narrower_widths, score
from search_spaces.arch import Arch, load_arch
from search_spaces.builder import build_model
from search_spaces.channels import STEM, residual_groups
from search_spaces.counting import count
from search_spaces.infra.errors import UserError
from search_spaces.infra.jobs import Job, JobResult, inline_executor
from search_spaces.infra.weights import read_weights, write_weights


def macs_ms(arch: Arch) -> float:
    """A deterministic latency model: 1 ms per million MACs."""
    return count(arch)[1] / 1e6


def test_residual_group_spans_several_blocks() -> None:
    assert residual_groups(small_arch()) == [[STEM], [0, 1, 2], [3]]


def test_narrower_widths() -> None:
    assert narrower_widths(72, 8, 8) == [64, 56, 48, 40, 32, 24, 16, 8]
    assert narrower_widths(88, 16, 16) == [80, 64, 48, 32, 16]  # multiples of the step
    assert narrower_widths(20, 8, 16) == [16]
    assert narrower_widths(8, 8, 8) == []


def test_each_proposal_is_the_smallest_cut_that_saves_delta() -> None:
    arch = small_arch()
    base = macs_ms(arch)
    delta = 0.01 * base
    props, skipped = make_proposals(arch, macs_ms, delta, ["expansion", "bottleneck"], 8, 8)
    names = [p.name for p in props] + [s.partition(":")[0] for s in skipped]
    # every expansion layer and every residual group is a candidate, exactly once
    assert sorted(names) == sorted([f"expansion/{i}" for i in range(4)] +
                                   [f"bottleneck/{g}" for g in range(3)])
    for p in props:
        assert base - p.latency_ms >= delta
        assert p.latency_ms == pytest.approx(macs_ms(p.arch))
        assert p.width_after % 8 == 0 and p.width_after < p.width_before
        wider = p.width_after + 8
        if p.kind == "expansion" and wider < p.width_before:
            # one step wider would not have saved delta: this is the smallest cut
            assert base - macs_ms(set_expansion(arch, p.nodes[0], wider)) < delta
    group = next(p for p in props if p.name == "bottleneck/1")
    assert group.nodes == (0, 1, 2)
    layers = group.arch.layers
    assert layers[0].out_ch == layers[1].out_ch == layers[2].out_ch == group.width_after
    assert layers[1].in_ch == layers[2].in_ch == layers[3].in_ch == group.width_after
    assert layers[0].in_ch == 16  # the stem's group is untouched
    # the SE follows the expansion by the net's rule (1/4 of the expansion, to 8)
    exp1 = next(p for p in props if p.name == "expansion/1")
    assert exp1.arch.layers[1].se_ch == min(exp1.arch.se.squeeze(24, exp1.width_after), 24)
    build_model(group.arch)(torch.zeros(1, 3, 16, 16))  # still a valid network


def test_candidate_that_cannot_save_delta_is_skipped_with_a_reason() -> None:
    arch = small_arch()
    huge = macs_ms(arch) * 0.5  # no single cut saves half the network
    props, skipped = make_proposals(arch, macs_ms, huge, ["expansion"], 8, 8)
    assert props == [] and len(skipped) == 4
    assert all("< delta" in s for s in skipped)
    props, skipped = make_proposals(arch, macs_ms, 1e-9, ["bottleneck"], 8, 24)
    assert any("at the minimum" in s for s in skipped)  # 24-wide group, min 24
    assert all(p.kind == "bottleneck" for p in props)


def test_metric_against_hand_computed_values() -> None:
    # MobileNetV3: dAcc / |dLatency|: losing 0.02 for 0.5 ms beats losing 0.01 for 0.1 ms
    a = score("acc_per_latency", 0.70, 0.72, 9.5, 10.0)
    b = score("acc_per_latency", 0.71, 0.72, 9.9, 10.0)
    assert a == pytest.approx(-0.04) and b == pytest.approx(-0.1)
    assert choose([a, b]) == 0
    # NetAdapt's original: the most accurate proposal
    assert choose([score("max_acc", 0.70, 0.72, 9.5, 10.0),
                   score("max_acc", 0.71, 0.72, 9.9, 10.0)]) == 1
    assert choose([None, -0.2, None, -0.1]) == 3  # failed proposals are passed over
    assert choose([None, None]) is None
    assert choose([0.1, 0.1]) == 0  # ties: the first


def test_config_needs_at_most_one_target_and_one_to_run() -> None:
    with pytest.raises(UserError, match="set target_ms or target_ratio"):
        NetAdaptConfig().target(8.0)  # an experiment fills in reward.target_ms first
    with pytest.raises(UserError, match="exactly one"):
        NetAdaptConfig(target_ms=1.0, target_ratio=0.5)
    assert NetAdaptConfig(target_ratio=0.5).target(8.0) == 4.0


# ---------------------------------------------------------------- the loop


class FakeStep:
    """'Training' that copies the weights and scores an Arch by a fixed rule: wider
    expansions in layer 1 matter most, so the choices are predictable."""

    def __init__(self, fail: set[str] | None = None, crash_after: int | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail or set()
        self.crash_after = crash_after

    def __call__(self, job: Job) -> JobResult:
        if self.crash_after is not None and len(self.calls) >= self.crash_after:
            raise KeyboardInterrupt  # a kill in the middle of an iteration
        self.calls.append(job.name)
        if job.name.split("/", 1)[-1] in self.fail:
            return JobResult(None, "loss became nan at step 3")
        if job.weights is None:
            state = build_model(job.arch).state_dict()
        else:
            state = read_weights(job.weights, job.arch)
        if job.out is not None:
            write_weights(state, job.out)
        a = job.arch
        acc = 0.5 + 0.001 * (a.layers[1].exp_ch or 0) + 0.0001 * sum(l.out_ch for l in a.layers)
        return JobResult(round(acc, 6), "", 0.01)


def run_loop(folder: Path, step: FakeStep, **cfg: object) -> object:
    config = NetAdaptConfig(**{"target_ratio": 0.7, "delta_ratio": 0.05,
                               "short_term_steps": 5, "long_term_epochs": 0, **cfg})
    loop = NetAdapt(config, macs_ms, inline_executor(step), folder, seed=3, log=lambda m: None)
    return loop.run(small_arch(), None)


def read_history(folder: Path) -> list[dict[str, str]]:
    with open(folder / "history.csv") as fh:
        return list(csv.DictReader(fh))


def test_loop_reaches_the_target_and_writes_its_files(tmp_path: Path) -> None:
    result = run_loop(tmp_path, FakeStep())
    assert result.target_met and result.latency_ms <= result.target_ms
    assert result.target_ms == pytest.approx(0.7 * result.start_ms)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["L0_ms"] == pytest.approx(result.start_ms)
    assert summary["delta_ms"] == pytest.approx(0.05 * result.start_ms)
    assert summary["status"] == "done" and summary["iterations"] == result.iterations >= 2
    rows = read_history(tmp_path)
    assert rows[0]["proposal"] == "start"
    prev_ms = result.start_ms
    for k in range(1, result.iterations + 1):
        it = [r for r in rows if int(r["iteration"]) == k]
        chosen = [r for r in it if r["chosen"] == "1"]
        assert len(chosen) == 1
        # chosen = best dAcc / |dLatency| among this iteration's proposals
        best = max(it, key=lambda r: float(r["metric"]))
        assert chosen[0]["proposal"] == best["proposal"]
        for r in it:
            assert float(r["latency_drop_ms"]) >= summary["delta_ms"] - 1e-12
            assert float(r["latency_ms"]) == pytest.approx(prev_ms - float(r["latency_drop_ms"]))
        prev_ms = float(chosen[0]["latency_ms"])
        folder = tmp_path / f"iter_{k}"
        read_weights(folder / "weights.pt", load_arch(folder / "arch.json"))
        assert not (folder / "proposals").exists()  # cleaned up
    final = tmp_path / "final"
    model = build_model(load_arch(final / "arch.json"))
    model.load_state_dict(read_weights(final / "weights.pt"))  # every artefact loads
    assert json.loads((final / "metrics.json").read_text())["iteration"] == result.iterations


def test_expansion_of_layer_1_is_kept_last(tmp_path: Path) -> None:
    """The fake accuracy punishes shrinking layer 1's expansion most, so the metric
    never picks it while other proposals exist."""
    run_loop(tmp_path, FakeStep())
    chosen = [r["proposal"] for r in read_history(tmp_path) if r["chosen"] == "1"][1:]
    assert "expansion/1" not in chosen


def test_max_acc_metric_picks_the_most_accurate(tmp_path: Path) -> None:
    run_loop(tmp_path, FakeStep(), metric="max_acc")
    rows = read_history(tmp_path)
    for k in {int(r["iteration"]) for r in rows} - {0}:
        it = [r for r in rows if int(r["iteration"]) == k]
        top = max(float(r["accuracy"]) for r in it)
        assert float(next(r for r in it if r["chosen"] == "1")["accuracy"]) == top


def test_failed_proposal_is_recorded_and_the_loop_goes_on(tmp_path: Path) -> None:
    result = run_loop(tmp_path, FakeStep(fail={"bottleneck/1"}))
    assert result.target_met
    bad = [r for r in read_history(tmp_path) if r["proposal"] == "bottleneck/1"]
    assert bad and all(r["error"] == "loss became nan at step 3" and r["chosen"] == "0"
                       and r["accuracy"] == "" for r in bad)


def test_every_proposal_failing_stops_with_netadaptfailed(tmp_path: Path) -> None:
    names = {f"expansion/{i}" for i in range(4)} | {f"bottleneck/{g}" for g in range(3)}
    with pytest.raises(NetAdaptFailed, match="every proposal of iteration 1 failed"):
        run_loop(tmp_path, FakeStep(fail=names))


def test_unreachable_target_stops_and_says_so(tmp_path: Path) -> None:
    result = run_loop(tmp_path, FakeStep(), target_ratio=0.05)
    assert not result.target_met
    assert json.loads((tmp_path / "summary.json").read_text())["target_met"] is False
    assert (tmp_path / "final" / "weights.pt").is_file()


@pytest.mark.parametrize("crash_after", [0, 1, 4, 9, 17])
def test_killed_loop_resumes_to_the_same_history(tmp_path: Path, crash_after: int) -> None:
    whole = FakeStep()
    run_loop(tmp_path / "whole", whole)
    first = FakeStep(crash_after=crash_after)
    with pytest.raises(KeyboardInterrupt):
        run_loop(tmp_path / "cut", first)
    second = FakeStep()
    run_loop(tmp_path / "cut", second)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]
    assert strip(read_history(tmp_path / "cut")) == strip(read_history(tmp_path / "whole"))
    # nothing finished before the kill was trained again
    assert not set(first.calls) & set(second.calls)
    assert len(first.calls) + len(second.calls) == len(whole.calls)
