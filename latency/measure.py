"""The one measurement protocol, used by the profiler, the checker and `kind: measure`.

Protocol: eval mode, inference mode, batch 1, a fixed thread count (set, then
restored), warm-up rounds, then `repeats` timed rounds; a low percentile of the
samples is the latency and 1.4826 * MAD the spread. On cpu with one thread the clock
is the thread's CPU time, so time the OS gives to other processes is not counted.

Why interleaved rounds: several things timed together (a table's operators, a set of
networks) run round-robin, one call each per round, so a burst of machine noise hits
all of them a little instead of one of them a lot. For operators it also matters for
the mean: an operator timed alone runs with hot caches and a sum of such timings
under-predicts a whole network by 10-30% at 32x32 on this 2-core CPU, while the
round-robin sum lands within a few percent (BENCHMARKS.md, issue 3).

Why a steady allocator: torch's CPU tensors come from malloc, and glibc hands large
blocks back to the kernel (mmap threshold, heap trimming) depending on what was freed
before. A 10 MB activation then costs thousands of page faults on some runs and none
on others: at 224x224 the same network measured 16 ms alone and 25-32 ms timed among
others (1.3M minor faults), and tables over-predicted the largest networks by 50-70%.
`steady_allocator()` makes glibc keep freed memory, as a deployment runtime's arena
does, so every run sees warm pages (BENCHMARKS.md, issue 3).

Why a lock: timing that overlaps with other timing or training measures the overlap.
`timing_lock()` serialises timing within this process (threads) and across processes
on this machine (an exclusive `flock`); training code takes `compute_lock()` (shared),
so training runs may overlap each other but never a timing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import io
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from latency import runtime
from search_spaces.arch import Arch
from search_spaces.builder import build_model
from search_spaces.infra.errors import UserError
from search_spaces.infra.threads import torch_threads

BACKENDS = ("torch", "onnxruntime")
DEVICES = ("cpu", "cuda")
CLOCKS = ("auto", "wall", "thread")

Runner = Callable[[], None]


@dataclass(frozen=True)
class Protocol:
    """How to time: backend, device, threads, warm-up and timed rounds, statistic."""

    backend: str = "torch"
    device: str = "cpu"
    # what ONNX Runtime runs: fp32, or static QDQ int8 (`latency.runtime`); torch: fp32
    dtype: str = "fp32"
    threads: int = 1
    warmup: int = 5
    repeats: int = 30
    # A low percentile rather than the median: noise on a shared machine only ever
    # adds time, so the lower part of the distribution is the reproducible part.
    percentile: float = 10.0
    # `wall`: elapsed time. `thread`: the timing thread's CPU time, which leaves out
    # time the OS gave to other processes (on a busy 2-core machine a 10 ms run is
    # preempted most times, and whole networks then measured 30% over their parts);
    # valid only on cpu with 1 thread, where torch and ONNX Runtime do all the work on
    # the calling thread. `auto`: thread where valid, else wall.
    clock: str = "auto"

    @property
    def effective_clock(self) -> str:
        if self.clock != "auto":
            return self.clock
        return "thread" if self.device == "cpu" and self.threads == 1 else "wall"

    def check(self) -> None:
        """Raise `UserError` for impossible settings (the CLI and config call this)."""
        if self.backend not in BACKENDS:
            raise UserError(f"backend: unknown '{self.backend}' (choose from {', '.join(BACKENDS)})")
        if self.device not in DEVICES:
            raise UserError(f"device: unknown '{self.device}' (choose from {', '.join(DEVICES)})")
        if self.device == "cuda" and self.backend != "torch":
            raise UserError("device: cuda is measured with the torch backend only")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise UserError("device: cuda requested but torch sees no CUDA device")
        if self.dtype not in runtime.DTYPES:
            raise UserError(f"dtype: unknown '{self.dtype}' (choose from "
                            f"{', '.join(runtime.DTYPES)})")
        if self.dtype != "fp32" and self.backend != "onnxruntime":
            raise UserError(f"dtype: {self.dtype} is timed with the onnxruntime backend only")
        if self.backend == "onnxruntime":
            runtime.require(self.dtype)
        if self.threads < 1 or self.repeats < 1 or self.warmup < 0:
            raise UserError(f"threads and repeats must be >= 1 and warmup >= 0, got "
                            f"{self.threads}, {self.repeats}, {self.warmup}")
        if self.clock not in CLOCKS:
            raise UserError(f"clock: unknown '{self.clock}' (choose from {', '.join(CLOCKS)})")
        if self.clock == "thread" and (self.device != "cpu" or self.threads != 1):
            raise UserError("clock: thread measures cpu work on 1 thread only")
        if not 0 <= self.percentile <= 100:
            raise UserError(f"percentile must be in [0, 100], got {self.percentile}")


@dataclass(frozen=True)
class Timing:
    """A measured latency: the statistic, its spread (robust std) and sample count,
    and the same samples' median (what a reader compares across runs)."""

    ms: float
    std_ms: float
    count: int
    median_ms: float = float("nan")


