"""One resolver for "a network" wherever a command or a stage takes one.

A network is handed in as any of:

- a reference net's name (`mobilenet_v3_small`; a misspelt one gets a did-you-mean),
- an Arch JSON file,
- a folder holding `arch.json` (+ `weights.pt`),
- a run directory: the network it has produced so far, which one depends on who
  asks (`RunPick`): NetAdapt starts from the search's best, the final stage trains
  NetAdapt's result (or the search's best), `nas export` writes the final network.

A reference name wins over a file of the same name (write `./name` for the file).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, NamedTuple

from nas.rundir import RunDir
from search_spaces.arch import Arch, load_arch
from search_spaces.infra.checks import closest
from search_spaces.infra.errors import UserError
from search_spaces.infra.weights import ARCH_FILE, NetFolder
from search_spaces.reference import load_reference, reference_names, resolve_arch

# Which of a run's networks, in order of preference.
RunPick = Literal["search", "netadapt", "final", "latest"]
_PICKS: dict[str, tuple[str, ...]] = {
    "search": ("search",),
    "netadapt": ("netadapt", "search"),
    "final": ("final",),
    "latest": ("final", "netadapt", "search"),
}


class Net(NamedTuple):
    """A resolved network: its Arch, its weights (None: none came with it), and where
    it came from: `reference`, `file`, `folder`, or the run stage `search`,
    `netadapt`, `final`."""

    arch: Arch
    weights: Path | None
    origin: str


def resolve_net(spec: str | Path, run_pick: RunPick = "latest") -> Net:
    """The network `spec` names (see the module docstring); a missing one is a
    `UserError` without a source, so a caller can prefix its config key."""
    text = str(spec)
    if text in reference_names():
        return Net(load_reference(text), None, "reference")
    path = Path(text)
    if path.is_dir():
        if RunDir.is_run(path):
            return run_net(RunDir(path), run_pick)
        return folder_net(NetFolder(path))
    if not path.exists() and (os.sep in text or "/" in text or path.suffix == ".json"):
        close = closest(path.name, reference_names())
        hint = f" (did you mean the reference net '{close}'?)" if close else ""
        raise UserError(f"{text} does not exist{hint}")
    return Net(resolve_arch(text), None, "file")  # or the unknown-reference error


def folder_net(folder: NetFolder, origin: str = "folder") -> Net:
    """`arch.json` and, when there, `weights.pt` of `folder`."""
    if not folder.arch_json.is_file():
        raise UserError(f"no {ARCH_FILE} here", str(folder.root))
    weights = folder.weights_pt if folder.weights_pt.is_file() else None
    return Net(load_arch(folder.arch_json), weights, origin)


def run_net(run: RunDir, pick: RunPick) -> Net:
    """The network of `run` that `pick` asks for: the first of its stages that has one."""
    for stage in _PICKS[pick]:
        if stage == "search" and run.best_json.is_file():
            return Net(load_arch(run.best_json), None, "search")
        if stage == "netadapt" and run.netadapt.final.complete():
            return folder_net(run.netadapt.final, "netadapt")
        if stage == "final" and run.final.complete():
            return folder_net(run.final, "final")
    if pick == "search":
        raise UserError(f"{run.best_json} does not exist (has the search stage run?)")
    if pick == "final":
        raise UserError(f"no {ARCH_FILE} here (has the final_train stage run?)",
                        str(run.final.root))
    raise UserError("no network here yet (no search/best.json, netadapt/final or final/)",
                    str(run.root))


def run_classes(run: RunDir) -> int | None:
    """The class count of `run`'s latest network (None before it has one): what its
    report needs of the data, without the data."""
    try:
        return run_net(run, "latest").arch.num_classes
    except UserError:
        return None


def anchor(spec: str, base: Path) -> str:
    """`spec` as a config records it: a reference name stays a name, a path becomes
    absolute (relative paths against `base`), so the run resolves it the same later."""
    if spec in reference_names():
        return spec
    path = Path(spec).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())
