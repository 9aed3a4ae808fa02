"""An engine later: `segexport ENGINE --check` on the GPU it runs on, `segexport ENGINE --rebuild` for this
machine from the ONNX its card names, and `segexport doctor`. TensorRT-RTX builds for real; the check needs a
GPU with an RTX target, which no test machine here has, so it is run on a stand-in engine runner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from segexport import parity
from segexport.cli import main
from segexport.doctor import findings
from segexport.engine import step as engines
from segrt.backends import tensorrt as backend
from segrt.meta import file_sha256, read_card, sidecar_path

tensorrt_rtx = pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX builds the engines here: segexport[rtx]")

SMALL = ["--min-shape", "1x32x32", "--opt-shape", "1x64x64", "--max-shape", "1x480x640"]


@pytest.fixture
def rtx_engine(exported, tmp_path) -> Path:
    """A real TensorRT-RTX engine of the small U-Net for SM86, built ahead of time here (unchecked)."""
    out = tmp_path / "m"
    out.mkdir()
    shutil.copy(exported("unet"), out / "model.onnx")
    shutil.copy(sidecar_path(exported("unet")), sidecar_path(out / "model.onnx"))
    assert main([str(out / "model.onnx"), "--rtx", "--gpu-arch", "sm86", *SMALL, "--workspace", "256"]) == 0
    return out / "model.rtx.engine"


def test_rebuild_builds_again_from_the_onnx_with_the_options_it_was_built_with(rtx_engine, capsys):
    before = read_card(rtx_engine)
    assert main([str(rtx_engine), "--rebuild"]) == 0
    after = read_card(rtx_engine)
    for key in ("library", "targets", "image_shapes", "workspace_mib", "source", "gpu_arch"):
        assert after.tensorrt[key] == before.tensorrt[key], key
    assert after.source_sha256 == before.source_sha256 == file_sha256(rtx_engine.with_name("model.onnx"))
    assert after.checks["parity"] is None and "no GPU here runs it" in after.checks["unchecked"]


def test_rebuild_retargets_an_rtx_engine_and_works_from_its_card_alone(rtx_engine):
    rtx_engine.unlink()  # the engine lost, its card kept: enough to rebuild
    assert main([str(sidecar_path(rtx_engine)), "--rebuild", "--gpu-arch", "sm89,sm120"]) == 0
    card = read_card(rtx_engine)
    assert card.tensorrt["targets"] == ["8.9", "12.0"] and card.tensorrt["gpu_arch"] == ["8.9", "12.0"]


def test_rebuild_refuses_an_onnx_that_is_not_the_one_the_engine_came_from(rtx_engine, exported, capsys):
    other = rtx_engine.with_name("model.onnx")
    shutil.copy(exported("unet-unfused"), other)
    assert main([str(rtx_engine), "--rebuild"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "is not the graph model.rtx.engine was built from" in err and "Traceback" not in err
    other.unlink()
    assert main([str(rtx_engine), "--rebuild"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "its ONNX graph model.onnx is not beside it" in err and read_card(rtx_engine).source_sha256[:12] in err


def test_check_without_a_gpu_that_runs_it_says_where_to_run_it(rtx_engine, capsys):
    card_before = sidecar_path(rtx_engine).read_text()
    assert main([str(rtx_engine), "--check"]) == 3
    err = " ".join(capsys.readouterr().err.split())
    assert "cannot check it here: no GPU here runs it" in err and f"`segexport {rtx_engine} --check` there" in err
    assert sidecar_path(rtx_engine).read_text() == card_before  # nothing written


def test_check_on_a_target_gpu_records_the_agreement_in_the_card(rtx_engine, monkeypatch, photo, capsys):
    """The check's own steps on a stand-in runner where the real one needs an RTX GPU: the engine is run through
    segrt.load on the parity batch and compared with its ONNX graph; the card (not the engine) is rewritten."""
    engine_bytes = rtx_engine.read_bytes()
    monkeypatch.setattr(backend, "gpu_info", lambda device=0: backend.GpuInfo("NVIDIA RTX A6000", "8.6"))
    monkeypatch.setattr("segexport.engine.prerequisites.gpu_problem_here", lambda device=0: (False, None))
    reference = parity.reference_outputs
    seen = []

    def engine_labels(engine, source, card, image, shapes):
        seen.append(engine)
        batch = parity.parity_batch(image, card, shapes)
        expected = np.stack([reference(source, one, card)[0] for one in batch])
        labels = expected.copy()
        labels[0, 0, :10] += 1  # ten pixels differ, as a real engine's might
        return float(np.mean(labels == expected))

    monkeypatch.setattr(parity, "engine_agreement", engine_labels)
    assert main([str(rtx_engine), "--check"]) == 0
    card = read_card(rtx_engine)  # still the engine's card: its sha256 matches the untouched engine
    assert rtx_engine.read_bytes() == engine_bytes and seen == [rtx_engine]
    assert 0.999 < card.checks["parity"]["label_agreement"] < 1.0 and "unchecked" not in card.checks
    assert json.loads(sidecar_path(rtx_engine).read_text())["sha256"] == file_sha256(rtx_engine)
    assert main([str(rtx_engine), "--check", "--min-agreement", "99.99999"]) == 2  # below the gate: refused
    assert read_card(rtx_engine).checks == card.checks


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["{engine}", "--check", "--rebuild"], "give one"),
        (["{engine}"], "an engine is checked on its GPU with --check, built again with --rebuild"),
        (["{tmp}/nothing.engine", "--rebuild"], "no such engine, and no card"),
        (["{tmp}/model.onnx.json", "--check"], "not an engine or an engine's card"),
    ],
)
def test_bad_engine_modes_are_one_line(rtx_engine, tmp_path, capsys, args, words):
    argv = [a.format(engine=rtx_engine, tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert words in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["{engine}", "--rebuild", "--max-shape", "2x720x1280"],
            "--max-shape does not apply with --rebuild, which builds with the options in model.rtx.engine's card; to "
            "build it with other ones, build it from its ONNX graph: `segexport {onnx} --engine --rtx --max-shape "
            "2x720x1280`",
        ),
        (["{engine}", "--rebuild", "--workspace", "64"], "--workspace does not apply with --rebuild"),
        (["{engine}", "--rebuild", "--fp16"], "--fp16 does not apply to an engine with --rebuild"),
        (["{engine}", "--check", "--gpu-arch", "sm89"], "--gpu-arch does not apply to an engine with --check"),
        (["{engine}", "--check", "--out", "{tmp}/o"], "--out does not apply to an engine with --check"),
        (["{engine}", "--triton", "{tmp}/repo", "--fp16"], "--fp16 does not apply to an engine with --triton"),
    ],
)
def test_a_flag_an_engine_mode_would_ignore_is_refused(rtx_engine, tmp_path, capsys, args, words):
    engine_bytes, card = rtx_engine.read_bytes(), sidecar_path(rtx_engine).read_text()
    argv = [a.format(engine=rtx_engine, tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert words.format(onnx=rtx_engine.with_name("model.onnx")) in err and "Traceback" not in err, err
    assert rtx_engine.read_bytes() == engine_bytes and sidecar_path(rtx_engine).read_text() == card
    assert not (tmp_path / "repo").exists() and not (tmp_path / "o").exists()


def test_tensorrt_log_lines_are_printed_as_text_not_markup(exported, tmp_path, capfd):
    """-vvv shows TensorRT's verbose log, whose lines hold '[/Cast_output_0 ...]': printed as they are."""
    shutil.copy(exported("unet"), tmp_path / "model.onnx")
    shutil.copy(sidecar_path(exported("unet")), sidecar_path(tmp_path / "model.onnx"))
    assert main([str(tmp_path / "model.onnx"), "--rtx", "-vvv", *SMALL]) == 0
    err = capfd.readouterr().err
    assert "showing TensorRT's progress or log failed" not in err
    assert "TensorRT VERBOSE:" in err and "[/Cast_output_0" in err


def test_doctor_says_what_builds_and_runs_here_and_exits_0(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().err
    assert "TensorRT-RTX" in out and "cuda-python" in out and "ONNX Runtime" in out and "DLA" in out
    assert "builds here: ONNX graphs" in out and "TensorRT-RTX engines (--rtx)" in out
    rows = {row.piece: row for row in findings()}
    assert rows["TensorRT-RTX"].ok and rows["TensorRT-RTX"].detail.startswith(tensorrt_rtx.__version__)
    if not rows["TensorRT"].ok:  # absent here: the row names the install that fixes it
        assert "segexport[tensorrt]" in rows["TensorRT"].fix


def test_engines_image_shapes_come_from_the_card(rtx_engine):
    shapes = engines.image_shapes(read_card(rtx_engine))
    assert (shapes.min, shapes.opt, shapes.max) == ((1, 32, 32), (1, 64, 64), (1, 480, 640))
