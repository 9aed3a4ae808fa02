"""tests/gpu/run.sh, the one command for a lent GPU machine, in what needs no GPU: the one line and exit 0 without
one, its arguments and time budgets, the wheel list and its size, the offline install and the project mapping,
parts ended at their limit, pytest's results read back, and the results folder. Runs in the normal (CPU) suite.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_SH = ROOT / "tests" / "gpu" / "run.sh"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "gpu" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gpu_run = _load("gpu_run")


def fake_bin(folder: Path, nvidia_smi: str | None) -> Path:
    """A PATH folder holding what run.sh needs (dirname) and, unless None, an `nvidia-smi` script with that body."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dirname").symlink_to(shutil.which("dirname"))
    if nvidia_smi is not None:
        script = folder / "nvidia-smi"
        script.write_text(f"#!/bin/sh\n{nvidia_smi}\n")
        script.chmod(0o755)
    return folder


def run_sh(tmp_path: Path, nvidia_smi: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(fake_bin(tmp_path / "bin", nvidia_smi)), "PYTHON": sys.executable, "HOME": str(tmp_path)}
    return subprocess.run(
        [shutil.which("bash"), str(RUN_SH), *args], capture_output=True, text=True, env=env, timeout=120
    )


# --- without a GPU: one line, exit 0, nothing run ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("nvidia_smi", "reason"),
    [
        (None, "nvidia-smi is not on PATH"),
        (
            'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."; exit 9',
            "nvidia-smi -L exited 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
        ),
        ("echo 'No devices were found'; exit 0", "nvidia-smi -L lists no GPU"),
    ],
)
def test_without_a_gpu_run_sh_says_so_in_one_line_and_runs_nothing(tmp_path: Path, nvidia_smi, reason) -> None:
    out = tmp_path / "results"
    done = run_sh(tmp_path, nvidia_smi, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"tests/gpu/run.sh: no NVIDIA GPU here ({reason}); nothing run"]
    assert done.stderr == "" and not out.exists()


def test_bad_arguments_exit_2_with_one_message_before_any_gpu_check(tmp_path: Path) -> None:
    for args, words in [
        (["--parts", "bench,nope"], "--parts 'bench,nope': name one or more of bench, tests, segbench"),
        (["--budget", "900"], "--budget 900: between 45 and 600 seconds"),
        (["--plan", "--check-wheels"], "not allowed with argument"),
    ]:
        done = run_sh(tmp_path / args[0].strip("-"), "exit 99", *args)
        assert done.returncode == 2 and words in done.stderr, (args, done.stderr)


# --- arguments and time -------------------------------------------------------------------------------------


def test_every_part_fits_the_eight_minutes_and_a_smaller_budget_shrinks_them() -> None:
    assert gpu_run.INSTALL_SECONDS + sum(p.budget_s for p in gpu_run.PARTS) <= gpu_run.TOTAL_SECONDS < 8 * 60
    args = gpu_run.parse_args(["--parts", "segbench,bench", "--budget", "200"])
    assert [p.name for p in args.parts] == ["bench", "segbench"]  # the table's order, whatever the flag's
    limits = gpu_run.part_timeouts(args.parts, args.budget - gpu_run.INSTALL_SECONDS)
    assert sum(limits.values()) <= 155 and limits["bench"] > limits["segbench"] > 0
    assert gpu_run.part_timeouts(gpu_run.PARTS, 1000) == {p.name: p.budget_s for p in gpu_run.PARTS}


def test_plan_names_each_command_and_its_limit_without_a_gpu(capsys) -> None:
    assert gpu_run.main(["--plan", "--out", "/tmp/x", "--python", "/opt/py/bin/python3"], probe=_no_probe) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "results: /tmp/x"
    assert "bench: at most 150 s: python3 tests/gpu/bench_gpu.py --out /tmp/x/bench.json" in lines
    assert any(line.startswith("tests: at most 150 s: python3 -m pytest") and "tests/gpu" in line for line in lines)
    assert lines[-1] == "in all at most 465 s of 470"


def _no_probe() -> tuple[list[str], str]:
    raise AssertionError("the GPU was probed")


def test_results_go_to_out_flag_then_dollar_out_then_a_dated_build_folder() -> None:
    now = datetime.datetime(2026, 12, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)
    assert gpu_run.results_folder(Path("/a"), {"OUT": "/b"}, now) == Path("/a")
    assert gpu_run.results_folder(None, {"OUT": "/b"}, now) == Path("/b")
    assert gpu_run.results_folder(None, {"OUT": ""}, now) == ROOT / "build" / "gpu-results" / "20261206-070809"


# --- the wheels ---------------------------------------------------------------------------------------------


