"""`nas evaluate`: the top-1 of a trained network on a split of an experiment's data, or
on every image of a data file normalised with the network's preprocessing."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from nas.config import load_config
from nas.data import DataConfig, ImageSet, load_data, load_whole
from nas.resolve import resolve_net
from nas.rundir import RunDir
from nas.stages.export import OnnxModule, load_model
from nas.train import evaluate
from search_spaces.arch import Arch
from search_spaces.counting import count
from search_spaces.infra.errors import UserError
from search_spaces.infra.files import read_record

SPLITS = ("test", "val", "train")


def evaluate_network(arch_spec: str, weights: str, data: str, split: str = "test",
                     mean: str | None = None, std: str | None = None) -> dict[str, Any]:
    """Score `arch_spec` (anything `nas.resolve` takes) with `weights` (a state dict, or
    an exported ONNX file such as `final/model.int8.onnx`, run under ONNX Runtime) on
    `data`; the result as `nas evaluate --json` prints it."""
    arch = resolve_net(arch_spec).arch
    # a bad weights file fails first
    model = OnnxModule(weights) if Path(weights).suffix == ".onnx" else \
        load_model(arch, Path(weights))
    images, what = evaluation_data(data, split, arch, weights, mean, std)
    if len(images.classes) > arch.num_classes or int(images.labels.max()) >= arch.num_classes:
        raise UserError(f"the network has {arch.num_classes} classes, the data "
                        f"{len(images.classes)}", data)
    params, macs = count(arch)
    return {"top1": evaluate(model, images), "split": split, "images": len(images),
            "scored": what, "params": params, "macs": macs, "arch": str(arch_spec),
            "weights": str(weights)}


def evaluation_data(spec: str, split: str, arch: Arch, weights: str, mean: str | None,
                    std: str | None) -> tuple[ImageSet, str]:
    """The images scored, and what they are: a split of an experiment's (or a run's)
    data or of `synthetic`; or every image of a data file (its test arrays when it has
    them), normalised with the network's preprocessing."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or RunDir.is_run(path) or spec == "synthetic":
        if spec == "synthetic":
            cfg, source = DataConfig(kind="synthetic"), "--data"
        else:
            cfg_path = path if path.suffix in (".yaml", ".yml") else RunDir.open(path).config_path
            cfg, source = load_config(cfg_path).data, str(cfg_path)
        splits = load_data(cfg, arch.resolution, source)
        chosen = {"train": splits.train, "val": splits.val, "test": splits.test}[split]
        if chosen is None:
            raise UserError(f"--split {split}: the data has no such split", spec)
        return chosen, f"the {split} split of {splits.source}"
    if not path.exists():
        raise UserError(f"--data: {spec} does not exist")
    if split != "test":
        raise UserError(f"--split {split}: a data file is scored whole (its test arrays "
                        f"when it has them); --split picks a split of an experiment's data")
    cifar = path.is_dir() and (any(path.glob("data_batch_*")) or
                               (path / "cifar-10-batches-py").is_dir())
    kind = "npz" if path.suffix == ".npz" else "cifar10" if cifar else "imagefolder"
    m, s, how = preprocessing(mean, std, weights)
    images = load_whole(DataConfig(kind=kind, path=path.resolve()), arch.resolution, m, s,
                        str(path))
    return images, f"every image of {path}, {how}"


def preprocessing(mean: str | None, std: str | None, weights: str
                  ) -> tuple[list[float], list[float], str]:
    """The network's input normalisation: `--mean`/`--std` (R,G,B in 0..1 units), or
    preprocessing.json beside the weights (what the final stage writes)."""
    if (mean is None) != (std is None):
        raise UserError("--mean and --std: give both or neither")
    if mean is not None and std is not None:
        values = []
        for flag, text in (("--mean", mean), ("--std", std)):
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
    pre = Path(weights).parent / "preprocessing.json"
    if not pre.is_file():
        raise UserError(f"--mean/--std: needed to score a data file: there is no "
                        f"preprocessing.json beside {weights}")
    record = read_record(pre, ("mean", "std"))
    return record["mean"], record["std"], f"normalised as {pre} says"
