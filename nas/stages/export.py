"""Export a trained network: Arch JSON, a weights_only state dict, ONNX, torch.export.

Every export is checked where a check is possible: the ONNX file is run with ONNX
Runtime and compared with torch, the `pt2` program is reloaded and compared too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from nas.experiment import Experiment
from nas.resolve import resolve_net
from nas.rundir import RunDir
from search_spaces.arch import Arch
from search_spaces.builder import build_model
from search_spaces.infra.errors import UserError
from search_spaces.infra.files import atomic_write, writing
from search_spaces.infra.weights import WEIGHTS_FILE, NetFolder, read_weights, write_weights

FORMATS = ("json", "onnx", "pt2")
TOLERANCE = 1e-4  # max |torch - exported| on the check input


@dataclass(frozen=True)
class Preprocessing:
    """What a deployed model needs before its first layer."""

    resolution: int
    mean: tuple[float, ...]  # per channel, on pixel values scaled to 0..1
    std: tuple[float, ...]
    classes: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps({
            "input": {"layout": "NCHW", "channels": "RGB", "dtype": "float32",
                      "height": self.resolution, "width": self.resolution},
            "transform": "x = (pixels / 255 - mean) / std, per channel",
            "mean": list(self.mean), "std": list(self.std),
            "classes": list(self.classes),
        }, indent=2) + "\n"


def load_model(arch: Arch, weights: str | os.PathLike | None) -> nn.Module:
    """`arch` built and loaded from `weights` (a state dict for it), in eval mode."""
    model = build_model(arch)
    if weights is not None:
        model.load_state_dict(read_weights(Path(weights), arch))
    return model.eval()


def _example(arch: Arch) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, arch.in_ch, arch.resolution, arch.resolution, generator=g)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's chatter (torchvision-less op registry, deprecations) is not the
    user's business; errors still raise."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(model: nn.Module, arch: Arch, path: Path) -> float:
    """Write `path` (ONNX, dynamic batch) and return max |torch - onnxruntime|."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("ONNX export needs the onnx extra: pip install "
                        "'platform-aware-nas[onnx]'") from None
    x = _example(arch)
    tmp = path.with_name(f".{path.name}.tmp")
    batch = torch.export.Dim("batch", min=1, max=1024)
    with writing(path, tmp), _quiet():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.onnx.export(model, (x,), str(tmp), input_names=["image"],
                          output_names=["logits"], dynamic_shapes={"x": {0: batch}},
                          dynamo=True, external_data=False, verbose=False)
        tmp.replace(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x2 = torch.cat([x, -x])  # a batch of two checks the dynamic batch axis too
    got = session.run(None, {"image": x2.numpy()})[0]
    with torch.inference_mode():
        want = model(x2).numpy()
    return float(abs(got - want).max())


def export_pt2(model: nn.Module, arch: Arch, path: Path) -> float:
    """Write a `torch.export` program (the road to ExecuTorch) and return max |diff|
    between the reloaded program and the eager model."""
    x = _example(arch)
    with _quiet():
        program = torch.export.export(model, (x,))
    tmp = path.with_name(f".tmp-{path.name}")  # torch wants the .pt2 suffix
    with writing(path, tmp):
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.export.save(program, str(tmp))
        tmp.replace(path)
    loaded = torch.export.load(str(path)).module()
    with torch.inference_mode():
        return float((loaded(x) - model(x)).abs().max())


def export(arch: Arch, weights: str | os.PathLike | None, fmt: str,
           path: str | os.PathLike) -> float | None:
    """Export in `fmt` to `path`; the check's max difference (None for json)."""
    path = Path(path)
    if fmt == "json":
        atomic_write(path, arch.to_json())
        return None
    model = load_model(arch, weights)
    diff = export_onnx(model, arch, path) if fmt == "onnx" else export_pt2(model, arch, path)
    if not diff <= TOLERANCE:  # NaN-aware: a NaN difference fails too
        raise RuntimeError(f"{path}: the exported model differs from torch by {diff:.2e} "
                           f"(> {TOLERANCE})")
    return diff


def export_child(exp: Experiment, run: RunDir, child: str, output: Path,
                 fmt: str | None = None) -> tuple[Arch, list[Path]]:
    """A child of `run`'s search with the weights it inherits from the run's evaluator
    (`best`, a trial id, option indices or decision values), as a folder: arch.json +
    weights.pt (+ model.FMT); returns the child and what was written."""
    arch, state = exp.evaluator.inherit(exp, run, child)
    folder = NetFolder(output)
    atomic_write(folder.arch_json, arch.to_json())
    write_weights(state, folder.weights_pt)
    written = [folder.arch_json, folder.weights_pt]
    if fmt in ("onnx", "pt2"):
        target = folder.root / f"model.{fmt}"
        export(arch, folder.weights_pt, fmt, target)
        written.append(target)
    return arch, written


def export_network(source: str, fmt: str, output: Path, weights: str | None = None,
                   log: Callable[[str], None] | None = None) -> float | None:
    """`nas export`: a network (a run's final one, a folder, an Arch JSON or a reference
    net) as Arch JSON, ONNX or a torch.export program at `output`; the largest |torch -
    exported| difference on a check input (None for JSON)."""
    arch, beside, origin = resolve_net(source, run_pick="final")
    state = Path(weights) if weights else beside
    if state is None and fmt != "json":
        if origin not in ("file", "reference"):  # a trained network lost its weights
            raise UserError(f"no {WEIGHTS_FILE} beside its arch.json to export (--weights "
                            f"names one)", str(source))
        if log:
            log("nas export: no weights: exporting freshly initialised weights")
    return export(arch, state, fmt, output)
