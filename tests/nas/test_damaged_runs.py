"""A run directory damaged on disk, and writes that fail (a full disk): each is one
line naming the file (exit 2 for a damaged file, 1 for a failed write), never a
traceback, and what can be derived again is."""

from __future__ import annotations

import csv
import errno
import os
import pickle
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch

from nas.cli import main
from experiments import write_exp

Damage = Callable[[Path], None]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run through every stage (tiny budgets), copied by each test."""
    base = tmp_path_factory.mktemp("full")
    exp = write_exp(base, extra="stages: [search, netadapt, final_train, export]\n"
                                "final: {steps: 4}\n")
    exp.write_text(exp.read_text().replace("  start: net\n", ""))
    assert main(["search", str(exp)]) == 0
    (run,) = [p.parent for p in (base / "shrink").glob("*/config.yaml")]
    return run


def overwrite(rel: str, data: str | bytes) -> Damage:
    def damage(run: Path) -> None:
        path = run / rel
        path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return damage


def delete(rel: str) -> Damage:
    return lambda run: (run / rel).unlink()


def trial_cell(column: str, value: str) -> Damage:
    def damage(run: Path) -> None:
        path = run / "search" / "trials.csv"
        rows = list(csv.reader(path.open()))
        rows[1][rows[0].index(column)] = value
        with path.open("w", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows(rows)
    return damage


class _Evil:
    def __reduce__(self):  # what a malicious weights file would run
        return (os.system, ("echo pwned",))


def evil_weights(run: Path) -> None:
    torch.save({"a": _Evil()}, run / "final" / "weights.pt")


EXPORT = ["export", "{run}", "--format", "onnx", "-o", "{tmp}/m.onnx"]
DAMAGED = {
    "0-byte weights": (overwrite("final/weights.pt", b""), EXPORT,
                       "final/weights.pt: not a readable weights file (EOFError)"),
    "weights not a dict": (lambda run: torch.save(5, run / "final" / "weights.pt"), EXPORT,
                           "final/weights.pt: expected a state dict, found int"),
    "weights with a global": (evil_weights, EXPORT,
                              "final/weights.pt: not a readable weights file (refused the "
                              "global posix.system"),
    "NaN weights": (lambda run: torch.save(
        {k: v.float() * float("nan") if v.is_floating_point() else v
         for k, v in torch.load(run / "final" / "weights.pt").items()},
        run / "final" / "weights.pt"), EXPORT, "holds NaN or infinite values"),
    "missing final weights": (delete("final/weights.pt"), EXPORT,
                              "no weights.pt beside its arch.json to export"),
    "non-numeric reward": (trial_cell("reward", "abc"), ["resume", "{run}"],
                           "search/trials.csv: line 2: unreadable trial_id"),
    "non-numeric reward (results)": (trial_cell("reward", "abc"), ["results", "{run}"],
                                     "search/trials.csv: line 2: reward: not a number"),
    "trials not UTF-8": (overwrite("search/trials.csv", b"\xff\xfe garbage\n"),
                         ["resume", "{run}"], "search/trials.csv: line 1: not UTF-8 text"),
    "summary.json": (overwrite("netadapt/summary.json", "{not json"), ["resume", "{run}"],
                     "netadapt/summary.json: line 1: invalid JSON"),
    "summary.json (report)": (overwrite("netadapt/summary.json", "[1]"), ["report", "{run}"],
                              "netadapt/summary.json: expected a JSON object"),
    "final metrics.json": (overwrite("final/metrics.json", "{}"), ["resume", "{run}"],
                           "final/metrics.json: test_top1: missing (a damaged file)"),
    "final metrics.json (report)": (overwrite("final/metrics.json", "nul\x00"),
                                    ["report", "{run}"], "final/metrics.json: line 1: invalid"),
    "history.csv": (overwrite("netadapt/history.csv", b"\xff\x00"), ["report", "{run}"],
                    "netadapt/history.csv: line 1: not UTF-8 text"),
    "pareto.csv": (overwrite("search/pareto.csv", "a,b\n1,2\n"), ["report", "{run}"],
                   "search/pareto.csv: line 1: no column 'latency_ms'"),
    "config.yaml": (overwrite("config.yaml", "search: [\n"), ["resume", "{run}"],
                    "config.yaml: line 2: invalid YAML"),
    "-o into a folder that cannot exist": (lambda run: None,
                                           ["export", "{run}", "--format", "onnx", "-o",
                                            "/proc/nowhere/m.onnx"],
                                           "cannot write /proc/nowhere/m.onnx: No such file"),
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_a_damaged_run_file_is_named(name: str, full_run: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    damage, argv, expect = DAMAGED[name]
    damage(run)
    capsys.readouterr()
    code = main([a.format(run=run, tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == (1 if "cannot write" in expect else 2), err
    assert err[-1].startswith("nas: error: ") and expect in err[-1], err[-1]
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "m.onnx").exists()


def test_resume_recreates_a_deleted_arch_file(full_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    victim = sorted((run / "search" / "archs").glob("*.json"))[0]
    text = victim.read_text()
    victim.unlink()
    assert main(["resume", str(run)]) == 0
    assert victim.read_text() == text


def test_a_refused_pickle_never_runs(tmp_path: Path) -> None:
    """The payload of a weights file is never executed, only named."""
    from search_spaces.infra.errors import UserError
    from search_spaces.infra.weights import read_weights

    path = tmp_path / "w.pt"
    path.write_bytes(pickle.dumps({"a": _Evil()}))
    with pytest.raises(UserError, match="not a readable weights file"):
        read_weights(path)


EXP = """\
name: full
search: {space: mobilenetv3, skeleton: mobilenetv3_small, resolution: 16, stem_stride: 1,
         num_trials: 4, executor: inline, strategy: rl}
data:
  kind: synthetic
  synthetic: {num_classes: 4, train_size: 120, test_size: 20, image_size: 16}
train: {steps: 1, batch_size: 8, threads: 1}
controller: {batch_size: 2}
latency: {kind: flops}
reward: {target_ms: 2.0}
"""

TIMING = ("wall_s", "images_per_s")  # columns that differ between any two runs


def trials(run: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader((run / "search" / "trials.csv").open()))
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def test_a_full_disk_is_one_line_and_resume_continues(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC in the middle of a search: exit 1 naming the file, no temp file left, and
    `nas resume` (with room again) ends where an uninterrupted run ends."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "full.yaml").write_text(EXP)
    (tmp_path / "b" / "full.yaml").write_text(EXP)
    assert main(["search", str(tmp_path / "a" / "full.yaml")]) == 0
    (whole,) = [p.parent for p in (tmp_path / "a" / "full").glob("*/config.yaml")]

    real_fsync, calls = os.fsync, []

    def full_disk(fd: int) -> None:
        calls.append(fd)
        if len(calls) >= 6:  # a few files in: mid-search
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    capsys.readouterr()
    assert main(["search", str(tmp_path / "b" / "full.yaml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("nas: error: cannot write ") and \
        err[-1].endswith(": No space left on device"), err[-1]
    assert not any("Traceback" in line for line in err)
    (broken,) = [p.parent for p in (tmp_path / "b" / "full").glob("*/config.yaml")]
    assert not list(broken.rglob("*.tmp")) and not list(broken.rglob(".*.tmp"))
    assert len(trials(broken)) < len(trials(whole)) == 4  # it stopped mid-search
    monkeypatch.setattr(os, "fsync", real_fsync)  # room again
    assert main(["resume", str(broken)]) == 0
    assert trials(broken) == trials(whole)
