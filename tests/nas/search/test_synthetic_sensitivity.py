"""The synthetic data ranks children by capacity within a quickstart-sized proxy run.

The two properties the built-in data set promises (docs/data.md, "The synthetic
data"), in the quickstart's setting: MobileNetV3 blocks on the V3-Small skeleton,
32x32, stride-1 stem, 2 epochs of 2,000 images (62 SGD steps, lr 0.4 cosine, batch
64), 500 validation images. Each pair is a sampled child and the same child at a
quarter of the width (about a twelfth of the parameters). Measured on 2 CPU cores:
large 0.61, 0.39, 0.52 vs small 0.26, 0.26, 0.26 (gap 0.25; 0.14-0.28 on data seeds
1-4); the previous shapes-and-stripes generator gave 0.47, 0.32, 0.33 vs 0.32, 0.29,
0.33 (gap 0.06), so the gap threshold below is what it failed.
"""

from __future__ import annotations

import random
from statistics import mean

import pytest

from nas.data import DataConfig, load_data
from nas.train import TrainConfig, train_and_evaluate
from search_spaces.counting import count
from search_spaces.factorized import FactorizedSpace
from search_spaces.transforms import with_width_multiplier

PAIRS = (2, 3, 4)  # sample seeds: among the quickstart space's cheaper children to train


@pytest.mark.slow
def test_larger_children_beat_much_smaller_ones_and_land_between_chance_and_one() -> None:
    space = FactorizedSpace("mobilenetv3", "mobilenetv3_small", 32, 1, 10)
    splits = load_data(DataConfig(kind="synthetic", train_subset=2000, val_subset=500), 32,
                       "quickstart.yaml")
    cfg = TrainConfig(epochs=2, device="cpu", threads=1, log_every=1000)
    large, small = [], []
    for i in PAIRS:
        arch = space.decode(space.sample(random.Random(i)))
        thin = with_width_multiplier(arch, 0.25)
        assert count(thin)[0] * 5 < count(arch)[0]  # much smaller: under a fifth the params
        large.append(train_and_evaluate(arch, splits, cfg, i, log=lambda _: None).accuracy)
        small.append(train_and_evaluate(thin, splits, cfg, i, log=lambda _: None).accuracy)
    # Capacity matters: the large children clearly ahead on average.
    assert mean(large) - mean(small) >= 0.1, (large, small)
    # A quickstart-sized child lands well between chance (0.1) and 1; the much
    # smaller ones still learn something.
    assert all(0.3 <= a <= 0.85 for a in large), large
    assert all(a >= 0.15 for a in small), small
