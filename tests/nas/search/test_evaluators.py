"""The evaluators behind `search.evaluator`, through their interface: what one child
costs (the parameter bound), how a proxy check's children are scored and resumed, and
which evaluators give weights."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from experiments import write_search
from nas.experiment import open_experiment
from nas.rundir import RunDir
from nas.search.evaluators import EVALUATORS, WITH_WEIGHTS, make_evaluator
from search_spaces.infra.errors import UserError
from search_spaces.infra.jobs import JobResult


def test_the_mapping_names_each_evaluator_by_its_own_name() -> None:
    assert list(EVALUATORS) == ["train", "supernet"]
    assert all(make_evaluator(name).name == name for name in EVALUATORS)
    assert WITH_WEIGHTS == ("supernet",)


def test_a_supernet_holds_more_than_any_one_child(tmp_path: Path) -> None:
    space = open_experiment(write_search(tmp_path), data=False, latency="none").space
    child, what = make_evaluator("train").params_bound(space)
    shared, held = make_evaluator("supernet").params_bound(space)
    assert shared > child > 0 and what != held


def test_the_train_evaluator_gives_no_weights(tmp_path: Path) -> None:
    exp = open_experiment(write_search(tmp_path), data=False, latency="none")
    with pytest.raises(UserError, match="train gives its children no weights"):
        exp.evaluator.inherit(exp, RunDir(tmp_path), "best")


@pytest.mark.parametrize("name", ["train", "supernet"])
def test_each_evaluator_scores_a_proxy_checks_children(tmp_path: Path, name: str) -> None:
    exp = open_experiment(write_search(tmp_path, evaluator=name), log=lambda m: None)
    run = RunDir.create(tmp_path / "out", "check", exp.resolved_config())
    rng = random.Random(0)
    children = [(i, exp.space.sample(rng)) for i in range(3)]
    scored: dict[int, JobResult] = {}
    with run.writing():
        setup = exp.evaluator.score_children(exp, run, children, scored.__setitem__,
                                             lambda m: None)
    assert sorted(scored) == [0, 1, 2]
    assert all(r.accuracy is not None and 0 <= r.accuracy <= 1 for r in scored.values())
    if name == "supernet":  # trained once, kept in the run, its cost recorded
        assert setup is not None and setup > 0 and run.supernet_pt.is_file()
        again: dict[int, JobResult] = {}
        with run.writing():
            assert exp.evaluator.score_children(exp, run, children[:1], again.__setitem__,
                                                lambda m: None) == setup
        assert again[0].accuracy == scored[0].accuracy  # the same supernet, reloaded
    else:
        assert setup is None
