"""Does a latency table price everything an experiment will ask of it? Checked before
the run directory exists, so a phone table with a gap fails in seconds, not at the
report 35 minutes in.

What an experiment prices: every operator its search space can produce (enumerated,
not sampled), NetAdapt's start when the YAML names one (with its one-dimensional
shrink grids), and the reference nets the report sets beside the result, at the
run's input size.
"""

from __future__ import annotations

from pathlib import Path
from latency.missing import unfillable, write_missing
from latency.model import TableModel
from latency.profiler import Coverage, space_signatures
from latency.signature import Signature, signatures
from nas.config import ExperimentConfig, target_reference
from search_spaces.arch import Arch
from search_spaces.factorized import FactorizedSpace
from search_spaces.infra.errors import UserError
from search_spaces.reference import BASELINES, load_reference
from search_spaces.transforms import with_input

# What fills a gap under each policy, for the error line.
_FILLS = {"error": "policy 'interpolate' fills widths between rows of the same shape",
          "interpolate": "interpolation needs a row of the same shape (op, size, kernel, "
                         "stride, activation, skip, SE or not)",
          "measure": "policy 'measure' times only on the machine the table was timed on"}


def reference_signatures(arch_like: FactorizedSpace | Arch, names: tuple[str, ...]
                         ) -> list[Signature]:
    """The reference nets `names` at the input size, classes and stem of `arch_like`."""
    if isinstance(arch_like, FactorizedSpace):
        res, classes, stride = arch_like.resolution, arch_like.num_classes, arch_like.stem_stride
    else:
        res, classes, stride = arch_like.resolution, arch_like.num_classes, arch_like.stem.stride
    sigs: dict[Signature, None] = {}
    for name in names:
        sigs.update(dict.fromkeys(signatures(with_input(load_reference(name), res, classes,
                                                        stride))))
    return list(sigs)


def netadapt_signatures(start: Arch, channel_step: int) -> list[Signature]:
    """NetAdapt's start and every one-dimensional shrink of it NetAdapt can propose."""
    return Coverage(start.name or "start", arch=start).signatures(channel_step)


def experiment_signatures(cfg: ExperimentConfig, space: FactorizedSpace,
                          netadapt_start: Arch | None) -> list[Signature]:
    """Every operator signature the experiment's stages and its report will price."""
    sigs: dict[Signature, None] = {}
    if "search" in cfg.stages:
        sigs.update(dict.fromkeys(space_signatures(space)))
    if netadapt_start is not None and cfg.netadapt is not None:
        sigs.update(dict.fromkeys(netadapt_signatures(netadapt_start,
                                                      cfg.netadapt.channel_step)))
    sigs.update(dict.fromkeys(reference_signatures(netadapt_start or space, BASELINES)))
    if cfg.reward.target_ratio is not None:  # the net a relative target is priced from
        sigs.update(dict.fromkeys(signatures(target_reference(cfg, space.num_classes))))
    return list(sigs)


def coverage_of(cfg: ExperimentConfig, label: str, space: FactorizedSpace,
                start: Arch | None, sigs: list[Signature]) -> Coverage:
    """The table identity an experiment's operators `sigs` are built under: its search
    space, or without a search stage NetAdapt's start (so a NetAdapt-only experiment
    does not time the whole space)."""
    if "search" in cfg.stages or start is None:
        return Coverage(label, space=space, extra=tuple(sigs))
    return Coverage(label, arch=start, extra=tuple(sigs))


def check_coverage(model: TableModel, sigs: list[Signature], key: str, source: str,
                   resolution: int) -> None:
    """Refuse (one line) when `model`'s table can neither look up nor fill some of
    `sigs` under its policy; the missing rows go to `<table>.missing.csv` to fill."""
    table = model.table
    built_for = table.meta.get("resolution", "")
    if built_for not in ("", str(resolution)):  # the whole table is for another size
        raise UserError(f"the table covers {built_for}x{built_for} inputs, the network is "
                        f"{resolution}x{resolution}", table.source)
    gaps = unfillable(table, sigs, model.policy)
    if not gaps:
        return
    where = ""
    if table.path is not None:
        out = Path(table.path).with_suffix(".missing.csv")
        try:
            write_missing(table, gaps, out)
            where = f"; they are listed in {out}: time them on the device and append them"
        except Exception:  # a read-only folder: the line still says what is missing
            where = ""
    raise UserError(f"{key}: {len(gaps)} of the {len(set(sigs))} operators this experiment "
                    f"prices are not in the table and policy '{model.policy}' cannot fill "
                    f"them ({_FILLS[model.policy]}), e.g. {gaps[0].describe()}{where}",
                    source)