def test_the_wheel_list_pins_what_the_gpu_image_lacks_and_refuses_a_bad_line(tmp_path: Path) -> None:
    wheels = gpu_run.read_wheel_list(gpu_run.WHEEL_LIST)
    by_name = {w.name: w for w in wheels}
    assert by_name["onnxslim"].module == "onnxslim" and by_name["nvidia-ml-py"].module == "pynvml"
    assert all(w.version[0].isdigit() and w.why for w in wheels)
    bad = tmp_path / "wheels.txt"
    bad.write_text("# comment\nonnxslim==0.1.98 onnxslim ok\nrich>=15 rich no pin\n")
    with pytest.raises(ValueError, match=r"wheels.txt:3: expected `name==version  module  why`"):
        gpu_run.read_wheel_list(bad)
    bad.write_text("rich==1 rich a\nRich==2 rich b\n")
    with pytest.raises(ValueError, match="listed twice"):
        gpu_run.read_wheel_list(bad)


def test_wheel_check_names_missing_and_unlisted_files_and_the_size_budget(tmp_path: Path) -> None:
    wheels = [gpu_run.Wheel("nvidia-ml-py", "13.1", "pynvml", "x"), gpu_run.Wheel("pytest", "9.2.0", "pytest", "y")]
    folder = tmp_path / "wheels"
    folder.mkdir()
    (folder / "nvidia_ml_py-13.1-py3-none-any.whl").write_bytes(b"x" * 3000)
    (folder / "other-1.0-py3-none-any.whl").write_bytes(b"x" * 100)
    check = gpu_run.check_wheels(wheels, folder, budget_bytes=10_000)
    assert check.missing == ["pytest==9.2.0"] and check.extra == ["other-1.0-py3-none-any.whl"]
    assert check.total_bytes == 3100 and not check.ok
    text = gpu_run.describe_check(check, folder)
    assert "pytest==9.2.0" in text and "MISSING" in text and "(not listed)" in text
    assert "pip download --no-deps --only-binary=:all:" in text and "nvidia-ml-py==13.1 pytest==9.2.0" in text
    (folder / "other-1.0-py3-none-any.whl").unlink()
    (folder / "pytest-9.2.0-py3-none-any.whl").write_bytes(b"x" * 8000)
    assert gpu_run.check_wheels(wheels, folder, budget_bytes=11_000).ok
    assert not gpu_run.check_wheels(wheels, folder, budget_bytes=10_999).ok


def test_download_command_fetches_each_pin_for_the_gpu_machines_python() -> None:
    wheels = gpu_run.read_wheel_list(gpu_run.WHEEL_LIST)
    command = gpu_run.download_command(wheels, gpu_run.WHEEL_DIR)
    assert command.startswith("python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 ")
    assert " -d build/gpu-wheels " in command and "--platform manylinux_2_28_x86_64" in command
    assert all(f" {w.name}=={w.version}" in command for w in wheels)


def test_the_fetched_wheels_fit_beside_the_tree_and_serve_python_311_and_312() -> None:
    folder = gpu_run.WHEEL_DIR
    if not folder.is_dir():
        pytest.skip(f"{folder} is not fetched here (tests/gpu/run.sh --download-command prints the command)")
    size = gpu_run.tree_bytes()
    assert size is not None and size < 40 * gpu_run.MIB
    check = gpu_run.check_wheels(gpu_run.read_wheel_list(gpu_run.WHEEL_LIST), folder, gpu_run.TRAVEL_LIMIT - size)
    assert check.ok, gpu_run.describe_check(check, folder)
    tags = [p.name.rsplit("-", 3)[1:3] for p in folder.glob("*.whl")]  # [python tag, abi tag]
    assert all(abi in ("none", "abi3") and not python.startswith("cp31") for python, abi in tags), tags


def test_only_modules_the_interpreter_lacks_are_reported_missing() -> None:
    missing = gpu_run.missing_modules(sys.executable, ["json", "numpy", "no_such_module_for_segexport"], os.environ)
    assert missing == ["no_such_module_for_segexport"]


def test_a_carried_wheel_installs_offline_and_imports_from_the_site(tmp_path: Path) -> None:
    wheel = tmp_path / "segexport_probe-1.0-py3-none-any.whl"
    info = "segexport_probe-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("segexport_probe.py", "ANSWER = 42\n")
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: segexport-probe\nVersion: 1.0\n")
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "")
    site = tmp_path / "site"
    gpu_run.install_wheels(sys.executable, [wheel], site, timeout=120)
    env = {**os.environ, "PYTHONPATH": str(site), "PIP_NO_INDEX": "1"}
    done = subprocess.run([sys.executable, "-c", "import segexport_probe as p; print(p.ANSWER, p.__file__)"],
                          capture_output=True, text=True, env=env, check=True)  # fmt: skip
    assert done.stdout.split() == ["42", str(site / "segexport_probe.py")]
    with pytest.raises(RuntimeError, match="pip install from the carried wheels failed"):
        gpu_run.install_wheels(sys.executable, [tmp_path / "absent-1.0-py3-none-any.whl"], site, timeout=120)


