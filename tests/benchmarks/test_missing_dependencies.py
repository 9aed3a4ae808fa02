"""segbench on an install without the bench or export extras: one sentence saying what to install, exit 3."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from segbench.cases import runner
from segbench.cases.artifacts import ExportCache
from segbench.cases.suite import load_suite
from segbench.cli import main
from segrt.errors import MissingDependency

SUITE = """
name = "t"
shapes = ["1x48x64"]
[[model]]
name = "unet"
runs = [{ backend = "ort-cpu" }]
"""
INSTALL = "pip install 'segexport[bench]'"


def hide(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """Make `package` and its submodules unimportable, as on an install without it."""
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")] + [package]:
        monkeypatch.setitem(sys.modules, name, None)


def one_sentence(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return " ".join(err.split())


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(SUITE)
    return path


@pytest.mark.parametrize("package", ["psutil", "torch", "matplotlib"])
def test_a_run_without_a_bench_package_names_it_and_exits_3(
    package: str, suite_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hide(monkeypatch, package)
    assert main([str(suite_file), "--out", str(tmp_path / "run")]) == 3
    err = one_sentence(capsys)
    assert f"needs {package}, which is not installed" in err and INSTALL in err
    assert not (tmp_path / "run").exists()  # refused before any work


def test_without_rich_segbench_still_says_what_to_install(
    suite_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hide(monkeypatch, "rich")
    assert main([str(suite_file)]) == 3
    assert main(["compare", "a", "b"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"segbench: error: rich is not installed; install the benchmark extra: {INSTALL}"] * 2


def test_the_model_name_check_without_the_zoo_is_a_missing_dependency(
    suite_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide(monkeypatch, "segexport.models")  # what importing it does without torch
    with pytest.raises(MissingDependency, match=r"model\[0\]: checking the model name 'unet' needs .* torch"):
        load_suite(suite_file)


def test_a_case_whose_reference_needs_a_missing_package_is_skipped_and_a_broken_module_of_ours_fails(
    suite_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = load_suite(suite_file)
    run = runner.Runner(suite, np.zeros((48, 64, 3), np.uint8), ExportCache(tmp_path / "cache"))
    fused = "segexport.onnx.fused"
    errors = iter([ModuleNotFoundError("No module named 'torch'", name="torch"),
                   ModuleNotFoundError(f"No module named '{fused}'", name=fused)])  # fmt: skip

    def reference(spec: object) -> None:
        raise next(errors)

    monkeypatch.setattr(run, "reference", reference)
    missing = run.run_case(suite.cases[1])
    assert (
        missing["status"] == "skipped"
        and missing["reason"] == f"torch is not installed; install the benchmark extra: {INSTALL}"
    )
    broken = run.run_case(suite.cases[1])
    assert broken["status"] == "failed" and broken["reason"].startswith("model: ModuleNotFoundError")
