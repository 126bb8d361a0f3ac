"""`nas latency build | check | calibrate | export-ops | predict | measure`: the latency
commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from latency.check import format_report, run_check
from latency.deployed import relative_error
from latency.export_ops import export_ops
from latency.measure import (BACKENDS, CLOCKS, DEVICES, STEADY, Protocol, arch_runner,
                             onnx_file_runner, time_interleaved)
from latency.missing import POLICIES, cpu_model
from latency.model import TableModel
from latency.profiler import Coverage, build, recalibrate, resolve_coverage
from latency.runtime import DTYPES
from latency.table import LatencyTable
from search_spaces.factorized import SPACE_NAMES
from search_spaces.infra.errors import UserError
from search_spaces.infra.files import to_json
from search_spaces.reference import resolve_arch
from search_spaces.transforms import with_input

SPACE_HELP = (f"{' | '.join(SPACE_NAMES)} | ARCH.json | a reference net name | EXP.yaml "
              f"(every operator the experiment prices)")

# What `--space EXP.yaml` covers: the experiment's operators. Experiments live in `nas`,
# above this package, so the `nas` parser hands the function in (`add_latency_commands`).
ExperimentCoverage = Callable[[str], Coverage]


def _coverage_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--space", required=required, help=SPACE_HELP)
    p.add_argument("--resolution", type=int, help="input resolution (an ARCH.json: its own)")
    p.add_argument("--stem-stride", type=int, choices=(1, 2),
                   help="stem stride (space default 2; 1 suits 32x32 inputs)")
    p.add_argument("--classes", type=int, help="number of classes (space default 1000)")
    p.add_argument("--skeleton", help="block skeleton preset of the space")
    p.add_argument("--ops", help="the space's conv op choices, comma-separated (default "
                   "conv,dsconv,mbconv3,mbconv6; fused3 and fused6 add fused_mbconv)")
    p.add_argument("--channel-step", type=int, default=8,
                   help="NetAdapt shrink step in channels (default 8)")


def _is_experiment(space: str | None) -> bool:
    return space is not None and Path(space).suffix in (".yaml", ".yml")


def _coverage(args: argparse.Namespace) -> Coverage:
    if _is_experiment(args.space):
        given = [f for f in ("resolution", "stem_stride", "classes", "skeleton", "ops")
                 if getattr(args, f) is not None]
        if given:
            raise UserError(f"--{given[0].replace('_', '-')}: an experiment YAML says it "
                            f"itself (--space {args.space})")
        if args.experiment_coverage is None:
            raise UserError("--space EXP.yaml needs the nas command line (nas latency ...)")
        return args.experiment_coverage(args.space)
    return resolve_coverage(args.space, args.resolution, args.stem_stride, args.classes,
                            args.skeleton, _ops(args.ops))


def _ops(text: str | None) -> list[str] | None:
    return None if text is None else [op.strip() for op in text.split(",") if op.strip()]


def _build(args: argparse.Namespace) -> None:
    protocol = Protocol(args.backend, args.device, args.dtype, args.threads, args.warmup,
                        args.repeats, args.percentile, args.clock)
    out = Path(args.out)
    near = None if args.near_ms is None else (lambda _: args.near_ms)
    table = build(_coverage(args), out, protocol, args.channel_step, args.calibrate,
                  args.chunk, args.seed, near=near)
    cal = table.calibration
    note = f"; calibration {cal.formula()} ({cal.how()})" if cal else ""
    print(f"{out}: {len(table)} rows{note}")


def _table_coverage(table: LatencyTable, args: argparse.Namespace) -> Coverage:
    """The space/network to check: the command line's (an experiment YAML: what it
    prices), else the table's metadata."""
    if _is_experiment(args.space):
        return _coverage(args)
    meta = table.meta
    spec = args.space or meta.get("space")
    if not spec:
        raise UserError("the table names no space: pass --space", table.source)
    from_table = args.space is None or args.space == meta.get("space")

    def pick(value: int | None, key: str) -> int | None:
        return value if value is not None else (table.meta_int(key) if from_table else None)

    skeleton = args.skeleton or (meta.get("skeleton") if from_table and spec in SPACE_NAMES
                                 and meta.get("skeleton") != "custom" else None)
    ops = _ops(args.ops) or (_ops(meta.get("ops")) if from_table and spec in SPACE_NAMES
                             else None)
    return resolve_coverage(spec, pick(args.resolution, "resolution"),
                            pick(args.stem_stride, "stem_stride"),
                            pick(args.classes, "num_classes"), skeleton, ops)


def _check(args: argparse.Namespace) -> None:
    table = LatencyTable.load(args.table)
    result = run_check(table, _table_coverage(table, args), args.samples, args.policy,
                       args.seed, args.channel_step, args.repeats, near_ms=args.near_ms)
    print(to_json(result) if args.json else format_report(result))


