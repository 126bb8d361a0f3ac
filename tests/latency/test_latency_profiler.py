"""The profiler: reachable signatures, NetAdapt shrink grids, building, resuming."""

from __future__ import annotations

import io
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latency.measure import Protocol
from latency.profiler import Progress, build, resolve_coverage, space_signatures
from latency.shrink import random_shrink, set_group_width, shrink_grid, shrink_variants
from latency.signature import signatures
from latency.table import LatencyTable
from latency_fixtures import REPO, tiny_arch
from search_spaces.arch import arch_from_dict
from search_spaces.channels import STEM, residual_groups
from search_spaces.factorized import make_space
from search_spaces.infra.errors import UserError

FAST = Protocol(warmup=1, repeats=3)


@pytest.mark.parametrize("name", ["mnasnet", "mobilenetv3"])
def test_space_enumeration_covers_every_sampled_network(name: str) -> None:
    space = make_space(name, "mobilenetv3_small", resolution=32, stem_stride=1, num_classes=10)
    reachable = set(space_signatures(space))
    rng = random.Random(0)
    for _ in range(300):
        arch = space.decode(space.sample(rng))
        assert set(signatures(arch)) <= reachable
    # Enumeration, not the product of options: a few hundred to a few thousand rows.
    assert 100 < len(reachable) < 5000


def test_shrinks_keep_the_network_valid() -> None:
    arch = tiny_arch()
    assert residual_groups(arch) == [[STEM], [0, 1], [2]]
    narrower = set_group_width(arch, [0, 1], 8)
    assert narrower.layers[0].out_ch == narrower.layers[1].in_ch == narrower.layers[2].in_ch == 8
    assert shrink_grid(24, 8) == [16, 8]
    variants = list(shrink_variants(arch, 8))
    rng = random.Random(1)
    variants += [random_shrink(arch, rng, 8, 3) for _ in range(20)]
    for v in variants:
        arch_from_dict(v.to_dict())  # strict validation: channels chain, SE, skips
    # Expansions 32 and 48 shrink alone (3 + 5), groups [0, 1] (1) and [2] (2) alone.
    assert len(variants) - 20 == 11


def test_arch_coverage_is_the_net_plus_one_dimensional_grids(tmp_path: Path) -> None:
    path = tmp_path / "tiny.json"
    tiny_arch().save(path)
    cov = resolve_coverage(str(path))
    sigs = set(cov.signatures(8))
    assert set(signatures(tiny_arch())) <= sigs
    for v in shrink_variants(tiny_arch(), 8):
        assert set(signatures(v)) <= sigs
    # Not the cross product: a net with both expansions shrunk at once needs other rows.
    assert cov.meta(8)["channel_step"] == "8"
    with pytest.raises(UserError, match="--resolution is needed"):
        resolve_coverage("mnasnet")


def test_build_writes_rows_and_a_calibration(tmp_path: Path) -> None:
    cov = resolve_coverage(str(_tiny_json(tmp_path)), resolution=8)
    out = tmp_path / "t.csv"
    stream = io.StringIO()
    table = build(cov, out, FAST, channel_step=8, calibrate=3, stream=stream)
    loaded = LatencyTable.load(out)
    assert len(loaded) == len(cov.signatures(8)) == len(table)
    assert loaded.calibration is not None and loaded.calibration.networks == 3
    assert all(r.latency_ms > 0 and r.count == 3 for r in loaded.rows.values())
    assert "[latency build]" in stream.getvalue() and "ETA" in stream.getvalue()
    # A finished table is left as it is by a second build.
    before = out.read_text()
    build(cov, out, FAST, channel_step=8, calibrate=3, stream=io.StringIO())
    assert out.read_text() == before


def test_build_refuses_a_table_built_for_something_else(tmp_path: Path) -> None:
    cov = resolve_coverage(str(_tiny_json(tmp_path)), resolution=8)
    out = tmp_path / "t.csv"
    build(cov, out, FAST, channel_step=8, calibrate=0, stream=io.StringIO())
    with pytest.raises(UserError, match="was built with threads '1', this build has '2'"):
        build(cov, out, Protocol(threads=2, warmup=1, repeats=3), channel_step=8, calibrate=0,
              stream=io.StringIO())


def test_resume_after_a_killed_build(tmp_path: Path) -> None:
    arch_path = _tiny_json(tmp_path)
    out = tmp_path / "t.csv"
    cmd = [sys.executable, "-m", "nas.cli", "latency", "build", "--space", str(arch_path),
           "--out", str(out), "--calibrate", "0", "--chunk", "2"]
    # Slow enough (many repeats) that it is still running after a few rows are written.
    proc = subprocess.Popen(cmd + ["--repeats", "2000"], cwd=REPO, stderr=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while _data_lines(out) < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the build finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        # It may still have finished between the check and the signal: only a build
        # that was running when the signal came dies of it.
        assert proc.wait() == -signal.SIGKILL, "the build finished before it was killed"
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = {s: r.latency_ms for s, r in LatencyTable.load(out).rows.items()}
    total = len(resolve_coverage(str(arch_path)).signatures(8))
    assert 4 <= len(kept) < total
    with open(out, "a") as f:
        f.write("mbconv,16,8,")  # a row cut short by the kill
    done = subprocess.run(cmd + ["--repeats", "2"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    table = LatencyTable.load(out)  # a duplicate row would fail to load
    assert len(table) == total
    assert {s: table.get(s).latency_ms for s in kept} == kept  # earlier rows kept as written
    assert table.get(next(iter(kept))).count == 2000


def test_progress_reports_rows_elapsed_and_eta() -> None:
    stream = io.StringIO()
    progress = Progress(10, 4, stream)
    progress.update(6, "last op")
    assert "10/10 rows (100.0%)" in stream.getvalue() and "ETA" in stream.getvalue()


def _tiny_json(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.json"
    tiny_arch().save(path)
    return path


def _data_lines(path: Path) -> int:
    if not path.exists():
        return 0
    lines = path.read_text().splitlines()
    return max(0, sum(1 for l in lines if l and not l.startswith("#")) - 1)


def test_a_pool_is_the_samples_distinct_networks_in_order() -> None:
    # one network's coverage: the network once, then 11 random shrinks of it
    cov = resolve_coverage("mobilenet_v3_small", 32, 1, 10)
    drawn = [a.hash() for a, _ in cov.sample(12, random.Random(5), 8)]
    pool = [a.hash() for a in cov.pool(12, random.Random(5), 8)]
    assert pool == list(dict.fromkeys(drawn))
    assert len(pool) < len(drawn)  # shrinks of one network repeat: each kept once
