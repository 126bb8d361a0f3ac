"""The `nas` command line: the parser, and one short function per command that calls
the package (`nas.pipeline`, `nas.show`, `nas.evaluation`, `nas.stages`)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from latency.cli import add_latency_commands
from latency.profiler import Coverage
from nas import pipeline, show
from nas.evaluation import SPLITS, evaluate_network
from nas.experiment import open_experiment
from nas.resolve import resolve_net, run_classes
from nas.rundir import RunDir, last_written
from nas.search.core import SearchFailed
from nas.stages.export import export_child, export_network
from nas.stages.proxycheck import run_proxy_check
from nas.stages.report import write_report
from netadapt.loop import NetAdaptFailed
from search_spaces.infra.errors import UserError, WriteError
from search_spaces.infra.files import to_json
from search_spaces.infra.weights import ARCH_FILE, WEIGHTS_FILE
from search_spaces.reference import reference_names
from search_spaces.transforms import with_input

# What a command taking "a network" accepts besides a reference name (nas.resolve).
NETWORK = (f"an Arch JSON file, a folder with {ARCH_FILE}, or a run directory "
           f"(its latest network)")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _overrides(args: argparse.Namespace, *extra: str) -> list[str]:
    """`--set` items, then `--seed` as `seed=N`, then what the command fixes."""
    seed = [f"seed={args.seed}"] if args.seed is not None else []
    return list(args.set or []) + seed + list(extra)


def _info(args: argparse.Namespace) -> None:
    arch = with_input(resolve_net(args.arch).arch, args.resolution, args.classes,
                      args.stem_stride)
    print(show.layer_table(arch, str(args.arch), args.json))


def _validate(args: argparse.Namespace) -> None:
    print(show.validation(Path(args.file)))


def _search(args: argparse.Namespace) -> None:
    if args.dry_run:
        print(show.dry_run(open_experiment(args.experiment, _overrides(args),
                                           latency="plan")))
        return
    pipeline.start(open_experiment(args.experiment, _overrides(args)))


def _netadapt(args: argparse.Namespace) -> None:
    pipeline.start(open_experiment(args.experiment, _overrides(args, "stages=[netadapt]")))


def _evaluate(args: argparse.Namespace) -> None:
    result = evaluate_network(args.arch, args.weights, args.data, args.split, args.mean,
                              args.std)
    if args.json:
        print(to_json(result))
    else:
        print(f"top-1 {result['top1']:.4f} on {result['images']} images: {result['scored']} "
              f"({result['params']:,} params, {result['macs'] / 1e6:.1f}M MACs)")


def _export(args: argparse.Namespace) -> None:
    if args.child is not None:
        run = RunDir.open(args.source)
        exp = open_experiment(run.config_path, latency="none")
        arch, written = export_child(exp, run, args.child, Path(args.output), args.format)
        print(f"{written[0].parent}: {' + '.join(p.name for p in written)} (a child of "
              f"{run.root}, weights from its {exp.evaluator.name} evaluator, hash "
              f"{arch.hash()})")
        return
    if args.format is None:
        raise UserError("--format: required (json, onnx or pt2) unless --child is given")
    diff = export_network(args.source, args.format, Path(args.output), args.weights, _stderr)
    check = "" if diff is None else f" (max |torch - exported| {diff:.1e})"
    print(f"{args.output}: {args.format}{check}")


def _report(args: argparse.Namespace) -> None:
    run = RunDir.open(args.run_dir)
    with run.writing():
        exp = open_experiment(run.config_path, data=False, latency="load",
                              num_classes=run_classes(run))
        print(write_report(exp, run))


def _proxy_check(args: argparse.Namespace) -> None:
    run_proxy_check(args.source, list(args.set or []), args.archs)


def _resume(args: argparse.Namespace) -> None:
    pipeline.resume(args.run_dir)


def _results(args: argparse.Namespace) -> None:
    print(show.trials_text(args.run_dir, args.pareto, args.format))


def experiment_coverage(path: str) -> Coverage:
    """What `nas latency ... --space EXP.yaml` covers: every operator the experiment
    prices (its space, NetAdapt's named start and shrinks, the reference nets), learnt
    without reading its images."""
    return open_experiment(path, data=False, latency="none").coverage()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nas", description="Platform-aware NAS: MnasNet search + NetAdapt.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="layer table with params and MACs of an architecture")
    p.add_argument("arch", help=f"reference net ({', '.join(reference_names())}), {NETWORK}")
    p.add_argument("--resolution", type=int, help="input resolution (default: the arch's)")
    p.add_argument("--classes", type=int, help="number of classes (default: the arch's)")
    p.add_argument("--stem-stride", type=int, choices=(1, 2), help="override the stem stride")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_info)

    p = sub.add_parser("validate", help="check an experiment YAML or an Arch JSON")
    p.add_argument("file")
    p.set_defaults(func=_validate)

    p = sub.add_parser("search", help="run an experiment: the search and its stages")
    p.add_argument("experiment", help="experiment YAML")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key (repeatable), e.g. search.num_trials=10")
    p.add_argument("--seed", type=int, help="shorthand for --set seed=N")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved config, the space size and one sampled child")
    p.set_defaults(func=_search)

    p = sub.add_parser("netadapt", help="shrink a network to a latency target (NetAdapt alone)")
    p.add_argument("experiment", help="experiment YAML with a netadapt: section")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key (repeatable), e.g. netadapt.target_ratio=0.5")
    p.add_argument("--seed", type=int, help="shorthand for --set seed=N")
    p.set_defaults(func=_netadapt)

    p = sub.add_parser("evaluate", help="top-1 of a trained network on a data split")
    p.add_argument("arch", help=f"reference net, {NETWORK}")
    p.add_argument("weights", help="state dict (.pt), or an exported ONNX model (e.g. "
                                   "final/model.int8.onnx: scored under ONNX Runtime)")
    p.add_argument("--data", required=True,
                   help="experiment YAML or run directory (its data:), synthetic, an .npz, "
                        "a CIFAR-10 folder or an image folder")
    p.add_argument("--split", choices=SPLITS, default="test",
                   help="the split of an experiment's data (a data file is scored whole)")
    p.add_argument("--mean", help="R,G,B input mean in 0..1 units, for a data file "
                                  "(default: preprocessing.json beside the weights)")
    p.add_argument("--std", help="R,G,B input std, with --mean")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("export",
                       help="write a network as Arch JSON, ONNX or a torch.export program")
    p.add_argument("source", help=f"run directory (its final network), a folder with "
                                  f"{ARCH_FILE} (+ {WEIGHTS_FILE}), an Arch JSON file or a "
                                  f"reference net")
    p.add_argument("--format", choices=("json", "onnx", "pt2"),
                   help="required unless --child (then: also write model.FORMAT)")
    p.add_argument("-o", "--output", required=True,
                   help="file to write (with --child: a folder)")
    p.add_argument("--child", metavar="CHILD",
                   help="a child of the run's supernet, with its inherited weights: best, "
                        "a trial id, a JSON list of option indices or a JSON object of "
                        "decisions")
    p.add_argument("--weights",
                   help=f"state dict (default: {WEIGHTS_FILE} beside {ARCH_FILE})")
    p.set_defaults(func=_export)

    p = sub.add_parser("report", help="(re)write a run's report.md and pareto.png")
    p.add_argument("run_dir")
    p.set_defaults(func=_report)

    p = sub.add_parser("resume", help="continue a run where it stopped (after a crash or kill)")
    p.add_argument("run_dir")
    p.set_defaults(func=_resume)

    p = sub.add_parser("proxy-check",
                       help="how well the search's evaluators rank architectures against "
                            "a longer stand-alone training (Kendall tau, Spearman)")
    p.add_argument("source", help="experiment YAML (a new check) or a proxy check's run "
                                  "directory (continue it)")
    p.add_argument("--archs", type=int, help="architectures to score (proxy_check.archs)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key (repeatable), e.g. proxy_check.epochs=5")
    p.set_defaults(func=_proxy_check)

    p = sub.add_parser("results", help="the trials of a run as a table, CSV or JSON")
    p.add_argument("run_dir")
    p.add_argument("--pareto", action="store_true", help="only the accuracy/latency front")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=_results)

    add_latency_commands(sub, experiment_coverage)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a command the way Ctrl-C does


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; a user mistake prints one line and returns 2."""
    args = build_parser().parse_args(argv)
    last_written.clear()
    in_main = threading.current_thread() is threading.main_thread()  # signals need it
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
    try:
        args.func(args)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: every file is whole (atomic writes)
        if args.debug:
            raise
        hint = ""
        if last_written:
            run = RunDir(last_written[0])
            verb = "nas proxy-check" if run.is_proxy_check() else "nas resume"
            hint = f"; continue with: {verb} {run.root}"
        print(f"nas: interrupted{hint}", file=sys.stderr)
        return 130
    except UserError as err:
        if args.debug:
            raise
        print(f"nas: error: {err}", file=sys.stderr)
        return 2
    except (SearchFailed, NetAdaptFailed) as err:  # the run is intact and resumable
        if args.debug:
            raise
        stage = "search" if isinstance(err, SearchFailed) else "netadapt"
        print(f"nas: {stage} stopped: {err}", file=sys.stderr)
        return 1
    except WriteError as err:  # disk full, read-only: what was written is intact
        if args.debug:
            raise
        print(f"nas: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `nas ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
