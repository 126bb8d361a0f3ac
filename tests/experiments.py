"""Tiny experiment YAMLs the stage tests share (synthetic data, a few steps each)."""

from __future__ import annotations

from pathlib import Path

from arch_fixtures import small_arch

# NetAdapt from a named start (the small test net), priced by MACs.
NETADAPT = """
name: shrink
seed: 5
search:
  space: mobilenetv3
  skeleton: mobilenetv3_small
  resolution: 16
  stem_stride: 1
  num_trials: 2
  strategy: random
  executor: {executor}
data:
  kind: synthetic
  synthetic: {{num_classes: 4, train_size: 300, test_size: 50, image_size: 16}}
  val_subset: 60
train:
  steps: 3
  batch_size: 16
  threads: 1
  bn_recalibration: 1
latency:
  kind: flops
reward:
  target_ms: 2.0
netadapt:
  start: {start}
  target_ratio: 0.8
  delta_ratio: 0.08
  short_term_steps: 2
  pretrain_epochs: 0.2
  long_term_epochs: 0.1
ray:
  cpus_per_trial: 1
  num_cpus: 2
"""


def write_exp(folder: Path, start: str = "net", executor: str = "inline", extra: str = "") -> Path:
    """`shrink.yaml` in `folder` with the small test net as `net/arch.json` (its start)."""
    folder.mkdir(parents=True, exist_ok=True)
    net = folder / "net"
    net.mkdir(exist_ok=True)
    (net / "arch.json").write_text(small_arch().to_json())
    path = folder / "shrink.yaml"
    path.write_text(NETADAPT.format(start=start, executor=executor) + extra)
    return path


# A search of a few children, each trained a step or two; `evaluator` and `stages` vary.
SEARCH = """
name: tiny
seed: 1
stages: {stages}
search:
  space: mobilenetv3
  skeleton: mobilenetv3_small
  resolution: 16
  stem_stride: 1
  strategy: random
  num_trials: 3
  executor: inline
  evaluator: {evaluator}
data:
  kind: synthetic
  synthetic: {{num_classes: 4, train_size: 120, test_size: 40, image_size: 16}}
  val_subset: 40
train:
  steps: 2
  batch_size: 16
  threads: 1
  eval_batch_size: 40
supernet:
  steps: 2
  bn_batches: 1
  rerank_top_k: 1
latency:
  kind: flops
reward:
  target_ms: 2.0
final:
  steps: 2
export:
  formats: [onnx]
  measure: false
"""


def write_search(folder: Path, stages: str = "[search]", evaluator: str = "train",
                 extra: str = "") -> Path:
    """`tiny.yaml` in `folder`: the tiny search experiment."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.yaml"
    path.write_text(SEARCH.format(stages=stages, evaluator=evaluator) + extra)
    return path
