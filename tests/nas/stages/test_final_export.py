"""The final_train and export stages, `nas export` and `nas evaluate`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from arch_fixtures import small_arch
from helpers import fill_by_order, strict_json
from nas.cli import main
from nas.stages.export import export
from search_spaces.arch import load_arch
from search_spaces.builder import build_model
from experiments import write_exp

NAS = str(Path(sys.executable).parent / "nas")


def trained_folder(tmp_path: Path) -> Path:
    """arch.json + weights.pt of the small test net with non-trivial weights."""
    folder = tmp_path / "net"
    folder.mkdir(exist_ok=True)
    model = build_model(small_arch())
    fill_by_order(model, seed=2)
    (folder / "arch.json").write_text(small_arch().to_json())
    torch.save(model.state_dict(), folder / "weights.pt")
    return folder


def test_onnx_matches_torch_with_a_dynamic_batch(tmp_path: Path) -> None:
    folder = trained_folder(tmp_path)
    diff = export(small_arch(), folder / "weights.pt", "onnx", tmp_path / "m.onnx")
    assert diff is not None and diff < 1e-4
    model = build_model(small_arch())
    model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    model.eval()
    x = torch.randn(3, 3, 16, 16)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"image": x.numpy()})[0]
    with torch.inference_mode():
        want = model(x).numpy()
    assert got.shape == (3, 4) and np.abs(got - want).max() < 1e-4
    assert np.abs(want).max() > 1e-2  # the comparison is not between two zeros


def test_pt2_program_reloads_and_matches(tmp_path: Path) -> None:
    folder = trained_folder(tmp_path)
    assert export(small_arch(), folder / "weights.pt", "pt2", tmp_path / "m.pt2") < 1e-6
    program = torch.export.load(str(tmp_path / "m.pt2"))
    assert program.module()(torch.randn(1, 3, 16, 16)).shape == (1, 4)


def test_nas_export_formats_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = trained_folder(tmp_path)
    assert main(["export", str(folder), "--format", "json", "-o", str(tmp_path / "a.json")]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["layers"]
    assert main(["export", str(folder), "--format", "pt2", "-o", str(tmp_path / "a.pt2")]) == 0
    assert "max |torch - exported|" in capsys.readouterr().out
    (folder / "weights.pt").write_bytes(b"garbage")
    out = subprocess.run([NAS, "export", str(folder), "--format", "onnx", "-o",
                          str(tmp_path / "b.onnx")], capture_output=True, text=True)
    assert out.returncode == 2 and "weights.pt: not a readable weights file" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "b.onnx").exists()
    out = subprocess.run([NAS, "export", str(tmp_path), "--format", "onnx", "-o",
                          str(tmp_path / "b.onnx")], capture_output=True, text=True)
    assert out.returncode == 2 and "no arch.json here" in out.stderr


def test_nas_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = trained_folder(tmp_path)
    exp = write_exp(tmp_path / "exp")
    assert main(["evaluate", str(folder / "arch.json"), str(folder / "weights.pt"),
                 "--data", str(exp), "--json"]) == 0
    result = strict_json(capsys.readouterr().out)
    assert 0 <= result["top1"] <= 1 and result["images"] == 50 and result["split"] == "test"
    out = subprocess.run([NAS, "evaluate", str(folder / "arch.json"),
                          str(folder / "weights.pt"), "--data", "synthetic"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "the network has 4 classes, the data 10" in out.stderr


def test_stage_order_is_checked(tmp_path: Path) -> None:
    exp = write_exp(tmp_path)
    for stages, expect in (("[export]", "list final_train before it"),
                           ("[final_train]", "list one of them before it"),
                           ("[netadapt, search]", "subsequence")):
        out = subprocess.run([NAS, "search", str(exp), "--set", f"stages={stages}"],
                             capture_output=True, text=True)
        assert out.returncode == 2 and expect in out.stderr, out.stderr


@pytest.mark.slow
def test_every_stage_in_one_run(tmp_path: Path) -> None:
    exp = write_exp(tmp_path, extra="stages: [search, netadapt, final_train, export]\n"
                                    "final: {steps: 4}\nexport: {formats: [onnx, pt2], int8: "
                                    "true, int8_calibration_images: 32}\n"
                                    "report: {train_references: true}\n")
    exp.write_text(exp.read_text().replace("  start: net\n", ""))
    out = subprocess.run([NAS, "search", str(exp)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    run = next((tmp_path / "shrink").iterdir())
    final = run / "final"
    metrics = strict_json((final / "metrics.json").read_text())
    assert metrics["source"] == "netadapt" and 0 <= metrics["test_top1"] <= 1
    assert metrics["test_images"] == 50 and metrics["params"] > 0
    assert metrics["latency_ms"] <= json.loads(
        (run / "netadapt" / "summary.json").read_text())["target_ms"]
    pre = json.loads((final / "preprocessing.json").read_text())
    assert pre["input"]["height"] == 16 and len(pre["mean"]) == 3 and len(pre["classes"]) == 4
    model = build_model(load_arch(final / "arch.json"))
    model.load_state_dict(torch.load(final / "weights.pt", weights_only=True))
    assert (final / "model.onnx").is_file() and (final / "model.pt2").is_file()
    refs = json.loads((final / "references.json").read_text())
    assert set(refs) == {"mobilenet_v3_small", "mobilenet_v3_large"}
    report = (run / "report.md").read_text()
    assert "## NetAdapt" in report and "## Final network" in report and "not trained" not in report
    assert f"| mobilenet_v3_small | {refs['mobilenet_v3_small']:.4g} |" in report
    assert (run / "pareto.png").is_file()
    # the exported model timed here, beside the prediction and the target
    measured = metrics["latency_measured_ms"]
    assert set(measured) == {"torch", "onnxruntime", "onnxruntime_int8"}
    assert min(measured.values()) > 0
    # the int8 model: scored on the test split beside fp32, and `nas evaluate` agrees
    assert (final / "model.int8.onnx").is_file() and 0 <= metrics["int8_test_top1"] <= 1
    assert metrics["int8_top1_drop"] == pytest.approx(metrics["test_top1"]
                                                      - metrics["int8_test_top1"])
    scored = subprocess.run([NAS, "evaluate", str(final / "arch.json"),
                             str(final / "model.int8.onnx"), "--data", str(run), "--json"],
                            capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert json.loads(scored.stdout)["top1"] == metrics["int8_test_top1"]
    summary = json.loads((run / "netadapt" / "summary.json").read_text())
    assert metrics["latency_predicted_ms"] == metrics["latency_ms"]
    assert metrics["latency_target_ms"] == summary["target_ms"]
    # `kind: flops` without ms_per_mmac prices MMACs, not milliseconds: not compared
    assert metrics["latency_model"].startswith("MMACs")
    assert metrics["latency_compared_backend"] is None
    assert metrics["latency_relative_error"] is None
    lines = report.splitlines()
    assert lines[2] == "## Result" and lines[4].startswith(
        f"Test top-1 **{metrics['test_top1']:.4g}**, latency **{metrics['latency_ms']:.4g} "
        f"ms** predicted, target {summary['target_ms']:.4g} ms (meets it)")
    assert lines[5].startswith("Measured on this machine (") and "(onnxruntime)" in lines[5]
    assert "; not compared: the latency model is the MMACs" in lines[5]
    drop = 100 * metrics["int8_top1_drop"]
    said = f"{abs(drop):.2f} points {'below' if drop >= 0 else 'above'} fp32"
    assert any(line.startswith("Int8 (`model.int8.onnx`, static QDQ): test top-1 **")
               and said in line for line in lines[6:9])
    again = subprocess.run([NAS, "resume", str(run)], capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0 and "final_train: already done" in again.stderr
    assert "export: timing" not in again.stderr  # measured once
    assert strict_json((final / "metrics.json").read_text()) == metrics


def test_nas_evaluate_scores_every_image_of_a_file_with_the_networks_preprocessing(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """All 37 images of an npz (or its 13 x_test images), normalised as
    preprocessing.json says, not with statistics of the file."""
    folder = trained_folder(tmp_path)
    mean, std = [0.2, 0.5, 0.7], [0.3, 0.25, 0.2]
    (folder / "preprocessing.json").write_text(json.dumps({"mean": mean, "std": std}))
    g = np.random.default_rng(0)
    images = g.integers(0, 256, (37, 16, 16, 3), dtype=np.uint8)
    labels = g.integers(0, 4, 37)
    np.savez(tmp_path / "all.npz", images=images, labels=labels)
    np.savez(tmp_path / "keras.npz", x_train=images, y_train=labels, x_test=images[:13],
             y_test=labels[:13])
    model = build_model(small_arch())
    model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    model.eval()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    with torch.inference_mode():
        hits = (model(x).argmax(1).numpy() == labels)
    for name, n in (("all.npz", 37), ("keras.npz", 13)):
        assert main(["evaluate", str(folder / "arch.json"), str(folder / "weights.pt"),
                     "--data", str(tmp_path / name), "--json"]) == 0
        result = strict_json(capsys.readouterr().out)
        assert result["images"] == n and "every image of" in result["scored"]
        assert result["top1"] == pytest.approx(hits[:n].mean())
    assert main(["evaluate", str(folder / "arch.json"), str(folder / "weights.pt"),
                 "--data", str(tmp_path / "all.npz"), "--mean", "0.2,0.5,0.7",
                 "--std", "0.3,0.25,0.2", "--json"]) == 0
    assert strict_json(capsys.readouterr().out)["top1"] == pytest.approx(hits.mean())
    (folder / "preprocessing.json").unlink()
    assert main(["evaluate", str(folder / "arch.json"), str(folder / "weights.pt"),
                 "--data", str(tmp_path / "all.npz")]) == 2
    assert "--mean/--std: needed to score a data file" in capsys.readouterr().err
