"""Timing table rows: one piece of a network at a time, as it runs inside one.

Each row is timed in a random group of pieces, round-robin (`time_interleaved`), so
its caches are in roughly the state a network leaves them in. Under ONNX Runtime a
piece run on its own pays what a network pays once: the session call, binding its
input and output, converting at the graph's edges (NCHWc reorders; int8: quantise in,
dequantise out). So each group also times a **boundary** model per input shape (a
trivial per-channel affine graph in the same form), and the row is the piece's time
less its boundary's: what the piece adds inside a network. The network's own boundary
is the table's `network_ms`, added once per network (`latency.model.TableModel`).

Measured on this 2-core guest at 32x32, one boundary costs about 6-10 microseconds, a
mobilenet_v3_small child 0.15-0.9 ms over 15-20 pieces: summed with their boundaries,
rows over-priced small networks by up to 70% (BENCHMARKS.md, issue 28).

A group is timed in `BOUTS` bouts, a few seconds apart, and each row's samples are
pooled over them before the percentile. A slow spell on a shared host lasts seconds and
shifts every sample of the bout it hits; the pooled low percentile comes from the bouts
it missed. With one bout, two builds of one table minutes apart disagreed by 45% per
row (the std of the log ratio) and by 10-12% on a network's sum of rows (issue 28).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
from torch import nn

from latency.measure import Protocol, Runner, prepare, sample_interleaved, summarize, time_interleaved
from latency.signature import Signature, build_op
from latency.table import Row


class Boundary(nn.Module):
    """`x * scale + shift` per channel: a graph that does next to nothing, so timing it
    measures the cost of a call with this input in the deployed form."""

    def __init__(self, channels: int, rank: int) -> None:
        super().__init__()
        shape = (1, channels) + (1,) * (rank - 2)
        self.scale = nn.Parameter(torch.full(shape, 0.5))
        self.shift = nn.Parameter(torch.full(shape, 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def subtracts_boundary(protocol: Protocol) -> bool:
    """Whether rows under `protocol` are a piece's time less its boundary's (ONNX
    Runtime; eager torch has no per-call session cost worth the second timing)."""
    return protocol.backend == "onnxruntime"


def boundary_runner(shape: tuple[int, ...], protocol: Protocol) -> Runner:
    return prepare(Boundary(shape[1], len(shape)).eval(), shape, protocol)


# Bouts a group is timed in; the protocol's timed rounds are shared out among them, so
# a row has as many samples as with one bout.
BOUTS = 3


class RowGroup:
    """Pieces timed together, round-robin (with their boundaries where the backend has
    them), bout by bout; `rows()` pools every bout's samples."""

    def __init__(self, sigs: Sequence[Signature], protocol: Protocol, se_gate: str,
                 bouts: int = BOUTS) -> None:
        self.sigs = list(sigs)
        self.protocol = protocol
        # the timed rounds shared out, so a row has `repeats` samples however many bouts
        bouts = max(1, min(bouts, protocol.repeats))
        self._repeats = [protocol.repeats // bouts + (i < protocol.repeats % bouts)
                         for i in range(bouts)]
        self.runners = [prepare(build_op(s, se_gate), s.input_shape(), protocol)
                        for s in self.sigs]
        self.shapes = list(dict.fromkeys(s.input_shape() for s in self.sigs)) \
            if subtracts_boundary(protocol) else []
        self.runners += [boundary_runner(shape, protocol) for shape in self.shapes]
        self.samples: list[list[float]] = [[] for _ in self.runners]

    @property
    def bouts_left(self) -> int:
        return len(self._repeats)

    def bout(self) -> None:
        """Time the group once more."""
        bout = replace(self.protocol, repeats=self._repeats.pop())
        for pooled, new in zip(self.samples, sample_interleaved(self.runners, bout)):
            pooled.extend(new)

    def rows(self) -> list[Row]:
        timings = [summarize(s, self.protocol.percentile) for s in self.samples]
        boundary = dict(zip(self.shapes, (t.ms for t in timings[len(self.sigs):])))
        rows = []
        for sig, t in zip(self.sigs, timings):
            # a piece cheaper than its call (a pooling) would come out negative: it is ~0
            ms = max(t.ms - boundary.get(sig.input_shape(), 0.0), 0.0)
            rows.append(Row(sig, ms, t.std_ms, t.count))
        return rows


def time_rows(sigs: Sequence[Signature], protocol: Protocol, se_gate: str) -> list[Row]:
    """Rows for `sigs`, timed together in one round-robin group, its bouts back to back
    (a table's build spreads them out: `latency.profiler.time_signatures`)."""
    group = RowGroup(sigs, protocol, se_gate)
    while group.bouts_left:
        group.bout()
    return group.rows()


def time_network_boundary(input_shape: tuple[int, ...], protocol: Protocol) -> float:
    """The boundary of a whole network with this input: the per-network constant."""
    return time_interleaved([boundary_runner(input_shape, protocol)], protocol)[0].ms
