"""`latency.cli.add_latency_commands` on a parser of its own: the `nas latency` commands
need nothing of `nas` but the experiment pricing they are handed."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from latency.cli import add_latency_commands
from latency.profiler import Coverage
from search_spaces.infra.errors import UserError
from search_spaces.reference import load_reference
from search_spaces.transforms import with_input


def parser(experiment_coverage=None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nas")
    add_latency_commands(p.add_subparsers(dest="command", required=True), experiment_coverage)
    return p


def test_an_experiment_yaml_is_priced_by_the_function_handed_in(tmp_path: Path) -> None:
    asked: list[str] = []
    arch = with_input(load_reference("mobilenet_v3_small"), 32, 10, 1)

    def coverage(path: str) -> Coverage:
        asked.append(path)
        return Coverage("exp", arch=arch)

    args = parser(coverage).parse_args(["latency", "export-ops", "--space", "exp.yaml",
                                        "--out", str(tmp_path / "ops")])
    args.func(args)
    assert asked == ["exp.yaml"]
    rows = (tmp_path / "ops" / "template.csv").read_text().splitlines()
    assert len([r for r in rows if r and not r.startswith("#")]) > 10  # header + operators


def test_without_it_an_experiment_yaml_is_refused_in_one_line(tmp_path: Path) -> None:
    args = parser().parse_args(["latency", "export-ops", "--space", "exp.yaml",
                                "--out", str(tmp_path / "ops")])
    with pytest.raises(UserError, match="needs the nas command line"):
        args.func(args)


def test_an_experiment_says_its_own_input_size(tmp_path: Path) -> None:
    args = parser(lambda path: Coverage("x")).parse_args(
        ["latency", "export-ops", "--space", "exp.yml", "--resolution", "32",
         "--out", str(tmp_path)])
    with pytest.raises(UserError, match="--resolution: an experiment YAML says it itself"):
        args.func(args)
