"""`--calib-method`: each INT8 pass calibrates with the method asked for (its activation scales change, its card
says which), the card's flags calibrate the same way again, and a method a pass lacks is refused before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from onnx import load, numpy_helper

from segexport.cli import main


def _activation_scales(path: Path) -> dict[str, float]:
    """The scale of every QuantizeLinear (what calibration sets: activations; weights are quantized without one)."""
    model = load(str(path))
    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node if n.op_type == "Constant"}
    values.update(consts)
    return {
        node.input[0]: float(np.asarray(values[node.input[1]]).ravel()[0])
        for node in model.graph.node
        if node.op_type == "QuantizeLinear" and node.input[1] in values
    }


def _calibration(path: Path) -> dict:
    return json.loads(Path(f"{path}.json").read_text())["checks"]["calibration"]


def _int8(exported, calib_dir: Path, out: Path, gate: float, target: str, *flags: str) -> Path:
    calib = ["--calib", str(calib_dir), "--calib-count", "4", "--min-agreement", f"{100 * gate:g}"]
    command = [str(exported("unet")), "--int8", "--int8-target", target, "--onnx-only", *calib, *flags]
    assert main([*command, "--out", str(out)]) == 0
    return out / ("model.int8-cpu.onnx" if target == "cpu" else "model.int8.onnx")


def test_cpu_int8_calibrated_by_percentile_records_it_and_its_flags_calibrate_the_same_way_again(
    exported, calib_dir: Path, unet_graphs: Path, random_unet_gate: float, tmp_path: Path
) -> None:
    minmax = unet_graphs / "model.int8-cpu.onnx"  # the default, on the same 4 images
    assert _calibration(minmax)["method"] == "minmax" and _calibration(minmax)["images"] == 4
    written = _int8(exported, calib_dir, tmp_path / "p", random_unet_gate, "cpu", "--calib-method", "percentile")
    record = _calibration(written)
    assert record["method"] == "percentile" and record["rebuild_flags"] == ["--calib-method", "percentile"]
    ours, default = _activation_scales(written), _activation_scales(minmax)
    assert ours.keys() == default.keys() and len(ours) > 3
    changed = [name for name in ours if abs(ours[name] - default[name]) > 0.01 * default[name]]
    # percentile (99.999 %) clips only the rarest values: on 4 images a quarter of the ranges move by over 1 %
    assert len(changed) >= 4, (ours, default)
    again = _int8(exported, calib_dir, tmp_path / "again", random_unet_gate, "cpu", *record["rebuild_flags"])
    assert _activation_scales(again) == ours


def test_tensorrt_int8_calibrated_by_minmax_records_it_and_differs_from_entropy(
    exported, calib_dir: Path, unet_graphs: Path, random_unet_gate: float, tmp_path: Path
) -> None:
    entropy = unet_graphs / "model.int8.onnx"
    assert _calibration(entropy)["method"] == "entropy" and "ModelOpt" in _calibration(entropy)["pass"]
    written = _int8(exported, calib_dir, tmp_path / "m", random_unet_gate, "tensorrt", "--calib-method", "minmax")
    assert _calibration(written)["method"] == "minmax"
    ours, default = _activation_scales(written), _activation_scales(entropy)
    assert ours.keys() == default.keys() and len(ours) > 3
    # symmetric MinMax covers the largest value seen; entropy may clip it: no range narrower, some wider
    assert all(ours[name] >= default[name] * 0.999 for name in ours)
    assert any(ours[name] > default[name] * 1.01 for name in ours)


BAD = [
    (["--int8", "--calib", "{calib}", "--calib-method", "kl"], "--calib-method kl: unknown; use one of minmax, "
     "entropy, percentile"),
    (["--fp16", "--calib-method", "entropy"], "--calib-method entropy sets how INT8 is calibrated: add --int8"),
    (["--calib-method", "minmax"], "--calib-method minmax sets how INT8 is calibrated: add --int8"),
    (["--int8", "--calib", "{calib}", "--calib-method", "percentile"], "--calib-method percentile: the int8 graph's "
     "pass (ModelOpt, for TensorRT) has entropy, minmax; use one of them, or --int8-target cpu for percentile"),
]  # fmt: skip


@pytest.mark.parametrize(("flags", "words"), BAD, ids=["unknown", "fp16 only", "no --int8", "percentile for TensorRT"])
def test_a_calib_method_that_does_not_apply_is_one_line_exit_2_nothing_written(
    flags: list[str], words: str, calib_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = ["unet", "--unet-base", "4", "--unet-depth", "2", "--input-size", "32x32", "--out", str(tmp_path / "o")]
    assert main([*small, *(flag.format(calib=calib_dir) for flag in flags)]) == 2
    err = capsys.readouterr().err
    assert words in " ".join(err.split()) and "Traceback" not in err and err.count("error:") == 1, err
    assert not (tmp_path / "o").exists()
