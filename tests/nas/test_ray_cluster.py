"""A search on a two-node Ray cluster (two `ray start` on loopback), with Ray's token
authentication set up as README 'On a Ray cluster' says: a driver without the token
gets one line that says so and how to continue, and the resumed search runs its
trials on both nodes."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from nas.raytune import session_pids
from test_search_cli import TINY

BIN = Path(sys.executable).parent
NAS, RAY = str(BIN / "nas"), str(BIN / "ray")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def cluster():
    """A head and a worker node of 1 CPU each, with their own token, home and temp
    folder (short: Ray's socket paths must fit 107 bytes); stopped by their session."""
    root = Path(tempfile.mkdtemp(prefix="nasray-", dir="/tmp"))
    home = root / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN", None)
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True,
                   capture_output=True, timeout=120)
    address = f"127.0.0.1:{free_port()}"
    common = ["--num-cpus=1", f"--temp-dir={root / 'ray'}", "--disable-usage-stats"]
    try:
        subprocess.run([RAY, "start", "--head", f"--port={address.split(':')[1]}",
                        "--include-dashboard=false", *common],
                       env=env, check=True, capture_output=True, timeout=180)
        subprocess.run([RAY, "start", f"--address={address}", *common],
                       env=env, check=True, capture_output=True, timeout=180)
        yield address, env
    finally:
        pids = [pid for session in (root / "ray").glob("session_2*")
                for pid in session_pids(str(session))]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            time.sleep(2)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_without_the_token_one_line_then_the_resume_runs_on_both_nodes(tmp_path, cluster):
    address, env = cluster
    exp = tmp_path / "tiny.yaml"
    exp.write_text(TINY.format(trials=4, executor="ray", strategy="random")
                   .replace("  num_cpus: 2\n", f"  address: {address}\n"))
    no_token = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
    out = subprocess.run([NAS, "search", str(exp)], capture_output=True, text=True,
                         env=no_token, timeout=600)
    run = next((tmp_path / "tiny").iterdir())
    assert out.returncode == 2, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert "Traceback" not in out.stderr
    assert last.startswith(f"nas: error: ray.address: cannot join the Ray cluster at {address} "
                           "(the cluster refused this driver's token"), last
    assert last.endswith(f"once fixed: nas resume {run}"), last

    out = subprocess.run([NAS, "resume", str(run)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"ray: joined the cluster at {address}: 2 node(s), 2 CPUs" in out.stderr
    assert sorted(pd.read_csv(run / "search" / "trials.csv")["trial_id"]) == [0, 1, 2, 3]
    results = sorted(run.glob("ray/**/trial_*/result.json"))
    assert len(results) >= 2
    nodes = {json.loads(line)["node_id"] for f in results
             for line in f.read_text().splitlines()}
    assert len(nodes) == 2  # two trials side by side need both 1-CPU nodes
