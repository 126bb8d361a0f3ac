"""The evaluator interface: what a child costs, how it is scored, what it records, how
it resumes. `train.py` and `supernet.py` implement it; `EVALUATORS` (this package's
`__init__`) maps `search.evaluator` to them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

from search_spaces.infra.errors import UserError

if TYPE_CHECKING:  # types only: the experiment module imports this one
    import torch

    from nas.experiment import Experiment
    from nas.rundir import RunDir
    from nas.search.core import SearchCore
    from search_spaces.arch import Arch
    from search_spaces.factorized import FactorizedSpace
    from search_spaces.infra.jobs import JobResult

# A proxy check's scored child: (its index among the picked ones, its result).
ChildRecord = Callable[[int, "JobResult"], None]


class Evaluator(ABC):
    """Scores the children of a search (and of a proxy check) for one experiment.

    Every result goes through the run directory's append-only logs, which is how a
    killed search or check resumes: what an evaluator trains once (a supernet) it
    saves in the run and reloads when it is there.
    """

    name: ClassVar[str]
    # Its children come with weights `final.init: NAME` and `nas export --child` use.
    gives_weights: ClassVar[bool] = False

    def params_bound(self, space: "FactorizedSpace") -> tuple[int, str]:
        """The most parameters one evaluation holds, with what holds them (checked
        against `limits.max_params` before anything is built)."""
        return space.params_bound(per_op=False), "its largest child has"

    def describe(self, exp: "Experiment") -> list[str]:
        """Lines `nas search --dry-run` prints about what this evaluator will cost."""
        return []

    @abstractmethod
    def search(self, exp: "Experiment", run: "RunDir", core: "SearchCore",
               log: Callable[[str], None]) -> None:
        """Score every child `core` still asks for (its log is already replayed)."""

    @abstractmethod
    def score_children(self, exp: "Experiment", run: "RunDir",
                       children: Sequence[tuple[int, Mapping[str, Any]]],
                       record: ChildRecord, log: Callable[[str], None]) -> float | None:
        """Score a proxy check's `children` ((index, decision values)), calling `record`
        for each; returns the one-off cost in seconds (a supernet's training) or None."""

    def inherit(self, exp: "Experiment", run: "RunDir", child: str | list | dict
                ) -> tuple["Arch", dict[str, "torch.Tensor"]]:
        """A child of `run` (`best`, a trial id, option indices or decision values)
        with the weights it inherits."""
        raise UserError(f"search.evaluator: {self.name} gives its children no weights to "
                        f"inherit (a weight-sharing evaluator does)", exp.source)