def test_the_project_maps_onto_a_site_folder_without_pip(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    assert gpu_run.map_project(site) == {"segexport": "export", "segrt": "runtime", "segbench": "benchmarks"}
    probe = (
        "import importlib.metadata as m, segexport, segrt.backends.tensorrt as t, segbench.cli as c\n"
        "print(segexport.__file__, t.__file__, c.__file__, m.distribution('segexport').locate_file(''),"
        " m.version('segexport'))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(  # from elsewhere: the checkout's own segexport.egg-info (pip -e) is not on that path
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True, cwd=tmp_path
    )
    files = done.stdout.split()
    assert files[:4] == [
        str(site / "segexport" / "__init__.py"),
        str(site / "segrt" / "backends" / "tensorrt.py"),
        str(site / "segbench" / "cli.py"),
        str(site),
    ]
    assert files[4] == "0.1.0"


def test_a_subpackage_outside_its_parents_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "pyproject.toml").write_text(
        textwrap.dedent("""
        [project]
        name = "x"
        version = "1"
        [tool.setuptools.package-dir]
        segrt = "runtime"
        "segrt.backends" = "elsewhere/backends"
        """)
    )
    with pytest.raises(ValueError, match=r"segrt.backends to elsewhere/backends, outside segrt's folder"):
        gpu_run.map_project(tmp_path, root)


# --- running parts and reading what they wrote ---------------------------------------------------------------


