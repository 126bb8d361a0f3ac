"""The public API takes a path as `str` as readily as a `pathlib.Path`."""

from __future__ import annotations

from pathlib import Path

import torch

from arch_fixtures import small_arch
from latency import LatencyTable, TableModel, make_model
from latency_fixtures import EXAMPLE_ARCH, EXAMPLE_TABLE
from nas.data import DataConfig, load_data
from nas.stages.export import export, load_model
from search_spaces import build_model, load_arch
from search_spaces.infra.files import atomic_write
from search_spaces.infra.weights import load_torch, read_weights, write_weights


def test_every_public_function_takes_str_paths(tmp_path: Path) -> None:
    arch = small_arch()
    arch_file, weights = str(tmp_path / "a.json"), str(tmp_path / "w.pt")
    arch.save(arch_file)
    assert load_arch(arch_file) == arch
    write_weights(build_model(arch).state_dict(), weights)
    assert set(read_weights(weights, arch)) == set(build_model(arch).state_dict())
    assert isinstance(load_torch(weights), dict)
    model = load_model(arch, weights)
    assert not model.training and torch.equal(
        model.state_dict()["stem.0.weight"], read_weights(weights)["stem.0.weight"])
    assert export(arch, weights, "json", str(tmp_path / "e.json")) is None
    assert export(arch, weights, "onnx", str(tmp_path / "e.onnx")) < 1e-4
    table = LatencyTable.load(str(EXAMPLE_TABLE))
    table.save(str(tmp_path / "t.csv"))
    example = load_arch(str(EXAMPLE_ARCH))
    assert TableModel.load(str(tmp_path / "t.csv")).predict(example).ms > 0
    assert make_model("table", path=str(EXAMPLE_TABLE)).predict(example).ms > 0
    atomic_write(str(tmp_path / "x.txt"), "x")
    import numpy as np
    np.savez(tmp_path / "d.npz", images=np.zeros((20, 8, 8, 3), np.uint8),
             labels=np.arange(20) % 2)
    splits = load_data(DataConfig(kind="npz", path=str(tmp_path / "d.npz")), 8, "api")
    assert len(splits.train) + len(splits.val) + len(splits.test) == 20
