"""The one weights reader and writer, and the arch.json + weights.pt folder."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from arch_fixtures import small_arch
from search_spaces.builder import build_model
from search_spaces.infra.errors import UserError
from search_spaces.infra.weights import NetFolder, read_weights, write_weights
from search_spaces.transforms import with_width_multiplier


def saved(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_write_then_read_round_trips_and_checks_the_arch(tmp_path: Path) -> None:
    state = build_model(small_arch()).state_dict()
    path = tmp_path / "deep" / "weights.pt"
    write_weights(state, path)  # makes the folder, leaves no temporary behind
    assert [p.name for p in path.parent.iterdir()] == ["weights.pt"]
    back = read_weights(path, small_arch())
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


@pytest.mark.parametrize("content, expect", [
    (b"", "not a readable weights file"),  # 0 bytes: killed before anything was written
    (b"PK\x03\x04 not really a zip", "not a readable weights file"),
    (b"\x80\x04truncated", "not a readable weights file"),
    (saved(torch.zeros(3)), "expected a state dict, found Tensor"),
    (saved([torch.zeros(3)]), "expected a state dict, found list"),
    (saved({"w": 3}), "entry 'w' is not a named tensor"),
])
def test_a_damaged_or_foreign_file_is_a_user_error_naming_it(tmp_path: Path, content: bytes,
                                                            expect: str) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=expect) as err:
        read_weights(path)
    assert err.value.source == str(path)


def test_a_missing_file_and_weights_of_another_net(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        read_weights(tmp_path / "nothere.pt")
    path = tmp_path / "narrow.pt"
    write_weights(build_model(with_width_multiplier(small_arch(), 0.5)).state_dict(), path)
    read_weights(path)  # a state dict, just not for this network
    with pytest.raises(UserError, match=r"narrow.pt: key 'stem.0.weight' has shape"):
        read_weights(path, small_arch())


def test_unpickling_anything_but_tensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(saved({"w": torch.zeros(1), "obj": Path("x")}))  # weights_only refuses
    with pytest.raises(UserError, match="not a readable weights file"):
        read_weights(path)


def test_net_folder_names_its_files(tmp_path: Path) -> None:
    folder = NetFolder(tmp_path)
    assert (folder.arch_json.name, folder.weights_pt.name, folder.metrics_json.name) == \
        ("arch.json", "weights.pt", "metrics.json")
    assert not folder.complete()
    folder.metrics_json.write_text("{}")
    assert folder.complete()
