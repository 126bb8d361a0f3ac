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

import numpy as np
import torch
from torch import nn

from latency import runtime
from nas.data import ImageSet, normalize
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
INPUT, OUTPUT = "image", "logits"  # the shipped ONNX model's input and output
INT8_FILE = "model.int8.onnx"


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
    """Write `path` (ONNX, dynamic batch; the deployed form of `latency.runtime`, which
    the ONNX Runtime tables are timed in) and return max |torch - onnxruntime|."""
    runtime.require()
    x = _example(arch)
    with _quiet():
        data = runtime.onnx_bytes(model, x, INPUT, OUTPUT, dynamic_batch=True)
    atomic_write(path, data)
    x2 = torch.cat([x, -x])  # a batch of two checks the dynamic batch axis too
    got = runtime.session(path, 1).run(None, {INPUT: x2.numpy()})[0]
    with torch.inference_mode():
        want = model(x2).numpy()
    return float(abs(got - want).max())


def calibration_batches(images: ImageSet, count: int, batch: int = 32, seed: int = 0
                        ) -> list[np.ndarray]:
    """`count` training images (a seeded draw), normalised as the model's input, in
    batches: what int8 calibration sees."""
    count = min(count, len(images))
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count]
    x = normalize(images.images[pick], images.mean, images.std).numpy()
    return [x[i:i + batch] for i in range(0, count, batch)]


def export_int8(fp32: Path, path: Path, batches: list[np.ndarray]) -> None:
    """`path`: the ONNX file `fp32` as static QDQ int8 (per-channel weights), its ranges
    calibrated on `batches` (`latency.runtime.quantize_int8`); checked to load and to
    give finite logits of the right shape under ONNX Runtime."""
    data = runtime.quantize_int8(fp32.read_bytes(), batches, INPUT)
    atomic_write(path, data)
    got = runtime.session(path, 1).run(None, {INPUT: batches[0][:2]})[0]
    want = runtime.session(fp32, 1).run(None, {INPUT: batches[0][:2]})[0]
    if got.shape != want.shape or not np.isfinite(got).all():
        raise RuntimeError(f"{path}: the int8 model gives {got.shape} logits "
                           f"(fp32: {want.shape}), finite: {bool(np.isfinite(got).all())}")


class OnnxModule(nn.Module):
    """An ONNX file as a module (ONNX Runtime, CPU): what scores an exported model with
    the same code that scores torch ones (`nas.train.evaluate`)."""

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        super().__init__()
        self.path = str(path)
        self._session = runtime.load_file(path, threads)
        self._input = self._session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._session.run(None, {self._input: x.detach().cpu().numpy()})[0]
        return torch.from_numpy(out)


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