def summarize(samples_ms: Sequence[float], percentile: float) -> Timing:
    x = np.asarray(samples_ms, dtype=float)
    median = float(np.median(x))
    mad = float(np.median(np.abs(x - median)))
    return Timing(float(np.percentile(x, percentile)), 1.4826 * mad, len(x), median)


# ------------------------------------------------------------------ locking

_THREAD_LOCK = threading.RLock()
_depth = 0  # re-entrancy of the file lock within this process
_lock_file: io.TextIOWrapper | None = None


def lock_path() -> Path:
    """The machine-wide lock file (`NAS_TIMING_LOCK` overrides)."""
    return Path(os.environ.get("NAS_TIMING_LOCK",
                               Path(tempfile.gettempdir()) / "nas-timing.lock"))


def _flock(mode: int, timeout: float | None) -> io.TextIOWrapper:
    handle = open(lock_path(), "a")
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if deadline is not None and time.monotonic() > deadline:
                handle.close()
                raise TimeoutError(f"{lock_path()} is held by another process") from None
            time.sleep(0.01)


@contextmanager
def timing_lock(timeout: float | None = None) -> Iterator[None]:
    """Exclusive: no other timing or `compute_lock` holder runs meanwhile."""
    global _depth, _lock_file
    if not _THREAD_LOCK.acquire(timeout=-1 if timeout is None else timeout):
        raise TimeoutError("another thread of this process is timing")
    try:
        if _depth == 0:
            _lock_file = _flock(fcntl.LOCK_EX, timeout)
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
            if _depth == 0 and _lock_file is not None:
                _lock_file.close()  # closing releases the flock
                _lock_file = None
    finally:
        _THREAD_LOCK.release()


@contextmanager
def compute_lock(timeout: float | None = None) -> Iterator[None]:
    """Shared: for training work that must not overlap a timing (it may overlap itself).

    Do not hold it while calling into timing from the same process.
    """
    handle = _flock(fcntl.LOCK_SH, timeout)
    try:
        yield
    finally:
        handle.close()


_ALLOCATOR: str | None = None


def steady_allocator() -> str:
    """Make glibc malloc keep freed memory in the process (once per process).

    Returns the allocator mode recorded in table metadata: `retain` when set (or
    `system` where there is no glibc `mallopt`, e.g. macOS or musl).
    """
    global _ALLOCATOR
    if _ALLOCATOR is None:
        _ALLOCATOR = "system"
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
            mallopt = getattr(libc, "mallopt", None)
        except OSError:
            mallopt = None
        # M_MMAP_THRESHOLD (-3): blocks under 32 MB (glibc's maximum) come from the
        # heap, not fresh mmaps; M_TRIM_THRESHOLD (-1): keep up to 1 GB of free heap.
        if mallopt is not None and mallopt(-3, 32 << 20) == 1 and mallopt(-1, 1 << 30) == 1:
            _ALLOCATOR = "retain"
    return _ALLOCATOR


@contextmanager
def timing_session(protocol: Protocol, timeout: float | None = None) -> Iterator[None]:
    """Hold the timing lock, fix the thread count (restored after) and inference mode,
    with a steady allocator."""
    steady_allocator()
    with timing_lock(timeout), torch_threads(protocol.threads), torch.inference_mode():
        yield


# ------------------------------------------------------------------ runners