def _calibrate(args: argparse.Namespace) -> None:
    table = LatencyTable.load(args.table)
    before = table.calibration
    cal = recalibrate(table, _table_coverage(table, args), args.networks, args.seed,
                      args.channel_step, args.near_ms)
    was = f"was {before.formula()}" if before else "had none"
    print(f"{args.table}: calibration {cal.formula()} ({cal.how('networks measured now')}; "
          f"{was})")


def _export(args: argparse.Namespace) -> None:
    template = export_ops(_coverage(args), Path(args.out), args.channel_step,
                          dtype=args.dtype)
    print(f"{template}: fill latency_ms from timing the models in {template.parent / 'ops'}")


def _predict(args: argparse.Namespace) -> None:
    table = LatencyTable.load(args.table)
    model = TableModel(table, args.policy, calibrated=not args.raw)
    arch = with_input(resolve_arch(args.arch), args.resolution, args.classes, args.stem_stride)
    est = model.predict(arch)
    if args.json:
        print(to_json({"ms": est.ms, "raw_ms": est.raw_ms, "source": est.source,
                       "interpolated": est.interpolated}, indent=None))
    else:
        print(f"{est.ms:.4f} ms ({est.source}; sum of rows {est.raw_ms:.4f} ms)")


def _measure(args: argparse.Namespace) -> None:
    target = Path(args.model)
    if target.is_dir():  # a network folder: its ONNX export (int8: model.int8.onnx), else
        onnx = target / ("model.int8.onnx" if args.dtype == "int8" else "model.onnx")
        if args.dtype == "int8" and not onnx.is_file():  # its arch.json
            raise UserError("--dtype int8: the folder has no model.int8.onnx (export.int8: "
                            "true writes it)", str(target))
        target = onnx if onnx.is_file() else target / "arch.json"
    is_onnx = target.suffix == ".onnx"
    backend = args.backend or ("onnxruntime" if is_onnx else "torch")
    if is_onnx and backend != "onnxruntime":
        raise UserError(f"--backend {backend}: an ONNX file runs under onnxruntime; give "
                        f"the network's arch.json to time it in torch", str(target))
    arch_spec = args.arch or (target.with_name("arch.json") if is_onnx else target)
    arch = None
    if not is_onnx or Path(arch_spec).is_file():
        arch = with_input(resolve_arch(arch_spec), args.resolution, args.classes,
                          args.stem_stride)
    if is_onnx and not target.is_file():
        raise UserError("no such file", str(target))
    # an ONNX file runs as it is: its dtype is the file's
    protocol = Protocol(backend, "cpu", "fp32" if is_onnx else args.dtype, args.threads,
                        args.warmup, args.repeats, args.percentile)
    protocol.check()
    model = None
    if args.table:  # every input checked before anything is timed
        if arch is None:
            raise UserError("--table: predicting needs the network's Arch: pass --arch "
                            "ARCH.json (or keep arch.json beside the ONNX file)", str(target))
        model = TableModel(LatencyTable.load(args.table), args.policy)
    if is_onnx:
        if arch is None and args.resolution is None:
            raise UserError("--resolution: needed for an ONNX file with no arch.json beside "
                            "it (or pass --arch)", str(target))
        side = arch.resolution if arch is not None else args.resolution
        channels = arch.in_ch if arch is not None else 3
        runner = onnx_file_runner(target, (1, channels, side, side), protocol.threads)
    else:
        assert arch is not None
        runner = arch_runner(arch, protocol)
    timing = time_interleaved([runner], protocol, settle=STEADY)[0]
    out = {"model": str(target), "backend": backend, "threads": protocol.threads,
           "measured_ms": timing.ms, "std_ms": timing.std_ms, "runs": timing.count,
           "statistic": f"p{protocol.percentile:g}", "machine": cpu_model()}
    if model is not None:
        assert arch is not None
        est = model.predict(arch)
        out.update(table=args.table, predicted_ms=est.ms,
                   relative_error=relative_error(est.ms, timing.ms))
    if args.json:
        print(to_json(out, indent=None))
        return
    line = (f"{target}: {timing.ms:.4f} ms measured ({backend}, {protocol.threads} "
            f"thread(s), batch 1, p{protocol.percentile:g} of {timing.count} runs, spread "
            f"{timing.std_ms:.4f} ms) on {out['machine']}")
    if args.table:
        line += (f"; predicted {out['predicted_ms']:.4f} ms by {args.table} "
                 f"({out['relative_error']:+.1%})")
    print(line)


