"""The `nas` command line: info, validate, and how user mistakes are reported."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import strict_json
from nas.cli import main

NAS = [str(Path(sys.executable).parent / "nas")]


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(NAS + list(args), capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("name, params", [("mobilenet_v3_large", 5_483_032),
                                          ("mobilenet_v3_small", 2_542_856),
                                          ("mnasnet_b1", 4_383_312)])
def test_info_json_exact_counts(name, params):
    out = run("info", name, "--json")
    assert out.returncode == 0, out.stderr
    data = strict_json(out.stdout)
    assert data["params"] == params and isinstance(data["macs"], int)


def test_info_table_and_overrides(capsys):
    assert main(["info", "mobilenet_v3_small", "--resolution", "32", "--classes", "10",
                 "--stem-stride", "1"]) == 0
    text = capsys.readouterr().out
    assert "32x32x3, 10 classes" in text
    assert "layers[10]" in text and "total" in text


def test_info_arch_file(tmp_path, capsys):
    assert main(["info", "mnasnet_a1", "--json"]) == 0
    a1 = strict_json(capsys.readouterr().out)
    assert a1["params"] == 3_887_038
    path = tmp_path / "a1.json"
    from search_spaces.reference import load_reference
    load_reference("mnasnet_a1").save(path)
    assert main(["info", str(path), "--json"]) == 0
    assert strict_json(capsys.readouterr().out)["macs"] == a1["macs"]


def test_validate_yaml_and_json(repo, capsys):
    assert main(["validate", str(repo / "runs" / "quickstart.yaml")]) == 0
    assert "valid experiment 'quickstart'" in capsys.readouterr().out
    ref = repo / "search_spaces" / "reference" / "mobilenet_v3_small.json"
    assert main(["validate", str(ref)]) == 0
    assert "valid Arch JSON" in capsys.readouterr().out


def test_user_mistake_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("search:\n  space: mnasnet\n  kernal: 3\n")
    out = run("validate", str(bad))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "Traceback" not in out.stderr
    assert f"{bad}: search.kernal: unknown key" in out.stderr
    debug = run("--debug", "validate", str(bad))
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_bad_arch_json_names_layer(tmp_path):
    from search_spaces.reference import load_reference
    data = load_reference("mobilenet_v3_small").to_dict()
    data["layers"][2]["kernel"] = 4
    path = tmp_path / "net.json"
    path.write_text(json.dumps(data))
    out = run("info", str(path))
    assert out.returncode == 2
    assert out.stderr.strip() == f"nas: error: {path}: layers[2].kernel: unsupported kernel 4 (choose from 3, 5, 7)"


def test_unknown_reference_name():
    out = run("info", "resnet50")
    assert out.returncode == 2 and "unknown reference net 'resnet50'" in out.stderr


def test_validate_checks_what_a_run_checks(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("latency: {kind: flops}\n")
    out = run("validate", str(exp))
    assert out.returncode == 2 and "reward.target_ms: missing" in out.stderr
    exp.write_text("latency: {kind: flops}\nreward: {target_ms: 2}\n"
                   "data: {kind: npz, path: nothere.npz}\n")
    out = run("validate", str(exp))
    assert out.returncode == 2
    assert out.stderr.strip() == f"nas: error: {exp}: data.path: {tmp_path / 'nothere.npz'} does not exist"


def test_output_into_a_closed_pipe_is_quiet():
    out = subprocess.run(f"'{NAS[0]}' info mobilenet_v3_large | head -1", shell=True,
                         capture_output=True, text=True, timeout=120)
    assert "mobilenet_v3_large" in out.stdout and "Traceback" not in out.stderr


def test_results_on_an_experiment_folder_points_at_its_runs(tmp_path):
    run_dir = tmp_path / "exp" / "20260101-000000"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("name: exp\n")
    out = run("results", str(tmp_path / "exp"))
    assert out.returncode == 2 and f"the latest run in it: {run_dir}" in out.stderr


def test_validate_checks_a_netadapt_experiment_as_nas_netadapt_runs_it(
        repo: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", str(repo / "runs" / "netadapt_quick.yaml")]) == 0
    assert "valid experiment 'netadapt_quick' for `nas netadapt`" in capsys.readouterr().out


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_a_device_the_machine_lacks_is_refused_before_the_run(
        tmp_path: Path, repo: Path, capsys: pytest.CaptureFixture) -> None:
    exp = tmp_path / "q.yaml"
    exp.write_text((repo / "runs" / "quickstart.yaml").read_text())
    assert main(["search", str(exp), "--set", "train.device=cuda",
                 "--set", f"output_dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"nas: error: {exp}: train.device: cuda requested but torch "
                   f"{__import__('torch').__version__} sees no CUDA device (device: auto "
                   f"uses one when there is one)"]
    assert not (tmp_path / "out").exists()


def tiny_experiment(path: Path, name: str, table: Path) -> None:
    """A one-block experiment at 16x16 priced by the table at `table`, written to `path`."""
    path.write_text(f"""\