def test_a_part_past_its_limit_is_ended_with_what_it_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    log_path = tmp_path / "log"
    with open(log_path, "w") as log:
        fine = gpu_run.run_part([sys.executable, "-c", "print('hello from a part')"], 30, log, os.environ, tmp_path)
        start = time.monotonic()
        slow = gpu_run.run_part(
            ["sh", "-c", f"echo started; sleep 60 & echo $! > {pid_file}; wait"], 2, log, os.environ, tmp_path
        )
        elapsed = time.monotonic() - start
    assert fine["status"] == "ok" and fine["exit_code"] == 0
    assert slow["status"] == "timed out" and slow["reason"] == "ended after its 2 s" and elapsed < 15
    child = int(pid_file.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    assert log_path.read_text().splitlines() == ["hello from a part", "started"]
    with open(os.devnull, "w") as log:
        failed = gpu_run.run_part([sys.executable, "-c", "raise SystemExit(3)"], 30, log, os.environ, ROOT)
    assert failed == {"status": "failed", "exit_code": 3, "seconds": failed["seconds"]}


def test_pytests_junit_file_is_read_back_with_each_skip_reason(tmp_path: Path) -> None:
    tests = tmp_path / "t"
    tests.mkdir()
    (tests / "test_some.py").write_text(
        "import pytest\n"
        "def test_passes(): pass\n"
        "def test_fails(): assert 1 == 2\n"
        "def test_skips(): pytest.skip('no TensorRT here')\n"
    )
    (tests / "test_whole_module.py").write_text(
        "import pytest\npytest.skip('no CUDA device', allow_module_level=True)\ndef test_never(): pass\n"
    )
    xml = tmp_path / "pytest.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests), f"--junitxml={xml}"],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    summary = gpu_run.junit_summary(xml)
    assert (summary["passed"], summary["failed"], summary["skipped"]) == (1, 1, 2)
    reasons = {t["test"]: t["message"] for t in summary["tests"] if t["outcome"] != "passed"}
    assert reasons["t.test_whole_module"] == "no CUDA device"  # a module skipped as it was collected
    assert reasons["t.test_some::test_skips"] == "no TensorRT here"
    assert "assert 1 == 2" in reasons["t.test_some::test_fails"]
    assert gpu_run.junit_summary(tmp_path / "absent.xml") == {"absent": "absent.xml was not written"}


def record_with_everything() -> dict:
    case = {
        "pipeline": "fused-cuda-graph",
        "precision": "fp16",
        "per_frame_ms": {"p50": 1.234},
        "on_device_ms": {"p50": 0.456},
        "stages_p50_ms": {"h2d": 0.1, "compute": 0.9, "d2h": 0.05},
        "agreement": 0.99871,
        "torch_peak_mb": 321.0,
        "device": {"memory_peak_mb": 1500.0, "power_mean_w": 250.0, "energy_per_frame_j": 0.3},
    }
    return {
        "when": "2026-12-06T07:08:09+00:00",
        "gpus": [{"name": "NVIDIA H100 80GB HBM3", "compute_cap": "9.0", "driver_version": "580", "memory.total": "x"}],
        "python": {"version": "3.12.3", "executable": "/opt/torch/.venv/bin/python3"},
        "wheels": {"installed": ["onnxslim"]},
        "parts": [
            {"name": "bench", "status": "ok", "seconds": 99.0, "limit_s": 150, "exit_code": 0, "what": "w"},
            {"name": "tests", "status": "timed out", "reason": "ended after its 150 s", "seconds": 150, "limit_s": 150},
        ],
        "tests": {"passed": 3, "failed": 0, "skipped": 1, "tests": [
            {"test": "tests.gpu.test_rtx_engines_gpu", "outcome": "skipped", "message": "no SM90 target\nmore"}]},
        "bench": {
            "device": {"torch": "2.11.0+cu130", "cudnn_allow_tf32": True},
            "models": [{"model": "unet_shapes", "input_size": [128, 128], "shapes": [
                {"shape": "1x612x640", "cases": [case]}]}],
            "runner_stand_in": {"what": "a copy", "cases": [
                {"shape": "1x612x640", "cuda_graph": True, "labels_as_expected": False,
                 "per_frame_ms": {"p50": 0.5}, "stages_p50_ms": {"h2d": 0.1}}]},
            "errors": [{"part": "fcn_resnet50", "error": "RuntimeError: out of memory"}],
        },
        "segbench": {"files": ["segbench-results.json", "segbench-report.md"]},
    }  # fmt: skip


def test_results_folder_holds_the_json_and_a_markdown_that_says_what_was_not_tensorrt(tmp_path: Path) -> None:
    record = record_with_everything()
    written = gpu_run.write_results(tmp_path / "r", record)
    assert [p.name for p in written] == ["gpu-run.json", "gpu-run.md"]
    assert json.loads(written[0].read_text()) == record
    text = written[1].read_text()
    assert "NVIDIA H100 80GB HBM3 (compute capability 9.0)" in text
    assert "| tests | timed out: ended after its 150 s | 150 (150) |" in text
    assert "| tests.gpu.test_rtx_engines_gpu | skipped | no SM90 target |" in text
    row = "| fused-cuda-graph | fp16 | 1.23 | 0.456 | - / 0.100 / 0.900 / - / 0.050 | 99.871 % | 321.00 | 1500 | 250 |"
    assert row in text
    assert f"**{gpu_run.STAND_IN_NOTE}**" in text and "not TensorRT" in gpu_run.STAND_IN_NOTE
    assert "| 1x612x640 | yes | 0.500 | 0.100 | - | - | - | NO |" in text
    assert "- fcn_resnet50: RuntimeError: out of memory" in text
    assert "segbench-results.json, segbench-report.md" in text
    record["bench"]["models"][0]["shapes"][0]["cases"][0]["device"] = {"absent": "NVML is not available here (x)"}
    assert "NVML figures absent: NVML is not available here (x)." in gpu_run.render_markdown(record)
    empty = gpu_run.render_markdown({"parts": [], "tests": {"absent": "pytest.xml was not written"}})
    assert "No test results: pytest.xml was not written." in empty and "No benchmark results" in empty


def test_a_run_on_a_machine_that_only_seems_to_have_a_gpu_records_every_part(tmp_path: Path) -> None:
    """The whole run, its GPU check answered yes: the parts run for real and fail or skip for want of CUDA."""
    out = tmp_path / "results"
    gpus = (["GPU 0: Stand-in (UUID: GPU-0)"], "")
    code = gpu_run.main(["--out", str(out), "--parts", "bench,tests", "--budget", "240"], probe=lambda: gpus)
    assert code == 1  # the benchmark needs CUDA
    assert sorted(p.name for p in out.iterdir()) == ["gpu-run.json", "gpu-run.log", "gpu-run.md", "pytest.xml"]
    record = json.loads((out / "gpu-run.json").read_text())
    parts = [(p["name"], p["status"], p["exit_code"]) for p in record["parts"]]
    assert parts == [("bench", "failed", 1), ("tests", "ok", 5)]  # pytest's 5: every file skipped, none failed
    assert record["wheels"]["installed"] == [] and "onnxslim" in record["wheels"]["already_there"]
    assert record["tests"]["failed"] == 0 and record["tests"]["skipped"] >= 4 and record["tests"]["passed"] == 0
    log = (out / "gpu-run.log").read_text()
    assert "bench_gpu: torch sees no CUDA device; nothing measured" in log and "== tests (at most" in log
    assert gpu_run.main(["--out", str(out), "--parts", "tests"], probe=lambda: gpus) == 2  # not into old results
