"""The `nas` command line."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from nas.search.core import SearchFailed
from netadapt.loop import NetAdaptFailed
from search_spaces.arch import Arch
from search_spaces.counting import count, count_rows
from search_spaces.infra.errors import UserError, WriteError
from search_spaces.infra.files import to_json
from search_spaces.reference import reference_names
from search_spaces.transforms import with_input
from search_spaces.infra.weights import ARCH_FILE, WEIGHTS_FILE

if TYPE_CHECKING:
    from nas.config import ExperimentConfig

# What a command taking "a network" accepts besides a reference name (nas.resolve).
NETWORK = (f"an Arch JSON file, a folder with {ARCH_FILE}, or a run directory "
           f"(its latest network)")


def _info(args: argparse.Namespace) -> None:
    from nas.resolve import resolve_net

    arch = with_input(resolve_net(args.arch).arch, args.resolution, args.classes,
                      args.stem_stride)
    rows = count_rows(arch)
    params, macs = sum(r.params for r in rows), sum(r.macs for r in rows)
    if args.json:
        print(to_json({
            "name": arch.name, "hash": arch.hash(), "resolution": arch.resolution,
            "num_classes": arch.num_classes, "params": params, "macs": macs,
            "layers": [r.__dict__ for r in rows],
        }))
        return
    title = arch.name or str(args.arch)
    print(f"{title}: {arch.resolution}x{arch.resolution}x{arch.in_ch}, "
          f"{arch.num_classes} classes, hash {arch.hash()}")
    header = f"{'piece':<16} {'op':<42} {'in':>4} {'out':>4} {'ch':>5} {'params':>11} {'MACs':>13}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.name:<16} {r.desc:<42} {r.in_hw:>4} {r.out_hw:>4} {r.out_ch:>5} "
              f"{r.params:>11,} {r.macs:>13,}")
    print("-" * len(header))
    print(f"{'total':<16} {'':<42} {'':>4} {'':>4} {'':>5} {params:>11,} {macs:>13,}")


def _validate(args: argparse.Namespace) -> None:
    path = Path(args.file)
    if path.suffix == ".json":
        from nas.resolve import resolve_net

        arch: Arch = resolve_net(path).arch
        print(f"{path}: valid Arch JSON ({len(arch.layers)} layers, hash {arch.hash()})")
        return
    from nas.config import load_config
    from nas.pipeline import prepare
    from search_spaces.infra.strict import read_yaml

    raw = read_yaml(path)
    # A file with a netadapt: section, no stages and no reward is meant for `nas
    # netadapt` (which runs stages [netadapt]): check it the way that command runs it.
    for_netadapt = isinstance(raw, dict) and "netadapt" in raw and "stages" not in raw \
        and "reward" not in raw
    cfg = load_config(path, ["stages=[netadapt]"] if for_netadapt else [])
    # everything a run checks first: data, latency table, reward (a table to build is
    # only planned: validating times nothing)
    prep = prepare(cfg, build_tables=False)
    space = prep.space
    how = " for `nas netadapt`" if for_netadapt else ""
    print(f"{path}: valid experiment '{cfg.name}'{how}: space {space.name}, "
          f"{len(space.decisions)} decisions, {space.size():.3e} distinct architectures; "
          f"data {prep.splits.summary()}")
    for plan in prep.tables:
        print(f"  {plan.describe()}" + ("" if plan.action == "reuse" else
                                        " when the run starts"))


def _search(args: argparse.Namespace) -> None:
    from nas.config import load_config

    overrides = list(args.set or [])
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    cfg = load_config(args.experiment, overrides)
    if args.dry_run:
        _dry_run(cfg)
        return
    from nas.pipeline import start

    start(cfg)


def _netadapt(args: argparse.Namespace) -> None:
    from nas.config import load_config
    from nas.pipeline import start

    overrides = list(args.set or [])
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    overrides.append("stages=[netadapt]")
    cfg = load_config(args.experiment, overrides)
    start(cfg)


def _evaluation_data(args: argparse.Namespace, arch: Arch):
    """The images `nas evaluate` scores, and what they are: a split of an experiment's
    (or a run's) data or of `synthetic`; or every image of a data file (its test
    arrays when it has them), normalised with the network's preprocessing."""
    from nas.config import load_config
    from nas.data import DataConfig, load_data, load_whole
    from nas.rundir import RunDir

    spec, path = args.data, Path(args.data)
    if path.suffix in (".yaml", ".yml") or RunDir.is_run(path) or spec == "synthetic":
        if spec == "synthetic":
            data, source = DataConfig(kind="synthetic"), "--data"
        else:
            cfg_path = path if path.suffix in (".yaml", ".yml") else RunDir.open(path).config_path
            data, source = load_config(cfg_path).data, str(cfg_path)
        splits = load_data(data, arch.resolution, source)
        chosen = {"train": splits.train, "val": splits.val, "test": splits.test}[args.split]
        if chosen is None:
            raise UserError(f"--split {args.split}: the data has no such split", spec)
        return chosen, f"the {args.split} split of {splits.source}"
    if not path.exists():
        raise UserError(f"--data: {spec} does not exist")
    if args.split != "test":
        raise UserError(f"--split {args.split}: a data file is scored whole (its test arrays "
                        f"when it has them); --split picks a split of an experiment's data")
    cifar = path.is_dir() and (any(path.glob("data_batch_*")) or
                               (path / "cifar-10-batches-py").is_dir())
    kind = "npz" if path.suffix == ".npz" else "cifar10" if cifar else "imagefolder"
    mean, std, how = _preprocessing(args)
    images = load_whole(DataConfig(kind=kind, path=path.resolve()), arch.resolution, mean,
                        std, str(path))
    return images, f"every image of {path}, {how}"