name: {name}
search: {{space: mobilenetv3, resolution: 16, stem_stride: 1, ops: [dsconv],
         skeleton: {{stem: 8, head_conv: 16, head_hidden: 32,
                     blocks: [{{width: 8, layers: 1, stride: 1}}]}},
         num_trials: 1, executor: inline}}
data: {{kind: synthetic, synthetic: {{num_classes: 4, train_size: 60, test_size: 10,
                                      image_size: 16}}}}
train: {{steps: 1, batch_size: 8, threads: 1}}
latency: {{kind: table, path: {table}}}
reward: {{target_ms: 2.0}}
""")


def test_the_phone_table_flow_from_export_ops_of_an_experiment_to_a_valid_run(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """export-ops EXP.yaml writes exactly the operators the experiment prices (its space
    and the report's reference nets); once timed, that table validates under policy
    error; one row short, the run is refused."""
    from latency.table import LatencyTable

    exp = tmp_path / "exp.yaml"
    table = tmp_path / "phone.csv"
    tiny_experiment(exp, "phone", table)
    assert main(["latency", "export-ops", "--space", str(exp), "--out",
                 str(tmp_path / "ops")]) == 0
    template = (tmp_path / "ops" / "template.csv").read_text().splitlines()
    rows = [line for line in template if line and not line.startswith("#")][1:]
    assert len(rows) == len(list((tmp_path / "ops" / "ops").glob("*.onnx")))
    timed = [line if line.startswith("#") else line.replace(",,,,", ",0.01,,,", 1)
             for line in template]
    table.write_text("\n".join(line.replace("# device: ", "# device: phone")
                               for line in timed) + "\n")
    assert len(LatencyTable.load(table)) == len(rows)
    capsys.readouterr()
    assert main(["validate", str(exp)]) == 0, capsys.readouterr().err
    table.write_text("\n".join(timed[:-1]) + "\n")  # one operator short
    assert main(["validate", str(exp)]) == 2
    assert "latency.path: 1 of the" in capsys.readouterr().err


def test_check_and_calibrate_take_an_experiment_yaml_as_space(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`--space EXP.yaml` samples what the experiment prices in check and calibrate too,
    as in build and export-ops (it was read as an Arch JSON there)."""
    from latency.table import LatencyTable

    exp = tmp_path / "exp.yaml"
    table = tmp_path / "t.csv"
    tiny_experiment(exp, "tiny", table)
    fast = ["--repeats", "3", "--warmup", "1"]
    assert main(["latency", "build", "--space", str(exp), "--out", str(table),
                 "--calibrate", "2", *fast]) == 0
    capsys.readouterr()
    assert main(["latency", "check", "--table", str(table), "--space", str(exp),
                 "--samples", "3", "--repeats", "2", "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["samples"] == 3
    assert main(["latency", "calibrate", "--table", str(table), "--space", str(exp),
                 "--networks", "2"]) == 0, capsys.readouterr().err
    assert "fitted on 2 networks measured now" in capsys.readouterr().out
    assert LatencyTable.load(table).calibration.networks == 2
    assert main(["latency", "check", "--table", str(table), "--space", str(exp),
                 "--resolution", "32"]) == 2  # the experiment says its own input
    assert "--resolution: an experiment YAML says it itself" in capsys.readouterr().err
