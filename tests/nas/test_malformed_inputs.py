"""Malformed inputs of every kind: each exits with status 2 and one line naming the
file and the key or line, no traceback, and leaves no run directory behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from arch_fixtures import small_arch
from nas.cli import main

EXP = """\
name: bad
search: {space: mobilenetv3, skeleton: mobilenetv3_small, resolution: 16, stem_stride: 1,
         num_trials: 2, executor: inline}
data:
  kind: synthetic
  synthetic: {num_classes: 4, train_size: 200, test_size: 20, image_size: 16}
train: {steps: 1, batch_size: 8, threads: 1}
latency: {kind: flops}
reward: {target_ms: 2.0}
"""

SYNTHETIC = ("  kind: synthetic\n  synthetic: {num_classes: 4, train_size: 200, test_size: 20, "
             "image_size: 16}")
TABLE = Path(__file__).resolve().parents[2] / "latency" / "examples" / "example_table.csv"


def exp_with(tmp: Path, text: str) -> list[str]:
    (tmp / "exp.yaml").write_text(text)
    return ["search", str(tmp / "exp.yaml")]


def replace_in_exp(old: str, new: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        assert old in EXP
        return exp_with(tmp, EXP.replace(old, new))
    return make


def add_to_exp(extra: str) -> Callable[[Path], list[str]]:
    return lambda tmp: exp_with(tmp, EXP + extra)


def bad_arch(change: Callable[[dict], None]) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        data = json.loads(small_arch().to_json())
        change(data)
        (tmp / "arch.json").write_text(json.dumps(data))
        return ["validate", str(tmp / "arch.json")]
    return make


def bad_table(edit: Callable[[list[str]], list[str]]) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        lines = TABLE.read_text().splitlines()
        (tmp / "table.csv").write_text("\n".join(edit(lines)) + "\n")
        return exp_with(tmp, EXP.replace("latency: {kind: flops}",
                                         f"latency: {{kind: table, path: {tmp / 'table.csv'}}}"))
    return make


def not_json(tmp: Path) -> list[str]:
    (tmp / "arch.json").write_text("{layers: oops")
    return ["validate", str(tmp / "arch.json")]


def data_row(line: str) -> int:
    return [i for i, l in enumerate(TABLE.read_text().splitlines()) if l.startswith(line)][0]


def npz(images: np.ndarray, labels: np.ndarray) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        np.savez(tmp / "d.npz", images=images, labels=labels)
        return exp_with(tmp, EXP.replace(SYNTHETIC, f"  kind: npz\n  path: {tmp / 'd.npz'}"))
    return make


def npz_bytes(edit: Callable[[bytes], bytes], extra: tuple[str, bytes] | None = None
              ) -> Callable[[Path], list[str]]:
    """A valid npz file's bytes, edited (emptied, truncated), or with a member added."""
    def make(tmp: Path) -> list[str]:
        argv = npz(np.zeros((10, 16, 16, 3), np.uint8), np.zeros(10, np.int64))(tmp)
        if extra is not None:
            import zipfile
            with zipfile.ZipFile(tmp / "d.npz", "a") as z:
                z.writestr(*extra)
        (tmp / "d.npz").write_bytes(edit((tmp / "d.npz").read_bytes()))
        return argv
    return make


def empty_folder(tmp: Path) -> list[str]:
    (tmp / "images").mkdir()
    return exp_with(tmp, EXP.replace(SYNTHETIC, f"  kind: imagefolder\n  path: {tmp / 'images'}"))


def netadapt_start(weights: bytes | None) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        (tmp / "net").mkdir()
        (tmp / "net" / "arch.json").write_text(small_arch().replace(resolution=16).to_json())
        if weights is not None:
            (tmp / "net" / "weights.pt").write_bytes(weights)
        return ["netadapt", exp_with(tmp, EXP + "netadapt: {start: net, target_ratio: 0.8}\n")[1]]
    return make


def other_net_weights() -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2).state_dict(), buf)
    return buf.getvalue()


def evaluate_corrupt(tmp: Path) -> list[str]:
    (tmp / "arch.json").write_text(small_arch().to_json())
    (tmp / "w.pt").write_bytes(b"\x80\x04truncated")
    (tmp / "data.yaml").write_text(EXP)
    return ["evaluate", str(tmp / "arch.json"), str(tmp / "w.pt"), "--data",
            str(tmp / "data.yaml")]


