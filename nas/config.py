"""The experiment config: YAML -> dataclasses (strict), and what it builds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from nas.data import DataConfig
from nas.raytune import RayConfig
from nas.resolve import anchor, resolve_net
from nas.search.controller import ControllerConfig
from nas.search.evaluators import EVALUATORS, WITH_WEIGHTS, make_evaluator
from nas.search.evaluators.supernet import SupernetConfig, supernet_file
from nas.search.predictor import PredictorConfig
from nas.search.rewards import RewardConfig
from nas.search.strategies import STRATEGIES, EvolutionConfig
from nas.train import TrainConfig
from netadapt.config import NetAdaptConfig
from search_spaces.arch import Arch
from search_spaces.factorized import FAMILIES, FactorizedSpace
from search_spaces.infra import limits
from search_spaces.infra.checks import (at_least_one, each, named, non_negative, open_unit,
                                        percentage, plain_name, positive)
from search_spaces.infra.errors import UserError
from search_spaces.infra.strict import apply_overrides, load_dataclass, read_yaml
from search_spaces.skeletons import Skeleton
from search_spaces.transforms import with_input


@dataclass
class SearchConfig:
    """`search:` what is searched (the space), at which input size, by which strategy."""

    space: Literal["mnasnet", "mobilenetv3"] = "mnasnet"
    # A preset name (mobilenetv2, a1, mobilenetv3_large, mobilenetv3_small) or an
    # inline skeleton; absent: the space's default (mobilenetv2 / mobilenetv3_large).
    skeleton: str | Skeleton | None = None
    # The conv op choices of every block; absent: conv, dsconv, mbconv3, mbconv6
    # (MnasNet sec. 4.1). fused3 / fused6 add fused_mbconv (EfficientNetV2).
    ops: list[str] | None = None
    resolution: int = field(default=224, metadata={"check": limits.resolution})
    # 2 as in the papers at 224x224; 1 suits CIFAR-size inputs.
    stem_stride: Literal[1, 2] = 2
    strategy: str = field(default="rl", metadata={"check": named(STRATEGIES)})
    # Children evaluated, failed and cached ones included (a budget of attempts).
    num_trials: int = field(default=20, metadata={"check": positive})
    executor: Literal["ray", "inline"] = "ray"
    max_failed_trials: int = field(default=5, metadata={"check": non_negative})
    # How a child's accuracy is obtained, a key of `nas.search.evaluators.EVALUATORS`:
    # `train` proxy-trains each child (MnasNet); `supernet` scores it with weights
    # inherited from one trained supernet (TuNAS, `supernet:`), thousands of children
    # for the cost of a few.
    evaluator: str = field(default="train", metadata={"check": named(EVALUATORS)})
    # A supernet trained before (another run's folder or its search/supernet.pt), of the
    # same space: the supernet evaluator scores children from it and trains none.
    supernet: Path | None = None


@dataclass
class LatencyConfig:
    """`latency:` how a network's latency is obtained (docs/latency.md).

    `table`: sum of rows of the lookup table at `path` (missing rows: `policy`);
    `measure`: time the network here with the measurement protocol; `flops`: MACs as
    a proxy, `ms_per_mmac * MMACs + offset_ms`.
    """

    kind: Literal["table", "measure", "flops"] = "measure"
    path: Path | None = None  # the table file (kind: table)
    policy: Literal["error", "interpolate", "measure"] = "error"
    calibrated: bool = True  # apply the table's calibration, if it has one
    # if_missing: build the table on this machine the first time (nas.tables), reuse it
    # after; never: the table must exist
    build: Literal["never", "if_missing"] = "never"
    backend: Literal["torch", "onnxruntime"] = "torch"
    device: Literal["cpu", "cuda"] = "cpu"
    # onnxruntime: what ships, fp32 or static QDQ int8 (latency.runtime)
    dtype: Literal["fp32", "int8"] = "fp32"
    # A table's drift probe timed again at the run's start (latency.drift): past
    # `drift_tolerance`, `rescale` prices with the probe's ratio, `refuse` stops, `warn`
    # says so only.
    drift: Literal["rescale", "refuse", "warn"] = "rescale"
    drift_tolerance: float = field(default=0.10, metadata={"check": positive})
    threads: int = field(default=1, metadata={"check": positive})
    warmup: int = field(default=5, metadata={"check": non_negative})
    repeats: int = field(default=30, metadata={"check": positive})
    percentile: float = field(default=10.0, metadata={"check": percentage})
    # thread: the timing thread's CPU time (cpu, 1 thread); auto picks it where valid.
    clock: Literal["auto", "wall", "thread"] = "auto"
    ms_per_mmac: float = field(default=1.0, metadata={"check": positive})
    offset_ms: float = field(default=0.0, metadata={"check": non_negative})  # fixed overhead

    def __post_init__(self) -> None:
        # Checked where the section loads, so `latency:` and `netadapt.latency:` both get it.
        if self.kind == "table" and self.path is None:
            raise UserError("path: missing required key (kind is table)")
        if self.build != "never" and self.kind != "table":
            raise UserError(f"build: {self.build} builds a table; kind is {self.kind}")
        if self.dtype != "fp32" and self.backend != "onnxruntime":
            raise UserError(f"dtype: {self.dtype} is timed with backend onnxruntime, the "
                            f"backend is {self.backend}")


@dataclass
class FinalConfig:
    """`final:` how the final network is trained (the rest comes from `train:`)."""

    # scratch; netadapt: NetAdapt's weights; an evaluator that shares weights (supernet):
    # the weights the search's best inherits from it (search.evaluator: the same).
    init: str = field(default="scratch",
                      metadata={"check": named(("scratch", "netadapt", *WITH_WEIGHTS))})
    epochs: float | None = field(default=None, metadata={"check": positive})
    steps: int | None = field(default=None, metadata={"check": positive})
    lr: float | None = field(default=None, metadata={"check": positive})  # None: train.lr

    def __post_init__(self) -> None:
        if self.epochs is not None and self.steps is not None:
            raise UserError("final: set epochs or steps, not both")


@dataclass
class ReportConfig:
    """`report:` what report.md compares the final network with."""

    # Train MobileNetV3-Small and -Large (at the run's input size) with the final
    # network's budget, so the report can show their test top-1 too.
    train_references: bool = False


@dataclass
class ExportConfig:
    """`export:` the formats written beside `final/arch.json` + `weights.pt`."""

    formats: list[Literal["onnx", "pt2"]] = field(default_factory=lambda: ["onnx"])
    # time the exported model (ONNX Runtime and torch) here, beside the prediction
    measure: bool = True
    # also final/model.int8.onnx: static QDQ int8, calibrated on this many training
    # images; its test top-1 and the drop against fp32 go into final/metrics.json
    int8: bool = False
    int8_calibration_images: int = field(default=256, metadata={"check": positive})

    def __post_init__(self) -> None:
        if self.int8 and "onnx" not in self.formats:
            raise UserError("int8: quantises the ONNX export; add onnx to export.formats")


@dataclass
class LimitsConfig:
    """`limits:` ceilings of one experiment, checked before anything is allocated: the
    parameters of the space's largest child (or its supernet) and of NetAdapt's named
    start, and the images held in memory (read and resized). Any Arch file is also
    refused past `search_spaces.infra.limits.MAX_PARAMS` whatever this says."""

    max_params: int = field(default=limits.MAX_PARAMS, metadata={"check": positive})
    max_data_gib: float = field(default=limits.MAX_DATA_GIB, metadata={"check": positive})


@dataclass
class ProxyCheckConfig:
    """`proxy_check:` what `nas proxy-check` measures (`nas.stages.proxycheck`)."""

    archs: int = field(default=20, metadata={"check": positive})
    epochs: float = field(default=10.0, metadata={"check": positive})  # the long training
    # keys of `nas.search.evaluators.EVALUATORS`, scored in this order (default: all)
    evaluators: list[str] = field(default_factory=lambda: list(EVALUATORS),
                                  metadata={"check": each(named(EVALUATORS))})
    pool: int = field(default=10, metadata={"check": positive})  # random children per arch
    # Stand-alone trainings per architecture, each under its own seed: with 2 or more,
    # the tau between the first two is the ceiling no evaluator can be expected to pass.
    reference_seeds: int = field(default=1, metadata={"check": at_least_one})
    # The band the search picks from: the reward's target +- `band` (relative). Tau is
    # reported inside it too, and `band_archs` more architectures are drawn from it.
    band: float = field(default=0.15, metadata={"check": open_unit})
    band_archs: int = field(default=0, metadata={"check": non_negative})
    bootstrap: int = field(default=1000, metadata={"check": non_negative})  # CI resamples
    # Another check's run directory: its stand-alone trainings of the same architectures
    # (matched by hash) are copied in rather than trained again, so evaluator settings
    # compare against one reference (`nas.stages.proxycheck.reuse_references`).
    references: Path | None = None


STAGES = ("search", "netadapt", "final_train", "export")


@dataclass
class NetAdaptSection(NetAdaptConfig):
    """`netadapt:` the algorithm's settings plus where it starts and how it trains.

    `start`: a folder with `arch.json` (+ `weights.pt`), an Arch JSON file (`weights`
    names its state dict), a run directory (its search's best), or a reference net by
    name; absent, the run's own search stage's best. Without weights the start is
    pre-trained for `pretrain_epochs` first.
    """

    start: str | None = None
    weights: Path | None = None
    pretrain_epochs: float = field(default=1.0, metadata={"check": positive})
    # Fine-tunes (short- and long-term) start from trained weights: a tenth of
    # train.lr when unset.
    lr: float | None = field(default=None, metadata={"check": positive})
    latency: LatencyConfig | None = None  # default: the experiment's `latency:`
    measure: bool = False  # also time every proposal on this machine (history.csv)


@dataclass
class ExperimentConfig:
    """The whole experiment YAML."""

    # default: the YAML file's stem
    name: str | None = field(default=None, metadata={"check": plain_name})
    output_dir: Path | None = None  # default: the YAML file's folder
    seed: int = field(default=0, metadata={"check": limits.seed})
    search: SearchConfig = field(default_factory=SearchConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    proxy_check: ProxyCheckConfig = field(default_factory=ProxyCheckConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    netadapt: NetAdaptSection | None = None
    final: FinalConfig = field(default_factory=FinalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    # What `nas search` runs, in order; each stage reads what the one before wrote.
    stages: list[Literal["search", "netadapt", "final_train", "export"]] = field(
        default_factory=lambda: ["search"])
    source: str = field(default="<config>", init=False, repr=False)  # the YAML path

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (`Experiment.resolved_config` adds the targets)."""
        data = _plain(asdict(self))
        data.pop("source")
        return data


def _plain(value: Any) -> Any:
    """Paths as strings, recursively, so the config dumps as YAML and reloads."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read an experiment YAML strictly; `overrides` are `key.path=value` strings."""
    path = Path(path)
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError("the top level must be a mapping of sections", str(path))
    overrides = overrides or []
    data = apply_overrides(data, overrides, str(path))
    cwd_keys = frozenset(item.partition("=")[0] for item in overrides)
    _one_target(data, cwd_keys)
    try:
        cfg: ExperimentConfig = load_dataclass(ExperimentConfig, data, str(path),
                                               path.resolve().parent, cwd_keys)
    except UserError as err:
        key = err.message.partition(":")[0]
        if key in cwd_keys:  # the mistake is on the command line, not in the file
            raise UserError(f"{err.message} (from --set {key}=...)", err.source) from None
        raise
    cfg.source = str(path)
    cfg.name = cfg.name or path.stem
    cfg.output_dir = cfg.output_dir or path.resolve().parent
    space = build_space(cfg)  # semantic checks of the space and skeleton
    _check_stages(cfg, path)
    if "search" in cfg.stages:
        _check_space_size(cfg, space, path)
    if cfg.netadapt is not None and cfg.netadapt.start is not None:
        # relative to the YAML's folder, or to the current directory when given with --set
        base = Path.cwd() if "netadapt.start" in cwd_keys else path.resolve().parent
        cfg.netadapt.start = anchor(cfg.netadapt.start, base)
    if cfg.reward.target_reference is not None:
        base = Path.cwd() if "reward.target_reference" in cwd_keys else path.resolve().parent
        cfg.reward.target_reference = anchor(cfg.reward.target_reference, base)
    if cfg.reward.target_ratio is not None:
        target_reference(cfg)  # an unknown name or a bad file: refused before any run
    return cfg


def _one_target(data: dict[str, Any], cwd_keys: frozenset[str]) -> None:
    """`--set reward.target_ms=...` on a file with a `target_ratio` (or the reverse)
    replaces the file's target rather than conflicting with it."""
    reward = data.get("reward")
    if not isinstance(reward, dict):
        return
    given = {"reward.target_ms", "reward.target_ratio"} & cwd_keys
    if given == {"reward.target_ms"}:
        reward.pop("target_ratio", None)
        reward.pop("target_reference", None)
    elif given == {"reward.target_ratio"}:
        reward.pop("target_ms", None)


def _check_stages(cfg: ExperimentConfig, path: Path) -> None:
    order = [STAGES.index(s) for s in cfg.stages]
    if not cfg.stages or order != sorted(set(order)):
        raise UserError(f"stages: expected a non-empty subsequence of {list(STAGES)}, "
                        f"got {cfg.stages}", str(path))
    if "final_train" in cfg.stages and not {"search", "netadapt"} & set(cfg.stages):
        raise UserError("stages: final_train trains what search or netadapt found; list "
                        "one of them before it", str(path))
    if "export" in cfg.stages and "final_train" not in cfg.stages:
        raise UserError("stages: export writes the final_train stage's network; list "
                        "final_train before it", str(path))
    init = cfg.final.init
    if init in EVALUATORS and "final_train" in cfg.stages and (
            cfg.search.evaluator != init or "netadapt" in cfg.stages
            or "search" not in cfg.stages):
        raise UserError(f"final.init: {init} fine-tunes the search's best child with the "
                        f"weights it inherits: it needs the search stage with "
                        f"search.evaluator: {init} and no netadapt stage between", str(path))
    if cfg.search.supernet is not None:
        if cfg.search.evaluator != "supernet":
            raise UserError(f"search.supernet: only the supernet evaluator scores children "
                            f"from a trained supernet (search.evaluator is "
                            f"{cfg.search.evaluator}); set search.evaluator: supernet",
                            str(path))
        cfg.search.supernet = supernet_file(cfg.search.supernet, str(path))
    if "netadapt" in cfg.stages and cfg.netadapt is None:
        raise UserError("netadapt: missing required section (stages include netadapt)",
                        str(path))
    na = cfg.netadapt
    if na is not None and "netadapt" in cfg.stages and na.target_ms is None \
            and na.target_ratio is None:
        # The user's latency target is the result's: NetAdapt shrinks to the reward's
        # target unless told otherwise (`nas.experiment` resolves it; the run's
        # config.yaml records it).
        if cfg.reward.target_ms is None and cfg.reward.target_ratio is None:
            raise UserError("netadapt: set target_ms or target_ratio (or reward.target_ms "
                            "or reward.target_ratio, which NetAdapt then targets)", str(path))
        if na.latency is not None and na.latency != cfg.latency:
            # the reward's milliseconds are `latency:`'s; under another model the same
            # number is another target (a phone table's ms against this machine's)
            raise UserError("netadapt.latency: differs from latency:, so the reward's "
                            "target (priced under latency:) is not NetAdapt's; set "
                            "netadapt.target_ms or netadapt.target_ratio", str(path))


# The reference net a relative reward target defaults to, by skeleton.
NAMESAKES = {"mobilenetv3_small": "mobilenet_v3_small", "mobilenetv3_large": "mobilenet_v3_large"}


def target_reference(cfg: ExperimentConfig, num_classes: int = 10) -> Arch:
    """The net `reward.target_ratio` is a fraction of, at the experiment's input size,
    classes and stem stride (as the report's reference rows)."""
    s, name = cfg.search, cfg.reward.target_reference
    if name is None:
        preset = FAMILIES[s.space].default_skeleton if s.skeleton is None else s.skeleton
        name = NAMESAKES.get(preset) if isinstance(preset, str) else None  # not inline
        if name is None:
            raise UserError("reward.target_reference: missing (this skeleton has no "
                            "namesake reference net; name one, e.g. mobilenet_v3_small, or "
                            "give an Arch JSON)", cfg.source)
    try:
        arch = resolve_net(name).arch
    except UserError as err:
        raise UserError(f"reward.target_reference: {err.message}", cfg.source) from None
    return with_input(arch, s.resolution, num_classes, s.stem_stride)


def _check_space_size(cfg: ExperimentConfig, space: FactorizedSpace, path: Path) -> None:
    """The most one evaluation holds (the largest child, or a supernet) within
    `limits.max_params`, before anything is built: a skeleton of huge widths fails
    here, not in every trial."""
    bound, what = make_evaluator(cfg.search.evaluator).params_bound(space)
    if bound > cfg.limits.max_params:
        raise UserError(f"search.skeleton: {what} up to {bound:,} parameters, more than "
                        f"limits.max_params ({cfg.limits.max_params:,}); shrink the "
                        f"skeleton or raise the limit", str(path))


def build_space(cfg: ExperimentConfig, num_classes: int = 10) -> FactorizedSpace:
    """The search space the config describes (`num_classes` comes from the data)."""
    s = cfg.search
    try:
        return FactorizedSpace(s.space, s.skeleton, s.resolution, s.stem_stride, num_classes,
                               ops=s.ops)
    except UserError as err:
        raise UserError(err.message, cfg.source) from None
