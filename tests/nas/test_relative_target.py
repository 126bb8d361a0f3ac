"""`reward.target_ratio`: a latency target relative to a reference net, priced by the
experiment's own latency model (so it travels between machines), resolved to ms once."""

from pathlib import Path

import pytest
import yaml

from nas.config import load_config
from nas.experiment import open_experiment
from search_spaces.counting import count
from search_spaces.infra.errors import UserError
from search_spaces.reference import load_reference
from search_spaces.transforms import with_input

EXP = """\
stages: [search, netadapt]
search: {{space: mobilenetv3, skeleton: {skeleton}, resolution: 16, stem_stride: 1,
         num_trials: 1, executor: inline}}
data:
  kind: synthetic
  synthetic: {{num_classes: 4, train_size: 40, test_size: 8, image_size: 16}}
train: {{steps: 1, batch_size: 8, threads: 1}}
latency: {{kind: flops, ms_per_mmac: 2.0}}
reward: {{{reward}}}
netadapt: {{{netadapt}}}
"""


def exp(tmp_path: Path, reward: str, netadapt: str = "",
        skeleton: str = "mobilenetv3_small") -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(EXP.format(reward=reward, netadapt=netadapt, skeleton=skeleton))
    return path


def ms_of(name: str) -> float:
    """`name` at the experiment's input under its latency model (2 ms per MMAC)."""
    return 2.0 * count(with_input(load_reference(name), 16, 4, 1))[1] / 1e6


def test_the_ratio_of_the_skeletons_namesake_becomes_the_target_in_ms(tmp_path):
    cfg = load_config(exp(tmp_path, "target_ratio: 0.5"))
    assert cfg.reward.target_ms is None and cfg.netadapt.target_ms is None
    opened = open_experiment(cfg)
    want = round(0.5 * ms_of("mobilenet_v3_small"), 4)
    assert opened.reward.target_ms == opened.reward_target_ms == want
    assert opened.netadapt_target_ms == opened.netadapt.target_ms == want  # NetAdapt follows
    assert cfg.reward.target_ms is None and cfg.netadapt.target_ms is None  # nothing written back
    recorded = opened.resolved_config()
    assert recorded["reward"]["target_ms"] == want and recorded["reward"]["target_ratio"] is None
    assert recorded["netadapt"]["target_ms"] == want
    # a resumed run reloads the recorded ms, whatever the latency model says then
    again = tmp_path / "recorded.yaml"
    again.write_text(yaml.safe_dump(recorded))
    assert open_experiment(again).reward.target_ms == want


def test_a_named_reference_and_netadapts_own_target(tmp_path):
    cfg = load_config(exp(tmp_path, "target_ratio: 0.25, target_reference: mobilenet_v3_large",
                          "target_ratio: 0.9"))
    opened = open_experiment(cfg)
    assert opened.reward_target_ms == round(0.25 * ms_of("mobilenet_v3_large"), 4)
    assert opened.netadapt_target_ms is None and opened.netadapt.target_ratio == 0.9


def test_an_arch_json_as_reference_relative_to_the_yaml(tmp_path, monkeypatch):
    (tmp_path / "mine.json").write_text((Path(load_reference.__code__.co_filename).parent
                                         / "reference" / "mnasnet_a1.json").read_text())
    monkeypatch.chdir("/")
    cfg = load_config(exp(tmp_path, "target_ratio: 1.0, target_reference: mine.json"))
    assert cfg.reward.target_reference == str(tmp_path.resolve() / "mine.json")
    assert open_experiment(cfg).reward_target_ms == round(ms_of("mnasnet_a1"), 4)


def test_a_target_given_with_set_replaces_the_files_other_kind(tmp_path):
    path = exp(tmp_path, "target_ratio: 0.5, target_reference: mobilenet_v3_large")
    cfg = load_config(path, ["reward.target_ms=3.0"])
    assert (cfg.reward.target_ms, cfg.reward.target_ratio, cfg.reward.target_reference) \
        == (3.0, None, None)
    path = exp(tmp_path, "target_ms: 3.0")
    cfg = load_config(path, ["reward.target_ratio=0.6"])
    assert (cfg.reward.target_ms, cfg.reward.target_ratio) == (None, 0.6)


@pytest.mark.parametrize("reward, skeleton, message", [
    ("target_ms: 2.0, target_ratio: 0.5", "mobilenetv3_small",
     "reward: set one of target_ms and target_ratio, not both"),
    ("target_ms: 2.0, target_reference: mobilenet_v3_small", "mobilenetv3_small",
     "reward.target_reference: the net that reward.target_ratio is a fraction of"),
    ("target_ratio: 0", "mobilenetv3_small", "reward.target_ratio"),
    ("target_ratio: 0.5, target_reference: mobilenet_v3_smal", "mobilenetv3_small",
     "did you mean the reference net 'mobilenet_v3_small'?"),
    ("target_ratio: 0.5", "{stem: 8, head_conv: 16, head_hidden: 32, blocks: "
     "[{width: 8, layers: 1, stride: 1}]}", "reward.target_reference: missing"),
])
def test_bad_relative_targets_are_refused_when_loaded(tmp_path, reward, skeleton, message):
    path = exp(tmp_path, reward, skeleton=skeleton)
    with pytest.raises(UserError) as info:
        load_config(path)
    assert message in str(info.value) and str(path) in str(info.value)