CASES = {
    # experiment YAML
    "unknown key": (replace_in_exp("search: {space", "search: {spcae: mnasnet, space"),
                    "exp.yaml: search.spcae: unknown key (did you mean 'search.space'?)"),
    "wrong type": (replace_in_exp("num_trials: 2", "num_trials: two"),
                   "exp.yaml: search.num_trials: expected an integer"),
    "bad enum": (replace_in_exp("executor: inline", "executor: cluster"),
                 "exp.yaml: search.executor: 'cluster' is not one of ray, inline"),
    "negative budget": (replace_in_exp("num_trials: 2", "num_trials: -3"),
                        "exp.yaml: search.num_trials: must be > 0"),
    "missing data path": (replace_in_exp("  kind: synthetic\n", "  kind: npz\n  path: no.npz\n"),
                          "exp.yaml: data.path: "),
    "invalid YAML": (add_to_exp("train: [unclosed\n"), "exp.yaml: line "),
    "duplicate key": (add_to_exp("seed: 1\nseed: 2\n"), "exp.yaml: line "),
    "not a mapping": (lambda tmp: exp_with(tmp, "- a\n- b\n"), "exp.yaml: the top level"),
    "missing reward target": (replace_in_exp("reward: {target_ms: 2.0}\n", ""),
                              "exp.yaml: reward.target_ms: missing"),
    "table without path": (replace_in_exp("latency: {kind: flops}", "latency: {kind: table}"),
                           "exp.yaml: latency.path: missing required key"),
    "two netadapt targets": (add_to_exp("netadapt: {target_ms: 1, target_ratio: 0.5}\n"
                                        "stages: [search, netadapt]\n"),
                             "exp.yaml: netadapt: set exactly one of target_ms and target_ratio"),
    "stage order": (add_to_exp("stages: [export]\n"), "exp.yaml: stages: export"),
    "bad --set": (lambda tmp: exp_with(tmp, EXP) + ["--set", "search.num_trials"],
                  "exp.yaml: --set expects key.path=value"),
    # Arch JSON
    "arch unknown field": (bad_arch(lambda d: d["layers"][0].update(colour="red")),
                           "arch.json: layers[0].colour: unknown field"),
    "arch channel mismatch": (bad_arch(lambda d: d["layers"][3].update(in_ch=40)),
                              "arch.json: layers[3].in_ch"),
    "arch unsupported kernel": (bad_arch(lambda d: d["layers"][0].update(kernel=4)),
                                "arch.json: layers[0].kernel"),
    "arch not JSON": (not_json, "arch.json: "),
    # latency table
    "table missing column": (bad_table(lambda ls: [l.replace(",std_ms,count", "") if
                                                   l.startswith("op,") else l for l in ls]),
                             "table.csv: line "),
    "table non-numeric latency": (bad_table(lambda ls: ls[:data_row("stem,")] +
                                            ["stem,32,3,0,16,3,1,0,hswish,none,fast,0.002,30"] +
                                            ls[data_row("stem,") + 1:]),
                                  f"table.csv: line {data_row('stem,') + 1}"),
    "table duplicate signature": (bad_table(lambda ls: ls + [ls[data_row("stem,")]]),
                                  "table.csv: line "),
    # data
    "npz wrong shape": (npz(np.zeros((10, 16), np.uint8), np.zeros(10, np.int64)),
                        "d.npz: "),
    "npz labels out of range": (npz(np.zeros((10, 16, 16, 3), np.uint8),
                                    np.full(10, -1, np.int64)), "d.npz: "),
    "npz label count": (npz(np.zeros((10, 16, 16, 3), np.uint8), np.zeros(7, np.int64)),
                        "d.npz: "),
    "npz of 0 x 0 images": (npz(np.zeros((10, 0, 0, 3), np.uint8), np.zeros(10, np.int64)),
                            "d.npz: key 'images' must be N x H x W x 3"),
    "npz of 0 bytes": (npz_bytes(lambda raw: b""), "d.npz: not a readable npz file"),
    "npz truncated": (npz_bytes(lambda raw: raw[: len(raw) // 2]),
                      "d.npz: not a readable npz file"),
    "npz member not an array": (npz_bytes(lambda raw: raw, extra=("notes.npy", b"hello")),
                                "d.npz: not a readable npz file"),
    "empty image folder": (empty_folder, "images"),
    # checkpoints
    "corrupted weights": (netadapt_start(b"PK\x03\x04 not really a zip"),
                          "weights.pt: not a readable weights file"),
    "weights of another net": (netadapt_start(other_net_weights()),
                               "weights.pt: key 'stem.0.weight' missing"),
    "evaluate corrupted checkpoint": (evaluate_corrupt, "w.pt: not a readable weights file"),
    "resume a non-run": (lambda tmp: ["resume", str(tmp)], "not a run directory"),
    "nothing at ray.address": (replace_in_exp("executor: inline",
                                              "executor: ray}\nray: {address: '127.0.0.1:1'"),
                               "exp.yaml: ray.address: nothing answers at 127.0.0.1:1"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input(name: str, tmp_path: Path, capsys: pytest.CaptureFixture,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    make, expect = CASES[name]
    argv = make(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("nas: error: ") and expect in err[0], err[0]
    assert "Traceback" not in err[0]
    assert not (tmp_path / "bad").exists()  # no half-written run


def test_there_are_at_least_25_cases() -> None:
    assert len(CASES) >= 25


def check_refused(argv: list[str], expect: str, tmp_path: Path,
                  capsys: pytest.CaptureFixture) -> None:
    """Exit 2, one line naming file and key, nothing created beside the inputs."""
    before = set(tmp_path.rglob("*"))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("nas: error: ") and expect in err[0], err[0]
    assert set(tmp_path.rglob("*")) == before  # no run directory, no temp file


def deep_json(tmp: Path) -> list[str]:
    (tmp / "arch.json").write_text("[" * 100_000 + "]" * 100_000)
    return ["validate", str(tmp / "arch.json")]


def yaml_bomb(tmp: Path) -> list[str]:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 8)]
    return exp_with(tmp, EXP + "\n".join(lines) + "\n")


def big_text(tmp: Path) -> list[str]:
    (tmp / "arch.json").write_bytes(b" " * (64 * 2**20 + 1))
    return ["validate", str(tmp / "arch.json")]


def npz_header_claims(tmp: Path) -> list[str]:
    """An npz whose images header claims 10^12 bytes while holding a few."""
    np.savez(tmp / "d.npz", images=np.zeros((10, 16, 16, 3), np.uint8),
             labels=np.zeros(10, np.int64))
    import zipfile
    with zipfile.ZipFile(tmp / "d.npz") as z:
        members = {n: z.read(n) for n in z.namelist()}
    members["images.npy"] = members["images.npy"].replace(b"(10, 16, 16, 3)",
                                                          b"(10000000, 16, 16, 3)")
    with zipfile.ZipFile(tmp / "d.npz", "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    return exp_with(tmp, EXP.replace(SYNTHETIC, f"  kind: npz\n  path: {tmp / 'd.npz'}"))


SKELETON = "skeleton: {stem: 16, head_conv: 64, head_hidden: 128, blocks: [BLOCK]}"


def skeleton_block(block: str) -> Callable[[Path], list[str]]:
    return replace_in_exp("skeleton: mobilenetv3_small", SKELETON.replace("BLOCK", block))


# Sizes past the limits (search_spaces/infra/limits.py): refused before anything is allocated.
LIMIT_CASES = {
    "resolution": (replace_in_exp("resolution: 16", "resolution: 100000"),
                   "exp.yaml: search.resolution: at most 1,024 pixels"),
    "block layers": (skeleton_block("{width: 16, layers: 100000}"),
                     "search.skeleton.blocks[0].layers: must be in 1..16"),
    "block width": (skeleton_block("{width: 1000000000, layers: 1}"),
                    "search.skeleton.blocks[0].width: must be in 1..6553"),
    "space params": (skeleton_block("{width: 6000, layers: 16}"),
                     "search.skeleton: its largest child has up to"),
    "supernet params": (lambda tmp: exp_with(tmp, EXP.replace("executor: inline",
                        "executor: inline, evaluator: supernet")
                        + "limits: {max_params: 1000000}\n"),
                        "search.skeleton: the supernet holds up to"),
    "synthetic size": (replace_in_exp("train_size: 200", "train_size: 1000000000000"),
                       "data.synthetic.train_size: at most 100,000,000 images"),
    "data memory": (lambda tmp: exp_with(tmp, EXP.replace("resolution: 16", "resolution: 1024")
                                          + "limits: {max_data_gib: 0.1}\n"),
                    "exp.yaml: data: 220 images at 1024x1024 would take"),
    "npz header": (npz_header_claims, "d.npz: key 'images': its header claims"),
    "arch width": (bad_arch(lambda d: d["head"].update(conv_ch=10**9)),
                   "arch.json: head.conv_ch: at most 8,192 channels"),
    # a classifier of 8,192 x 100,000 weights
    "arch params": (bad_arch(lambda d: d["head"].update(conv_ch=8192, hidden_ch=8192)
                             or d.update(num_classes=100_000)),
                    "more than limits.max_params"),
    "yaml alias bomb": (yaml_bomb, "more than 1,000,000 values"),
    "deep yaml": (lambda tmp: exp_with(tmp, "a: " + "[" * 20_000 + "]" * 20_000 + "\n"),
                  "exp.yaml: invalid YAML: nested deeper than 64 levels"),
    "deep json": (deep_json, "arch.json: invalid JSON: nested deeper than 64 levels"),
    "long integer": (add_to_exp("seed: " + "9" * 5000 + "\n"), "exp.yaml: invalid YAML: Exceeds"),
    "huge integer": (add_to_exp("seed: 1000000000000000000000000000000\n"),
                     "exp.yaml: seed: integer out of range"),
    "file size": (big_text, "arch.json: 67,108,865 bytes: larger than the 64 MiB"),
}


@pytest.mark.parametrize("name", list(LIMIT_CASES))
def test_sizes_past_the_limits_are_refused_before_allocating(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    monkeypatch.chdir(tmp_path)
    make, expect = LIMIT_CASES[name]
    argv = make(tmp_path)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (16 << 30, hard))  # an allocation past it fails
    try:
        check_refused(argv, expect, tmp_path, capsys)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def scale_line(line: str, value: str) -> str:
    return f"# calibration_scale: {value}" if line.startswith("# calibration_scale:") else line


# Non-finite and out-of-range numbers, wherever they are read.
NUMBER_CASES = {
    "reward alpha nan": (replace_in_exp("reward: {target_ms: 2.0}",
                                        "reward: {target_ms: 2.0, alpha: .nan}"),
                         "exp.yaml: reward.alpha: must be a finite number, got nan"),
    "target inf": (replace_in_exp("target_ms: 2.0", "target_ms: .inf"),
                   "reward.target_ms: must be a finite number, got inf"),
    "lr inf": (replace_in_exp("train: {steps: 1,", "train: {lr: .inf, steps: 1,"),
               "train.lr: must be a finite number"),
    "entropy nan": (add_to_exp("controller: {entropy_weight: .nan}\n"),
                    "controller.entropy_weight: must be a finite number"),
    "ms_per_mmac inf": (replace_in_exp("latency: {kind: flops}",
                                       "latency: {kind: flops, ms_per_mmac: .inf}"),
                        "latency.ms_per_mmac: must be a finite number"),
    "negative offset": (replace_in_exp("latency: {kind: flops}",
                                       "latency: {kind: flops, offset_ms: -100}"),
                        "latency.offset_ms: must be >= 0"),
    "negative seed": (add_to_exp("seed: -1\n"), "exp.yaml: seed: must be in 0..2^63-1"),
    "--set nan": (lambda tmp: exp_with(tmp, EXP) + ["--set", "train.lr=.nan"],
                  "train.lr: must be a finite number"),
    "--set tag": (lambda tmp: exp_with(tmp, EXP) + ["--set", "name=!!python/name:os.system"],
                  "--set name: invalid YAML value"),
    "arch bn eps": (bad_arch(lambda d: d["bn"].update(eps=float("inf"))),
                    "arch.json: bn.eps: must be a finite number, got inf"),
    "arch se ratio": (bad_arch(lambda d: d["se"].update(ratio=float("nan"))),
                      "arch.json: se.ratio: must be a finite number"),
    "table scale nan": (bad_table(lambda ls: [scale_line(l, "nan") for l in ls]),
                        "table.csv: line 17: calibration_scale: expected a finite number"),
    "table scale negative": (bad_table(lambda ls: [scale_line(l, "-1") for l in ls]),
                             "table.csv: line 17: calibration_scale: must be > 0"),
}


@pytest.mark.parametrize("name", list(NUMBER_CASES))
def test_non_finite_and_out_of_range_numbers_are_refused(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    make, expect = NUMBER_CASES[name]
    check_refused(make(tmp_path), expect, tmp_path, capsys)


# The run directory stays inside output_dir, whatever the name.
RUNDIR_CASES = {
    "name with ..": (replace_in_exp("name: bad", "name: ../../escaped"),
                     "exp.yaml: name: '../../escaped': a plain name"),
    "absolute name": (lambda tmp: exp_with(tmp, EXP.replace("name: bad", f"name: {tmp}/abs")),
                      "a plain name, without path separators"),
    "NUL in name": (replace_in_exp("name: bad", 'name: "a\\0b"'),
                    "name: 'a\\x00b': control characters are not allowed"),
    "NUL in output_dir": (add_to_exp('output_dir: "out\\0put"\n'),
                          "exp.yaml: output_dir: expected a path"),
    "name via --set": (lambda tmp: exp_with(tmp, EXP) + ["--set", "name=../up"],
                       "name: '../up': a plain name"),
}


@pytest.mark.parametrize("name", list(RUNDIR_CASES))
def test_the_run_directory_is_confined(name: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    make, expect = RUNDIR_CASES[name]
    check_refused(make(work), expect, tmp_path, capsys)


def test_two_writers_on_one_run(tmp_path: Path, capsys: pytest.CaptureFixture,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`nas resume RUN` while another command writes RUN exits 2 naming the holder and
    changes nothing; once the holder is gone (killed), resume works."""
    from helpers import run_lock_held_elsewhere

    monkeypatch.chdir(tmp_path)
    assert main(exp_with(tmp_path, EXP.replace("num_trials: 2", "num_trials: 1"))) == 0
    (run,) = [p.parent for p in (tmp_path / "bad").glob("*/config.yaml")]
    (run / "config.yaml").write_text((run / "config.yaml").read_text()
                                     .replace("num_trials: 1", "num_trials: 2"))
    trials = (run / "search" / "trials.csv").read_bytes()
    with run_lock_held_elsewhere(run) as pid:
        capsys.readouterr()
        assert main(["resume", str(run)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"nas: error: {run}: another nas command (pid {pid}) is writing "
                       f"this run; wait for it to finish or stop it"]
        assert (run / "search" / "trials.csv").read_bytes() == trials
    assert main(["resume", str(run)]) == 0
    assert len((run / "search" / "trials.csv").read_text().splitlines()) == 3


def test_a_table_for_another_input_size_fails_before_the_run_exists(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example table covers 32x32 inputs; the experiment searches at 16x16."""
    monkeypatch.chdir(tmp_path)
    argv = exp_with(tmp_path, EXP.replace("latency: {kind: flops}",
                                          f"latency: {{kind: table, path: {TABLE}}}"))
    check_refused(argv, "example_table.csv: the table covers 32x32 inputs, the network is "
                        "16x16", tmp_path, capsys)


def test_a_table_missing_one_operator_refuses_the_search_in_seconds(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A table with every operator the experiment prices but one (one of MobileNetV3-
    Small's, the reference the report prices, which no child of the space has): the
    search refuses before any training, under interpolate, naming the count, and the
    missing row is written out to be filled. The full table passes."""
    import time

    from latency.table import LatencyTable, Row
    from nas.config import build_space, load_config
    from nas.coverage import experiment_signatures, reference_signatures

    monkeypatch.chdir(tmp_path)
    table_path = tmp_path / "phone.csv"
    argv = exp_with(tmp_path, EXP.replace(
        "latency: {kind: flops}",
        f"latency: {{kind: table, path: {table_path}, policy: interpolate}}"))
    cfg = load_config(argv[1])
    space = build_space(cfg, num_classes=4)
    sigs = experiment_signatures(cfg, space, None)
    own = set(reference_signatures(space, ("mobilenet_v3_small",)))
    lonely = [s for s in sigs if s in own and not any(
        o != s and o.shape() == s.shape() for o in sigs)]
    meta = {"resolution": "16", "se_gate": "hsigmoid"}
    LatencyTable(meta, [Row(s, 0.01) for s in sigs]).save(table_path)
    assert main(["validate", argv[1]]) == 0
    capsys.readouterr()
    LatencyTable(meta, [Row(s, 0.01) for s in sigs if s != lonely[0]]).save(table_path)
    t0 = time.perf_counter()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"nas: error: {argv[1]}: latency.path: 1 of the {len(sigs)} operators "
                   f"this experiment prices are not in the table and policy 'interpolate' "
                   f"cannot fill them (interpolation needs a row of the same shape (op, size, "
                   f"kernel, stride, activation, skip, SE or not)), e.g. "
                   f"{lonely[0].describe()}; they are listed in {tmp_path / 'phone.missing.csv'}"
                   f": time them on the device and append them"]
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "bad").exists()
    # the table's format, the one row to fill (loading it says "latency_ms: empty")
    lines = [line for line in (tmp_path / "phone.missing.csv").read_text().splitlines()
             if line and not line.startswith("#")]
    assert len(lines) == 2 and lines[1] == ",".join(map(str, lonely[0].key())) + ",,,"
