"""The one seed derivation (its numbers are those run directories were written with)
and the one torch thread context."""

from __future__ import annotations

import hashlib

import pytest
import torch

from nas.search.core import trial_seed
from netadapt.loop import job_seed
from search_spaces.infra.seeds import seed_for
from search_spaces.infra.threads import torch_threads


@pytest.mark.parametrize("seed", [0, 3, 12345])
def test_every_mode_keeps_the_numbers_it_always_had(seed: int) -> None:
    # the formulas as they were written before there was one function
    for component in ("init", "order", "augment", "dropout", "test", "val"):
        digest = hashlib.sha256(f"{seed}/{component}".encode()).digest()
        assert seed_for(seed, component) == int.from_bytes(digest[:8], "little") >> 1
    for name in ("pretrain", "start", "iter_3/expansion/2", "final"):
        digest = hashlib.sha256(f"{seed}/netadapt/{name}".encode()).digest()
        assert job_seed(seed, name) == int.from_bytes(digest[:7], "big")
    for trial in (0, 1, 77):
        assert trial_seed(seed, trial) == seed * 1_000_003 + trial
    assert seed_for(seed, 1_000_002, "linear") == seed * 1_000_003 + 1_000_002


def test_pinned_values() -> None:
    assert seed_for(0, "init") == 3330654677893223573
    assert job_seed(5, "pretrain") == 41867126769812572
    assert trial_seed(3, 2) == 3_000_011


def test_streams_differ_and_fit_torch() -> None:
    values = {seed_for(1, k) for k in ("init", "order", "augment", "dropout")}
    assert len(values) == 4 and all(0 <= v < 2 ** 63 for v in values)
    torch.Generator().manual_seed(max(values))
    with pytest.raises(TypeError):
        seed_for(1, "init", "linear")
    with pytest.raises(ValueError):
        seed_for(1, "init", "sha1")  # type: ignore[arg-type]


def test_thread_context_sets_and_restores_also_on_an_error() -> None:
    before = torch.get_num_threads()
    with torch_threads(1) as n:
        assert n == torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
