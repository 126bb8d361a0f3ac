"""What the read-only commands print: an architecture's layer table (`nas info`), a
checked experiment (`nas validate`, `nas search --dry-run`) and a run's trials (`nas
results`). Each returns text; `nas.cli` only prints it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import yaml

from nas.experiment import Experiment, open_experiment
from nas.resolve import resolve_net
from nas.rundir import RunDir, TrialLog
from nas.search.core import COLUMNS
from search_spaces.arch import Arch
from search_spaces.counting import count, count_rows
from search_spaces.infra.errors import UserError
from search_spaces.infra.files import read_frame, to_json
from search_spaces.infra.strict import read_yaml


def layer_table(arch: Arch, title: str, as_json: bool = False) -> str:
    """Every piece of `arch` with its op, sizes, parameters and MACs, and the totals."""
    rows = count_rows(arch)
    params, macs = sum(r.params for r in rows), sum(r.macs for r in rows)
    if as_json:
        return to_json({
            "name": arch.name, "hash": arch.hash(), "resolution": arch.resolution,
            "num_classes": arch.num_classes, "params": params, "macs": macs,
            "layers": [r.__dict__ for r in rows],
        })
    header = f"{'piece':<16} {'op':<42} {'in':>4} {'out':>4} {'ch':>5} {'params':>11} {'MACs':>13}"
    lines = [f"{arch.name or title}: {arch.resolution}x{arch.resolution}x{arch.in_ch}, "
             f"{arch.num_classes} classes, hash {arch.hash()}", header, "-" * len(header)]
    lines += [f"{r.name:<16} {r.desc:<42} {r.in_hw:>4} {r.out_hw:>4} {r.out_ch:>5} "
              f"{r.params:>11,} {r.macs:>13,}" for r in rows]
    lines += ["-" * len(header),
              f"{'total':<16} {'':<42} {'':>4} {'':>4} {'':>5} {params:>11,} {macs:>13,}"]
    return "\n".join(lines)


def validation(path: Path) -> str:
    """`nas validate FILE`: an Arch JSON, or an experiment checked as a run checks it
    (data, latency table, reward; a table still to build is only planned)."""
    if path.suffix == ".json":
        arch = resolve_net(path).arch
        return f"{path}: valid Arch JSON ({len(arch.layers)} layers, hash {arch.hash()})"
    raw = read_yaml(path)
    # A file with a netadapt: section, no stages and no reward is meant for `nas
    # netadapt` (which runs stages [netadapt]): check it the way that command runs it.
    for_netadapt = isinstance(raw, dict) and "netadapt" in raw and "stages" not in raw \
        and "reward" not in raw
    exp = open_experiment(path, ["stages=[netadapt]"] if for_netadapt else [],
                          latency="plan")
    space = exp.space
    how = " for `nas netadapt`" if for_netadapt else ""
    lines = [f"{path}: valid experiment '{exp.config.name}'{how}: space {space.name}, "
             f"{len(space.decisions)} decisions, {space.size():.3e} distinct architectures; "
             f"data {exp.data.summary()}"]
    lines += [f"  {plan.describe()}" + ("" if plan.action == "reuse" else " when the run starts")
              for plan in exp.tables]
    return "\n".join(lines)


def dry_run(exp: Experiment) -> str:
    """`nas search --dry-run`: the resolved config, the space's size, one sampled child
    with its latency, and what the evaluator will cost."""
    cfg, space = exp.config, exp.space
    lines = [yaml.safe_dump(exp.resolved_config(), sort_keys=False).rstrip("\n"),
             f"# space {space.name}: {len(space.decisions)} decisions, "
             f"{space.size():.3e} distinct architectures ({space.raw_size():.3e} decision "
             f"vectors)", f"# data: {exp.data.summary()}"]
    lines += [f"# latency table: {plan.describe()}" + (
        "" if plan.action == "reuse" else ": the run would do it first") for plan in exp.tables]
    arch = space.decode(space.sample(random.Random(cfg.seed)))
    params, macs = count(arch)
    if exp.latency is None:
        priced = "latency: once the table is built"
    else:
        est = exp.latency.predict(arch)
        priced = f"latency {est.ms:.3f} ms ({est.source})"
    lines.append(f"# a sampled child: {len(arch.layers)} layers, {params:,} params, "
                 f"{macs:,} MACs, {priced}")
    lines += [f"# {line}" for line in exp.evaluator.describe(exp)]
    return "\n".join(lines)


def trials_text(run_dir: str, pareto: bool = False, fmt: str = "table") -> str:
    """A run's trials (or its accuracy/latency front) as a table, CSV or JSON."""
    run = RunDir.open(run_dir)
    path = run.pareto_csv if pareto else run.trials_csv
    if not path.is_file():
        raise UserError(f"no {path.name} yet (has the search started?)", str(run.root))
    rows = TrialLog(path, COLUMNS).read()  # strict: a damaged log is an error
    frame = read_frame(path, numeric=("accuracy", "latency_ms", "reward")) if rows \
        else pd.DataFrame(columns=COLUMNS)
    if fmt == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        records = frame.to_dict(orient="records")
        for r in records:
            r["decisions"] = json.loads(r["decisions"])
        return to_json(records)
    cols = ["trial_id", "status", "accuracy", "latency_ms", "reward", "params", "macs",
            "wall_s"]
    with pd.option_context("display.max_rows", None, "display.width", 200):
        return frame[cols].to_string(index=False)
