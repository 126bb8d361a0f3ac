"""The files of a NetAdapt folder (a run's `netadapt/`), one accessor each.

    summary.json            L0_ms, delta_ms, target_ms, where the loop stands
    history.csv             one row per proposal per iteration (rewritten from below)
    iter_<k>/arch.json      the network after iteration k (iter_0: the start)
    iter_<k>/weights.pt
    iter_<k>/metrics.json   written last: iteration k is complete
    iter_<k>/proposals.csv  append-only: each proposal's result as it finishes
    iter_<k>/proposals/<proposal>/start.pt + weights.pt   while iteration k runs
    final/arch.json + weights.pt + metrics.json   after the long-term fine-tune
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from search_spaces.infra.weights import NetFolder


@dataclass(frozen=True)
class IterationFolder(NetFolder):
    """`iter_<k>/`: the network kept by iteration k, and its proposals while it runs."""

    @property
    def proposals_csv(self) -> Path:
        return self.root / "proposals.csv"

    @property
    def proposals_dir(self) -> Path:
        """Every proposal's weights; removed once the iteration is complete."""
        return self.root / "proposals"

    def proposal_start(self, proposal: str) -> Path:
        """The weights a proposal inherits from the network before it."""
        return self._proposal(proposal) / "start.pt"

    def proposal_weights(self, proposal: str) -> Path:
        """A proposal's weights after its short-term fine-tune."""
        return self._proposal(proposal) / "weights.pt"

    def _proposal(self, proposal: str) -> Path:
        return self.proposals_dir / proposal.replace("/", "_")  # expansion/3 -> expansion_3


@dataclass(frozen=True)
class NetAdaptDir:
    """One NetAdapt run's folder."""

    root: Path

    @property
    def summary_json(self) -> Path:
        return self.root / "summary.json"

    @property
    def history_csv(self) -> Path:
        return self.root / "history.csv"

    def iteration(self, k: int) -> IterationFolder:
        return IterationFolder(self.root / f"iter_{k}")

    @property
    def final(self) -> NetFolder:
        return NetFolder(self.root / "final")
