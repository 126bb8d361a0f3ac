"""The strict experiment YAML loader."""

from pathlib import Path

import pytest

from nas.config import build_space, load_config
from nas.experiment import Experiment, open_experiment
from search_spaces.infra.errors import UserError


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path, overrides=None) -> str:
    with pytest.raises(UserError) as info:
        load_config(path, overrides)
    return str(info.value)


def opened(path: Path) -> Experiment:
    """The experiment at `path`, opened without data or latency models."""
    return open_experiment(path, data=False, latency="none")


def test_defaults_name_and_output_dir(tmp_path):
    cfg = load_config(write(tmp_path, "search: {space: mnasnet}\n", "my_exp.yaml"))
    assert cfg.name == "my_exp"
    assert cfg.output_dir == tmp_path.resolve()
    assert cfg.search.resolution == 224 and cfg.seed == 0


def test_empty_file_is_all_defaults(tmp_path):
    cfg = load_config(write(tmp_path, ""))
    assert cfg.search.space == "mnasnet"


def test_relative_paths_resolve_against_the_yaml(tmp_path):
    sub = tmp_path / "exps"
    sub.mkdir()
    cfg = load_config(write(sub, "output_dir: ../out\n"))
    assert cfg.output_dir == (tmp_path / "out").resolve()


def test_override_paths_resolve_against_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sub = tmp_path / "exps"
    sub.mkdir()
    cfg = load_config(write(sub, "seed: 1\n"), ["output_dir=results", "seed=5"])
    assert cfg.output_dir == (tmp_path / "results").resolve()
    assert cfg.seed == 5


@pytest.mark.parametrize("text, message", [
    ("serch: {space: mnasnet}\n", "exp.yaml: serch: unknown key (did you mean 'search'?)"),
    ("search: {spcae: mnasnet}\n", "search.spcae: unknown key (did you mean 'search.space'?)"),
    ("search: {space: mnasnett}\n",
     "search.space: 'mnasnett' is not one of mnasnet, mobilenetv3 (did you mean 'mnasnet'?)"),
    ("search: {resolution: big}\n", "search.resolution: expected an integer, got 'big'"),
    ("search: {resolution: -32}\n", "search.resolution: must be > 0, got -32"),
    ("seed: true\n", "seed: expected an integer, got True"),
    ("search: {stem_stride: 3}\n", "search.stem_stride: 3 is not one of 1, 2"),
    ("search: [1, 2]\n", "search: expected a mapping, got [1, 2]"),
    ("- 1\n", "the top level must be a mapping"),
    ("search: {skeleton: 5}\n", "search.skeleton: expected a string or a mapping, got 5"),
    ("search: {skeleton: {stem: 16, head_conv: 64}}\n", "search.skeleton.blocks: missing required key"),
    ("search: {skeleton: {stem: 16, head_conv: 64, blocks: [{width: 8, layers: 1, strid: 2}]}}\n",
     "search.skeleton.blocks[0].strid: unknown key (did you mean 'search.skeleton.blocks[0].stride'?)"),
    ("search: {skeleton: {stem: 16, head_conv: 64, blocks: [{width: 8, layers: 0}]}}\n",
     "search.skeleton.blocks[0].layers: must be in 1..16"),
    ("search: {skeleton: mobilenetv9}\n", "unknown preset 'mobilenetv9'"),
    ("search:\n  space: mnasnet\n   resolution: 3\n", "exp.yaml: line 3: invalid YAML"),
    ("seed: !!python/object/apply:os.system ['echo hi']\n", "invalid YAML"),
])
def test_errors_name_file_and_key(tmp_path, text, message):
    assert message in error_of(write(tmp_path, text))


def test_all_errors_are_collected(tmp_path):
    text = "seed: x\nsearch: {resolution: y, colour: red}\n"
    msg = error_of(write(tmp_path, text))
    assert "(and 2 more:" in msg
    for part in ("seed:", "search.resolution:", "search.colour:"):
        assert part in msg


def test_override_errors(tmp_path):
    path = write(tmp_path, "seed: 1\n")
    assert "--set expects key.path=value" in error_of(path, ["seed"])
    assert "search.resolutoin: unknown key" in error_of(path, ["search.resolutoin=32"])
    assert error_of(path, ["seed=x"]).endswith("(from --set seed=...)")
    assert "'seed' is not a section" in error_of(path, ["seed.x=1"])


