"""`open_experiment`: an experiment opened once, nothing written back into its config,
its class count learnt without the images when no data is needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nas.experiment
from experiments import write_search
from nas.config import load_config
from nas.data import DataConfig, class_count
from nas.experiment import open_experiment
from search_spaces.infra.errors import UserError


def test_opening_reads_the_data_or_only_its_class_count(tmp_path: Path, monkeypatch) -> None:
    path = write_search(tmp_path)
    exp = open_experiment(path)
    assert exp.num_classes == 4 and exp.data.num_classes == 4 and exp.space.num_classes == 4
    assert exp.evaluator.name == "train" and exp.reward is not None
    assert exp.latency is not None and exp.reward_target_ms == 2.0

    def no_images(*args, **kwargs):
        raise AssertionError("read the images")

    monkeypatch.setattr(nas.experiment, "load_data", no_images)
    light = open_experiment(path, data=False, latency="none")
    assert light.splits is None and light.num_classes == 4 and light.latency is None
    with pytest.raises(RuntimeError, match="without its data"):
        light.data
    assert light.coverage().signatures(8)  # what `nas latency ... --space EXP.yaml` takes


def test_class_counts_without_reading_images(tmp_path: Path) -> None:
    labels = np.array([0, 3, 6, 2])
    np.savez(tmp_path / "plain.npz", images=np.zeros((4, 8, 8, 3), np.uint8), labels=labels)
    np.savez(tmp_path / "named.npz", x_train=np.zeros((4, 8, 8, 3), np.uint8), y_train=labels,
             classes=np.array(["a", "b", "c", "d", "e", "f", "g", "h"]))
    assert class_count(DataConfig(kind="npz", path=tmp_path / "plain.npz"), "exp.yaml") == 7
    assert class_count(DataConfig(kind="npz", path=tmp_path / "named.npz"), "exp.yaml") == 8
    assert class_count(DataConfig(kind="cifar10", path=tmp_path / "absent"), "exp.yaml") == 10
    for name in ("cat", "dog", "emu"):
        (tmp_path / "folder" / name).mkdir(parents=True)
        (tmp_path / "folder" / name / "1.png").write_bytes(b"")
    assert class_count(DataConfig(kind="imagefolder", path=tmp_path / "folder"), "e") == 3
    # a missing file: the error reading it gives, naming the file
    with pytest.raises(UserError, match="file not found"):
        class_count(DataConfig(kind="npz", path=tmp_path / "gone.npz"), "exp.yaml")


def test_the_config_is_never_written_to(tmp_path: Path) -> None:
    path = write_search(tmp_path, stages="[search, netadapt]",
                        extra="netadapt: {start: mobilenet_v3_small}\n")
    cfg = load_config(path)
    before = cfg.to_dict()
    exp = open_experiment(cfg)
    assert cfg.to_dict() == before and cfg.netadapt.target_ms is None
    assert exp.netadapt.target_ms == exp.netadapt_target_ms == 2.0  # the reward's target
    assert exp.resolved_config()["netadapt"]["target_ms"] == 2.0
    assert exp.netadapt_start is not None and exp.netadapt_start[0].num_classes == 4


def test_a_preview_plans_a_table_and_leaves_a_relative_target_unpriced(tmp_path: Path) -> None:
    path = write_search(tmp_path).read_text().replace(
        "latency:\n  kind: flops", f"latency:\n  kind: table\n  path: {tmp_path / 't.csv'}\n"
        f"  build: if_missing\n  policy: interpolate").replace(
        "reward:\n  target_ms: 2.0", "reward:\n  target_ratio: 0.8")
    (tmp_path / "rel.yaml").write_text(path)
    exp = open_experiment(tmp_path / "rel.yaml", latency="plan")
    (plan,) = exp.tables
    assert plan.action == "build" and exp.latency is None
    assert exp.reward_target_ms is None and exp.reward is None  # priced once it is built
    assert not (tmp_path / "t.csv").exists()  # a preview times nothing