def _preprocessing(args: argparse.Namespace) -> tuple[list[float], list[float], str]:
    """The network's input normalisation: --mean/--std, or preprocessing.json beside
    the weights (what the final stage writes)."""
    from search_spaces.infra.files import read_record

    if (args.mean is None) != (args.std is None):
        raise UserError("--mean and --std: give both or neither")
    if args.mean is not None:
        values = []
        for flag, text in (("--mean", args.mean), ("--std", args.std)):
            try:
                numbers = [float(v) for v in text.split(",")]
            except ValueError:
                numbers = []
            if len(numbers) != 3 or not all(math.isfinite(v) for v in numbers) or \
                    (flag == "--std" and min(numbers) <= 0):
                raise UserError(f"{flag}: expected three numbers R,G,B (0..1 units), got "
                                f"{text!r}")
            values.append(numbers)
        return values[0], values[1], "normalised with --mean/--std"
    pre = Path(args.weights).parent / "preprocessing.json"
    if not pre.is_file():
        raise UserError(f"--mean/--std: needed to score a data file: there is no "
                        f"preprocessing.json beside {args.weights}")
    record = read_record(pre, ("mean", "std"))
    return record["mean"], record["std"], f"normalised as {pre} says"


def _evaluate(args: argparse.Namespace) -> None:
    from nas.stages.export import load_model
    from nas.resolve import resolve_net
    from nas.train import evaluate

    arch = resolve_net(args.arch).arch
    model = load_model(arch, Path(args.weights))  # a bad weights file fails first
    data, what = _evaluation_data(args, arch)
    if len(data.classes) > arch.num_classes or int(data.labels.max()) >= arch.num_classes:
        raise UserError(f"the network has {arch.num_classes} classes, the data "
                        f"{len(data.classes)}", args.data)
    top1 = evaluate(model, data)
    params, macs = count(arch)
    result = {"top1": top1, "split": args.split, "images": len(data), "scored": what,
              "params": params, "macs": macs, "arch": str(args.arch),
              "weights": str(args.weights)}
    if args.json:
        print(to_json(result))
    else:
        print(f"top-1 {top1:.4f} on {len(data)} images: {what} ({params:,} params, "
              f"{macs / 1e6:.1f}M MACs)")


def _export(args: argparse.Namespace) -> None:
    from nas.resolve import resolve_net
    from nas.stages.export import export

    if args.child is not None:
        _export_child(args)
        return
    if args.format is None:
        raise UserError("--format: required (json, onnx or pt2) unless --child is given")
    arch, beside, origin = resolve_net(args.source, run_pick="final")
    weights = Path(args.weights) if args.weights else beside
    if weights is None and args.format != "json":
        if origin not in ("file", "reference"):  # a trained network lost its weights
            raise UserError(f"no {WEIGHTS_FILE} beside its arch.json to export (--weights "
                            f"names one)", str(args.source))
        print("nas export: no weights: exporting freshly initialised weights",
              file=sys.stderr)
    diff = export(arch, weights, args.format, Path(args.output))
    check = "" if diff is None else f" (max |torch - exported| {diff:.1e})"
    print(f"{args.output}: {args.format}{check}")