def test_inline_skeleton_builds_a_space(tmp_path):
    cfg = load_config(write(tmp_path, """
search:
  space: mobilenetv3
  resolution: 32
  stem_stride: 1
  skeleton:
    stem: 16
    head_conv: 96
    head_hidden: 128
    blocks:
      - {width: 16, layers: 1, stride: 1, fixed: {op: dsconv}}
      - {width: 24, layers: 2, stride: 2}
"""))
    space = build_space(cfg, num_classes=10)
    assert len(space.decisions) == 6 + 7
    arch = space.decode({d.name: d.options[0] for d in space.decisions})
    assert arch.num_classes == 10 and arch.head.hidden_ch == 128


def test_missing_file(tmp_path):
    assert "cannot read" in error_of(tmp_path / "nope.yaml")


def test_shipped_experiments_are_valid(repo):
    for path in sorted((repo / "runs").glob("*.yaml")):
        build_space(load_config(path))


def test_exponent_floats_without_a_dot(tmp_path):
    """PyYAML reads `1e-3` as a string (YAML 1.1); the loader takes it as the number."""
    cfg = load_config(write(tmp_path, "train: {lr: 1e-3}\n"), ["controller.lr=5e-4"])
    assert cfg.train.lr == 0.001 and cfg.controller.lr == 0.0005
    assert "expected a number, got 'fast'" in error_of(write(tmp_path, "train: {lr: fast}\n"))


def test_duplicate_keys_and_encoding(tmp_path):
    assert "line 3: invalid YAML: duplicate key 'resolution'" in error_of(
        write(tmp_path, "search:\n  resolution: 32\n  resolution: 64\n"))
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    assert "latin1.yaml: line 1: not UTF-8 text" in error_of(bad)


PIPELINE = """
stages: [search, netadapt]
search: {{space: mobilenetv3, resolution: 32}}
reward: {{target_ms: {target}}}
netadapt: {{{netadapt}}}
"""


def test_netadapt_targets_the_reward_target_unless_told_otherwise(tmp_path):
    exp = opened(write(tmp_path, PIPELINE.format(target=1.5, netadapt="")))
    assert exp.netadapt.target_ms == 1.5 and exp.netadapt.target_ratio is None
    assert exp.config.netadapt.target_ms is None  # the config stays as written
    assert exp.resolved_config()["netadapt"]["target_ms"] == 1.5  # the run records it
    exp = opened(write(tmp_path, PIPELINE.format(target=1.5, netadapt="target_ratio: 0.8")))
    assert exp.netadapt.target_ms is None and exp.netadapt.target_ratio == 0.8
    exp = opened(write(tmp_path, PIPELINE.format(target=1.5, netadapt="target_ms: 1.2")))
    assert exp.netadapt.target_ms == 1.2
    path = write(tmp_path, PIPELINE.format(target="null", netadapt=""))
    assert error_of(path) == (f"{path}: netadapt: set target_ms or target_ratio (or "
                              f"reward.target_ms or reward.target_ratio, which NetAdapt "
                              f"then targets)")
    # NetAdapt priced by another latency model: the reward's ms are not its ms
    other = "latency: {kind: flops, ms_per_mmac: 2.0}"
    path = write(tmp_path, PIPELINE.format(target=1.5, netadapt=other))
    assert error_of(path) == (f"{path}: netadapt.latency: differs from latency:, so the "
                              f"reward's target (priced under latency:) is not NetAdapt's; "
                              f"set netadapt.target_ms or netadapt.target_ratio")
    exp = opened(write(tmp_path, PIPELINE.format(target=1.5, netadapt=other + ", target_ms: 1.2")))
    assert exp.netadapt.target_ms == 1.2
    same = "latency: {kind: measure}"  # the default `latency:` spelled out: the same model
    assert opened(write(tmp_path, PIPELINE.format(target=1.5, netadapt=same))
                  ).netadapt.target_ms == 1.5


def test_netadapt_values_are_checked_as_every_other_section(tmp_path):
    """`netadapt:` goes through the shared value checks: a non-finite number is refused."""
    path = write(tmp_path, PIPELINE.format(target=1.5, netadapt="long_term_epochs: .inf"))
    assert "netadapt.long_term_epochs: must be a finite number, got inf" in error_of(path)
    path = write(tmp_path, PIPELINE.format(target=1.5, netadapt="delta_ratio: .nan"))
    assert "netadapt.delta_ratio: must be a finite number, got nan" in error_of(path)
