"""A segbench run that would measure nothing says why and exits non-zero; a served target that is not there is
named as such."""

from __future__ import annotations

from pathlib import Path

import pytest

from segbench.cases import artifacts, runner
from segbench.cli import main

NO_TENSORRT = "TensorRT is not installed; install it with pip install 'segexport[tensorrt]' (JetPack ships it)"
SMALL = ["--model", "unet", "--export-arg=--unet-base", "--export-arg=4", "--export-arg=--unet-depth",
         "--export-arg=2", "--input-size", "32x32", "--shape", "1x48x64", "--iterations", "2"]  # fmt: skip


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("segbench: error:") == 1, err
    return " ".join(err.split())


def test_a_run_this_machine_can_measure_none_of_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`segbench --backend tensorrt` on a CPU machine: the PyTorch baseline alone is not what was asked."""
    monkeypatch.setattr(artifacts, "_tensorrt_reason", lambda: NO_TENSORRT)
    assert main([*SMALL, "--backend", "tensorrt", "--out", str(tmp_path / "run")]) == 3
    err = one_line(capsys)
    assert "nothing to measure: this machine cannot run the case asked (unet@32x32 | tensorrt fp32" in err, err
    assert NO_TENSORRT in err and not (tmp_path / "run").exists()


def test_a_run_whose_every_case_was_skipped_exits_3_after_its_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Skips found only while running (an export that needs a missing library): the report says what was skipped,
    the exit code says nothing was measured."""

    def skipped(self: runner.Runner, case: object) -> dict:
        return {**runner.describe(case), "status": "skipped", "reason": "the export needs a library this lacks"}

    monkeypatch.setattr(runner.Runner, "run_case", skipped)
    assert main([*SMALL, "--backend", "ort-cpu", "--no-baseline", "--out", str(tmp_path / "run")]) == 3
    err = one_line(capsys)
    assert "nothing was measured: every case asked was skipped (the export needs a library this lacks)" in err, err
    assert (tmp_path / "run" / "report.md").is_file() and (tmp_path / "run" / "results.json").is_file()


def test_served_names_a_target_that_is_not_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["served", str(tmp_path / "nonexistent")]) == 2
    err = one_line(capsys)
    assert f"{tmp_path / 'nonexistent'}: no such model folder" in err and "give --file" not in err, err
    assert "segexport --triton" in err and "http://HOST:8000/MODEL" in err
    (tmp_path / "model.onnx").write_bytes(b"")
    assert main(["served", str(tmp_path / "model.onnx")]) == 2
    assert f"{tmp_path / 'model.onnx'}: a file, not a model folder" in one_line(capsys)
