"""One resolver for "a network": a reference name, an Arch file, a folder with
arch.json (+ weights.pt), or a run directory, with the same errors everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from arch_fixtures import small_arch
from nas.resolve import anchor, resolve_net, run_net
from nas.rundir import RunDir
from search_spaces.builder import build_model
from search_spaces.infra.errors import UserError
from search_spaces.infra.weights import NetFolder, write_weights
from search_spaces.reference import load_reference


def net_folder(root: Path, weights: bool = True, done: bool = False) -> NetFolder:
    folder = NetFolder(root)
    root.mkdir(parents=True, exist_ok=True)
    folder.arch_json.write_text(small_arch().to_json())
    if weights:
        write_weights(build_model(small_arch()).state_dict(), folder.weights_pt)
    if done:
        folder.metrics_json.write_text("{}")
    return folder


def test_a_reference_name() -> None:
    net = resolve_net("mobilenet_v3_small")
    assert net.arch == load_reference("mobilenet_v3_small")
    assert (net.weights, net.origin) == (None, "reference")


def test_a_misspelt_reference_name_gets_a_did_you_mean() -> None:
    with pytest.raises(UserError, match=r"unknown reference net 'mobilenet_v3_smal' .*"
                                        r"did you mean 'mobilenet_v3_small'"):
        resolve_net("mobilenet_v3_smal")


def test_a_missing_path_names_it_without_a_source(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"does not exist \(did you mean the reference net "
                                        r"'mobilenet_v3_small'\?\)") as err:
        resolve_net(tmp_path / "mobilenet_v3_smal")
    assert err.value.source is None  # a caller prefixes its config key
    with pytest.raises(UserError, match=r"nowhere/arch.json does not exist$"):
        resolve_net("nowhere/arch.json")


def test_an_arch_file(tmp_path: Path) -> None:
    path = tmp_path / "net.json"
    path.write_text(small_arch().to_json())
    assert resolve_net(path) == (small_arch(), None, "file")
    path.write_text("{oops")
    with pytest.raises(UserError, match="net.json: line 1: invalid JSON"):
        resolve_net(path)


def test_a_folder_with_and_without_weights(tmp_path: Path) -> None:
    folder = net_folder(tmp_path / "net")
    assert resolve_net(folder.root) == (small_arch(), folder.weights_pt, "folder")
    folder.weights_pt.unlink()
    assert resolve_net(folder.root) == (small_arch(), None, "folder")
    with pytest.raises(UserError, match="no arch.json here") as err:
        resolve_net(tmp_path)
    assert err.value.source is not None


def test_a_run_directory_by_what_is_asked(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "exp", {"name": "exp"})
    with pytest.raises(UserError, match=r"search/best.json does not exist"):
        resolve_net(run.root, "search")
    with pytest.raises(UserError, match=r"no arch.json here \(has the final_train stage run"):
        resolve_net(run.root, "final")
    with pytest.raises(UserError, match="no network here yet"):
        resolve_net(run.root)

    run.search_dir.mkdir()
    run.best_json.write_text(small_arch().to_json())
    for pick in ("search", "netadapt", "latest"):
        assert resolve_net(run.root, pick) == (small_arch(), None, "search")

    net_folder(run.netadapt.final.root)  # not complete (no metrics.json): not taken yet
    assert resolve_net(run.root, "netadapt").origin == "search"
    net_folder(run.netadapt.final.root, done=True)
    weights = run.netadapt.final.weights_pt
    assert resolve_net(run.root, "netadapt") == (small_arch(), weights, "netadapt")
    assert resolve_net(run.root, "latest").origin == "netadapt"
    assert resolve_net(run.root, "search").origin == "search"

    net_folder(run.final.root, done=True)
    assert run_net(run, "final") == (small_arch(), run.final.weights_pt, "final")
    assert resolve_net(run.root).origin == "final"


def test_anchor_makes_paths_absolute_and_keeps_names(tmp_path: Path) -> None:
    assert anchor("mnasnet_a1", tmp_path) == "mnasnet_a1"
    assert anchor("net", tmp_path) == str(tmp_path / "net")
    assert anchor("/abs/net", tmp_path) == "/abs/net"