def _export_child(args: argparse.Namespace) -> None:
    """A child of a run's supernet as a folder: arch.json + weights.pt (+ model.FMT)."""
    from nas.config import build_space, load_config
    from nas.data import load_data
    from nas.rundir import RunDir
    from nas.search.supernet import child_values, inherited_child
    from nas.stages.export import export
    from search_spaces.infra.files import atomic_write
    from search_spaces.infra.weights import NetFolder, write_weights

    run = RunDir.open(args.source)
    cfg = load_config(run.config_path)
    splits = load_data(cfg.data, cfg.search.resolution, cfg.source, cfg.limits.max_data_gib)
    space = build_space(cfg, splits.num_classes)
    arch, state = inherited_child(cfg, run, splits, space,
                                  child_values(args.child, space, run))
    folder = NetFolder(Path(args.output))
    atomic_write(folder.arch_json, arch.to_json())
    write_weights(state, folder.weights_pt)
    written = [folder.arch_json.name, folder.weights_pt.name]
    if args.format in ("onnx", "pt2"):
        target = folder.root / f"model.{args.format}"
        export(arch, folder.weights_pt, args.format, target)
        written.append(target.name)
    print(f"{folder.root}: {' + '.join(written)} (a child of {run.supernet_pt}, hash "
          f"{arch.hash()})")


def _report(args: argparse.Namespace) -> None:
    from nas.config import build_latency_model, load_config
    from nas.stages.report import write_report
    from nas.rundir import RunDir

    run = RunDir.open(args.run_dir)
    with run.writing():
        latency = build_latency_model(load_config(run.config_path))
        print(write_report(run, latency))


def _dry_run(cfg: "ExperimentConfig") -> None:
    """Resolved config, space size, one sampled architecture with its latency."""
    import random

    import yaml

    from nas.pipeline import prepare

    prep = prepare(cfg, build_tables=False)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    space = prep.space
    print(f"# space {space.name}: {len(space.decisions)} decisions, "
          f"{space.size():.3e} distinct architectures ({space.raw_size():.3e} decision vectors)")
    print(f"# data: {prep.splits.summary()}")
    for plan in prep.tables:
        print(f"# latency table: {plan.describe()}" + ("" if plan.action == "reuse" else
                                                       ": the run would do it first"))
    arch = space.decode(space.sample(random.Random(cfg.seed)))
    params, macs = count(arch)
    if prep.latency is None:
        priced = "latency: once the table is built"
    else:
        est = prep.latency.predict(arch)
        priced = f"latency {est.ms:.3f} ms ({est.source})"
    print(f"# a sampled child: {len(arch.layers)} layers, {params:,} params, {macs:,} MACs, "
          f"{priced}")
    if cfg.search.evaluator == "supernet":
        from search_spaces.supernet import SuperNet

        shared = sum(p.numel() for p in SuperNet(space, cfg.seed).parameters())
        tcfg = cfg.supernet.train_config(cfg.train)
        budget = f"{tcfg.steps} steps" if tcfg.steps else f"{tcfg.epochs:g} epochs"
        print(f"# supernet: {shared:,} shared weights, trained {budget}; "
              f"{cfg.search.num_trials} children scored from it, the top "
              f"{cfg.supernet.rerank_top_k} re-ranked by proxy training")


def _proxy_check(args: argparse.Namespace) -> None:
    from nas.proxycheck import run_proxy_check

    run_proxy_check(args.source, list(args.set or []), args.archs)


def _resume(args: argparse.Namespace) -> None:
    from nas.pipeline import resume

    resume(args.run_dir)


def _results(args: argparse.Namespace) -> None:
    import pandas as pd

    from nas.rundir import RunDir, TrialLog
    from nas.search.core import COLUMNS
    from search_spaces.infra.files import read_frame

    run = RunDir.open(args.run_dir)
    path = run.pareto_csv if args.pareto else run.trials_csv
    if not path.is_file():
        raise UserError(f"no {path.name} yet (has the search started?)", str(run.root))
    rows = TrialLog(path, COLUMNS).read()  # strict: a damaged log is an error
    frame = read_frame(path, numeric=("accuracy", "latency_ms", "reward")) if rows \
        else pd.DataFrame(columns=COLUMNS)
    if args.format == "csv":
        print(frame.to_csv(index=False), end="")
    elif args.format == "json":
        records = frame.to_dict(orient="records")
        for r in records:
            r["decisions"] = json.loads(r["decisions"])
        print(to_json(records))
    else:
        cols = ["trial_id", "status", "accuracy", "latency_ms", "reward", "params", "macs",
                "wall_s"]
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(frame[cols].to_string(index=False))


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
    p.add_argument("weights", help="state dict (.pt)")
    p.add_argument("--data", required=True,
                   help="experiment YAML or run directory (its data:), synthetic, an .npz, "
                        "a CIFAR-10 folder or an image folder")
    p.add_argument("--split", choices=("test", "val", "train"), default="test",
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

    from latency.cli import add_latency_commands, set_experiment_coverage
    from nas.coverage import experiment_coverage
    add_latency_commands(sub)
    set_experiment_coverage(experiment_coverage)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a command the way Ctrl-C does


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; a user mistake prints one line and returns 2."""
    from nas.rundir import RunDir, last_written

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
