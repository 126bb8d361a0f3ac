"""How a search child's accuracy is obtained, one module per evaluator.

`search.evaluator` (and `proxy_check.evaluators`) name a key of `EVALUATORS`. To add
one: write its module here (a subclass of `Evaluator`, base.py, with its config
section beside it if it has one) and add its line below; docs/architecture.md says
what each method is for.
"""

from __future__ import annotations

from nas.search.evaluators.base import ChildRecord, Evaluator
from nas.search.evaluators.supernet import SupernetEvaluator
from nas.search.evaluators.train import TrainEvaluator

EVALUATORS: dict[str, type[Evaluator]] = {
    "train": TrainEvaluator,  # proxy-train each child (MnasNet)
    "supernet": SupernetEvaluator,  # inherit from one weight-sharing supernet (TuNAS)
}

# Evaluators whose children come with weights (`final.init` may name them).
WITH_WEIGHTS = tuple(name for name, e in EVALUATORS.items() if e.gives_weights)


def make_evaluator(name: str) -> Evaluator:
    """The evaluator `search.evaluator` names (the config has checked the name)."""
    return EVALUATORS[name]()


__all__ = ["EVALUATORS", "WITH_WEIGHTS", "ChildRecord", "Evaluator", "make_evaluator"]