def _near_arg(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--near-ms", type=float, metavar="MS", help=help)


def add_latency_commands(sub: argparse._SubParsersAction,
                         experiment_coverage: ExperimentCoverage | None = None) -> None:
    """Register `nas latency ...` on the `nas` parser's subcommands; `experiment_coverage`
    prices an experiment YAML given as `--space`."""
    lat = sub.add_parser("latency",
                         help="latency tables: build, check, calibrate, export-ops, predict; "
                              "measure a model")
    lat.set_defaults(experiment_coverage=experiment_coverage)
    cmds = lat.add_subparsers(dest="latency_command", required=True, metavar="COMMAND")

    p = cmds.add_parser("build", help="time every operator a space can reach into a table")
    _coverage_args(p, required=True)
    p.add_argument("--out", required=True, help="table CSV to write (an existing one resumes)")
    p.add_argument("--backend", choices=BACKENDS, default="torch")
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.add_argument("--dtype", choices=DTYPES, default="fp32",
                   help="onnxruntime: fp32, or static QDQ int8 (what the int8 export ships)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=Protocol.warmup, help="untimed rounds")
    p.add_argument("--repeats", type=int, default=Protocol.repeats, help="timed rounds")
    p.add_argument("--percentile", type=float, default=Protocol.percentile,
                   help="statistic over the timed rounds (default %(default)s)")
    p.add_argument("--clock", choices=CLOCKS, default="auto",
                   help="wall time, or the thread's CPU time (auto: thread on cpu with 1 thread)")
    p.add_argument("--calibrate", type=int, default=20,
                   help="networks measured end to end to fit the calibration (0: none)")
    _near_arg(p, "fit the calibration on the networks priced nearest MS (uncalibrated), "
                 "e.g. the run's target (default: all over the space)")
    p.add_argument("--chunk", type=int, default=24, help="operators timed round-robin together")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_build)

    p = cmds.add_parser("check", help="measure networks end to end against a table")
    p.add_argument("--table", required=True)
    _coverage_args(p, required=False)
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--policy", choices=POLICIES, default="interpolate",
                   help="for rows the table lacks (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, help="timed rounds (default: the table's)")
    _near_arg(p, "a third of the networks priced nearest MS (e.g. the run's target)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_check)

    p = cmds.add_parser("calibrate", help="re-fit a table's calibration on networks "
                                          "measured now (the machine's level drifts)")
    p.add_argument("--table", required=True)
    _coverage_args(p, required=False)
    p.add_argument("--networks", type=int, default=20,
                   help="networks measured end to end, twice (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    _near_arg(p, "the networks priced nearest MS (default: the build's, if it had one)")
    p.set_defaults(func=_calibrate)

    p = cmds.add_parser("export-ops", help="ONNX model per operator + template.csv for a device")
    _coverage_args(p, required=True)
    p.add_argument("--out", required=True, help="folder for ops/*.onnx and template.csv")
    p.add_argument("--dtype", choices=DTYPES, default="fp32",
                   help="the operators' deployed form: fp32, or static QDQ int8")
    p.set_defaults(func=_export)

    p = cmds.add_parser("predict", help="latency of one architecture from a table")
    p.add_argument("--table", required=True)
    p.add_argument("arch", help="Arch JSON file or reference net name")
    p.add_argument("--resolution", type=int)
    p.add_argument("--classes", type=int)
    p.add_argument("--stem-stride", type=int, choices=(1, 2))
    p.add_argument("--policy", choices=POLICIES, default="error")
    p.add_argument("--raw", action="store_true", help="the plain sum of rows, uncalibrated")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_predict)

    p = cmds.add_parser("measure", help="time an exported model or an Arch end to end here "
                                        "(with --table: against the table's prediction)")
    p.add_argument("model", help="MODEL.onnx, ARCH.json, a reference net name, or a folder "
                   "with model.onnx / arch.json (a run's final/)")
    p.add_argument("--backend", choices=BACKENDS,
                   help="default: onnxruntime for an ONNX file, torch for an Arch")
    p.add_argument("--dtype", choices=DTYPES, default="fp32",
                   help="an Arch under onnxruntime: exported as fp32 or int8; a folder: "
                        "int8 times its model.int8.onnx")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=Protocol.warmup, help="untimed rounds")
    p.add_argument("--repeats", type=int, default=Protocol.repeats, help="timed rounds")
    p.add_argument("--percentile", type=float, default=Protocol.percentile,
                   help="statistic over the timed rounds (default %(default)s)")
    p.add_argument("--table", help="a latency table: print its prediction and the error")
    p.add_argument("--policy", choices=POLICIES, default="interpolate",
                   help="for rows the table lacks (default %(default)s)")
    p.add_argument("--arch", help="the ONNX file's Arch JSON (default: arch.json beside it)")
    p.add_argument("--resolution", type=int)
    p.add_argument("--classes", type=int)
    p.add_argument("--stem-stride", type=int, choices=(1, 2))
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_measure)


if __name__ == "__main__":
    sys.exit("run as `nas latency ...`")