def prepare(module: nn.Module, input_shape: tuple[int, ...], protocol: Protocol,
            seed: int = 0) -> Runner:
    """A zero-argument callable running `module` once on a fixed batch-1 input."""
    module = module.eval()
    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(seed))
    if protocol.backend == "onnxruntime":
        return _onnx_runner(module, x, protocol)
    if protocol.device == "cuda":
        module, x = module.cuda(), x.cuda()

        def run_cuda() -> None:
            module(x)
            torch.cuda.synchronize()
        return run_cuda
    return lambda: module(x)


def _onnx_runner(module: nn.Module, x: torch.Tensor, protocol: Protocol) -> Runner:
    session = runtime.session(runtime.deployed_bytes(module, x, protocol.dtype),
                              protocol.threads)
    feed = {session.get_inputs()[0].name: x.numpy()}
    return lambda: session.run(None, feed)


def onnx_file_runner(path: str | os.PathLike, input_shape: tuple[int, ...], threads: int,
                     seed: int = 0) -> Runner:
    """One batch-1 run of an ONNX file (one input) under ONNX Runtime, a fixed input."""
    session = runtime.load_file(path, threads)
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise UserError(f"expected a model with one input, it has {len(inputs)}", str(path))
    x = np.random.default_rng(seed).standard_normal(input_shape).astype("float32")
    feed = {inputs[0].name: x}
    return lambda: session.run(None, feed)


# ------------------------------------------------------------------ timing

# Untimed calls of a whole network before each of its timed calls: what brings it to
# the state of a deployed model running alone. Timed round-robin among 16 others with
# one call before, ONNX Runtime networks at 32x32 ran 10-22% slower than alone; with
# two, 2-3%; with three, within 1% (issue 28). Tables are calibrated on, and checked
# against, networks measured this way, so they predict the model as deployed.
STEADY = 3


def time_interleaved(runners: Sequence[Runner], protocol: Protocol, settle: int = 0,
                     timeout: float | None = None) -> list[Timing]:
    """Time every runner, round-robin: warm-up rounds, then `repeats` timed rounds.

    `settle` untimed calls precede each timed call of a visit: 0 times an operator in
    the cache context of the others (as inside a network); `STEADY` times a whole
    network in steady state, as deployed.
    """
    return [summarize(s, protocol.percentile)
            for s in sample_interleaved(runners, protocol, settle, timeout)]


def sample_interleaved(runners: Sequence[Runner], protocol: Protocol, settle: int = 0,
                       timeout: float | None = None) -> list[list[float]]:
    """`time_interleaved`'s samples (ms), one list per runner, before the statistic:
    what a caller pools over several bouts (`latency.rows`)."""
    samples: list[list[float]] = [[] for _ in runners]
    clock = time.thread_time_ns if protocol.effective_clock == "thread" else time.perf_counter_ns
    with timing_session(protocol, timeout):
        for _ in range(protocol.warmup):
            for run in runners:
                run()
        for _ in range(protocol.repeats):
            for i, run in enumerate(runners):
                for _ in range(settle):
                    run()
                t0 = clock()
                run()
                samples[i].append((clock() - t0) / 1e6)
    return samples


def arch_runner(arch: Arch, protocol: Protocol, seed: int = 0) -> Runner:
    shape = (1, arch.in_ch, arch.resolution, arch.resolution)
    return prepare(build_model(arch), shape, protocol, seed)


def measure_archs(archs: Sequence[Arch], protocol: Protocol, group: int = 16) -> list[Timing]:
    """End-to-end latency of whole networks, interleaved in groups of `group`.

    Each network gets `repeats` timed runs, each right after `STEADY` untimed runs of
    the same network (steady state), visiting the networks of a group round-robin.
    """
    out: list[Timing] = []
    for start in range(0, len(archs), group):
        runners = [arch_runner(a, protocol, seed=i)
                   for i, a in enumerate(archs[start:start + group])]
        out.extend(time_interleaved(runners, protocol, settle=STEADY))
    return out


def measure_arch(arch: Arch, protocol: Protocol) -> Timing:
    """End-to-end latency of one network."""
    return measure_archs([arch], protocol)[0]
