"""`latency: {kind: table, build: if_missing}`: the table built here on the first run,
reused after, extended for a changed experiment, and a foreign table refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from latency.profiler import Coverage
from latency.table import LatencyTable
from nas.cli import main
from nas.config import build_space, load_config
from nas.coverage import experiment_signatures
from nas.experiment import open_experiment
from nas.tables import experiment_plans

NAS = str(Path(sys.executable).parent / "nas")

EXP = """
name: tb
seed: 0
stages: [search]
search: {{space: mobilenetv3, skeleton: mobilenetv3_small, resolution: 16, stem_stride: 1,
          strategy: random, num_trials: 2, executor: inline}}
data: {{kind: synthetic, synthetic: {{train_size: 100, test_size: 20, image_size: 16}},
        val_subset: 20}}
train: {{steps: 1, batch_size: 16, threads: 1}}
latency: {{kind: table, path: {table}, build: if_missing, policy: interpolate,
           repeats: 1, warmup: 0}}
reward: {{target_ms: 2.0}}
"""


@pytest.mark.slow
def test_built_on_the_first_run_reused_after_and_a_foreign_table_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    table = tmp_path / "tables" / "here.csv"
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXP.format(table=table))

    assert main(["validate", str(exp)]) == 0  # a preview times nothing
    assert f"latency: build {table} on this machine: " in capsys.readouterr().out
    assert not table.exists()
    assert main(["search", str(exp), "--dry-run"]) == 0
    assert "latency: once the table is built" in capsys.readouterr().out
    assert not table.exists()

    first = subprocess.run([NAS, "search", str(exp)], capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stderr.index(f"latency: build {table}") < first.stderr.index(
        "run directory:")  # built before the run exists
    assert "[latency build] " in first.stderr
    built = LatencyTable.load(table)
    assert built.calibration is not None and built.meta["resolution"] == "16"
    rows = len(built)

    second = subprocess.run([NAS, "search", str(exp)], capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "latency build" not in second.stderr and "latency: build" not in second.stderr
    assert len(LatencyTable.load(table)) == rows
    assert main(["validate", str(exp)]) == 0
    assert "built on this machine, covers the experiment" in capsys.readouterr().out

    # a changed experiment (NetAdapt from a named start, with its shrink grids): the
    # operators it adds are planned on top of the table built here
    grown = tmp_path / "grown.yaml"
    grown.write_text(exp.read_text().replace("stages: [search]", "stages: [search, netadapt]")
                     + "netadapt: {start: mobilenet_v3_small, target_ratio: 0.8}\n")
    assert main(["validate", str(grown)]) == 0
    out = capsys.readouterr().out
    assert f"latency: extend {table} on this machine: " in out and "when the run starts" in out

    # another skeleton's experiment on the same path: the table cannot be extended for
    # it (rows are appended only to a table of its identity), and says so before the run
    large = tmp_path / "large.yaml"
    large.write_text(exp.read_text().replace("skeleton: mobilenetv3_small",
                                             "skeleton: mobilenetv3_large"))
    assert main(["search", str(large)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"latency.path: {table} was built for skeleton 'mobilenetv3_small', this " \
           f"experiment's is 'mobilenetv3_large', and it lacks " in err, err
    assert err.endswith("of the experiment's operators: give this experiment a path of its "
                        "own"), err
    assert len(LatencyTable.load(table)) == rows

    # another machine's table: refused before the run directory exists, file untouched
    text = table.read_text()
    host = LatencyTable.load(table).meta["host"]
    table.write_text(text.replace(f"# host: {host}\n", "# host: elsewhere\n"))
    before = sorted((tmp_path / "tb").iterdir())
    assert main(["search", str(exp)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"latency.path: {table} was built on another machine (host "
                        f"'elsewhere', here '{host}'); build: if_missing neither reuses nor "
                        f"rebuilds it: move it away to build one here, or set build: never "
                        f"to use it as it is"), err
    assert sorted((tmp_path / "tb").iterdir()) == before
    assert table.read_text() == text.replace(f"# host: {host}\n", "# host: elsewhere\n")


def test_build_needs_a_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXP.format(table="t.csv").replace("kind: table, path: t.csv, ",
                                                      "kind: flops, "))
    assert main(["validate", str(exp)]) == 2
    assert "latency.build: if_missing builds a table; kind is flops" in capsys.readouterr().err


def test_a_netadapt_only_experiment_builds_for_its_start_not_the_space(
        tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXP.format(table=tmp_path / "t.csv").replace(
        "stages: [search]", "stages: [netadapt]")
        + "netadapt: {start: mobilenet_v3_small, target_ratio: 0.8}\n")
    prep = open_experiment(load_config(exp), latency="plan")  # a preview: times nothing
    (plan,) = prep.tables
    timed = plan.coverage.signatures(plan.channel_step)
    assert plan.action == "build" and len(timed) == plan.total  # what it says it times
    space = Coverage("space", space=prep.space).signatures(plan.channel_step)
    assert len(timed) < len(space) / 2


def test_planning_enumerates_only_when_a_table_is_to_build(tmp_path: Path) -> None:
    """`nas.tables.experiment_plans` directly: one plan per table file, what it will time
    is what the experiment prices, and the enumeration runs only if a plan needs it."""
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXP.format(table=tmp_path / "t.csv"))
    cfg = load_config(exp)
    space = build_space(cfg, 10)
    calls: list[int] = []

    def needed():
        calls.append(1)
        return experiment_signatures(cfg, space, None)

    (plan,) = experiment_plans(cfg, space, needed)
    assert plan.action == "build" and plan.key == "latency" and calls == [1]
    assert plan.to_time == plan.total == len(set(plan.coverage.signatures(plan.channel_step)))
    assert "build" in plan.describe() and f"{plan.total:,}" in plan.describe()
    flops = load_config(exp, ["latency={kind: flops}"])
    assert experiment_plans(flops, space, needed) == [] and calls == [1]
