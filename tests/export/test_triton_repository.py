"""segexport --triton: the model repository's layout, its config.pbtxt read back through Triton's own
ModelConfig protobuf, the card that travels in it, and a write that fails leaving the repository as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from segexport.cli import main
from segexport.triton import repository as tr
from segrt.errors import SegError
from segrt.meta import file_sha256, read_card, read_sidecar, write_sidecar


def parsed_config(folder: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def fake_engine(tmp_path: Path, onnx: Path, max_shape: list[int], *, library: str | None = None) -> Path:
    """An engine file with a card recording its profile (the writer reads only the card); `library`
    "tensorrt-rtx" makes a TensorRT-RTX one, named as segexport --rtx names it."""
    engine = tmp_path / ("model.fp16.rtx.engine" if library == "tensorrt-rtx" else "model.fp16.engine")
    engine.write_bytes(b"serialized engine bytes")
    profile: dict = {"image_shapes": {"min": [1, 64, 64], "opt": max_shape, "max": max_shape}}
    if library is not None:
        profile["library"] = library
    write_sidecar(engine, read_card(onnx).replace(precision="fp16", tensorrt=profile))
    return engine


def test_onnx_repository_for_the_onnxruntime_backend(exported, tmp_path):
    from tritonclient.grpc import model_config_pb2 as pb

    onnx = exported("unet")
    folder = tr.write_repository(onnx, tmp_path / "repo")
    assert folder == tmp_path / "repo" / "unet"
    assert sorted(p.name for p in (folder / "1").iterdir()) == ["model.onnx", "model.onnx.json"]
    config = parsed_config(folder)
    assert config.backend == "onnxruntime" and config.max_batch_size == tr.DEFAULT_MAX_BATCH
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("image", pb.TYPE_UINT8, [-1, -1, 3])]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [("labels", pb.TYPE_UINT8, [-1, -1])]
    assert config.HasField("dynamic_batching")
    assert [(g.kind, g.count) for g in config.instance_group] == [(pb.ModelInstanceGroup.KIND_GPU, 1)]
    assert config.default_model_filename == "model.onnx"
    card = json.loads(config.parameters[tr.CARD_PARAMETER].string_value)
    assert card["sha256"] == file_sha256(onnx) == file_sha256(folder / "1" / "model.onnx")
    assert read_sidecar(folder / "1" / "model.onnx") == read_card(onnx)  # the card travels, sha256 checked


def test_python_backend_serves_any_artefact_through_segrt(exported, tmp_path):
    from tritonclient.grpc import model_config_pb2 as pb

    folder = tr.write_repository(exported("unet-unfused"), tmp_path / "repo", backend="python")
    assert folder.name == "unet_unfused"
    config = parsed_config(folder)
    assert config.backend == "python" and config.default_model_filename == "model.py"
    assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert config.parameters[tr.FILE_PARAMETER].string_value == "model.onnx"
    assert "class TritonPythonModel" in (folder / "1" / "model.py").read_text()


def test_engine_repository_takes_max_batch_from_the_profile(exported, tmp_path):
    from tritonclient.grpc import model_config_pb2 as pb

    engine = fake_engine(tmp_path, exported("unet"), [4, 1080, 1920])
    folder = tr.write_repository(engine, tmp_path / "repo")
    config = parsed_config(folder)
    assert folder.name == "unet_fp16" and config.backend == "tensorrt" and config.max_batch_size == 4
    assert config.default_model_filename == "model.plan" and (folder / "1" / "model.plan.json").is_file()
    assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU


@pytest.mark.parametrize(
    ("name", "backend", "words"),
    [
        ("unet-unfused", "onnxruntime", "unfused"),
        ("unet", "tensorrt", "serves engines"),
        ("unet", "triton", "use one of onnxruntime, tensorrt, python"),
    ],
)
def test_backend_that_cannot_serve_the_file_is_refused_and_nothing_written(exported, tmp_path, name, backend, words):
    with pytest.raises(SegError, match=words):
        tr.write_repository(exported(name), tmp_path / "repo", backend=backend)
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_config_outside_the_schema_is_refused():
    with pytest.raises(SegError, match="does not fit Triton's model-config schema"):
        tr.config_text({"backend": "python", "max_batch": 8})
    with pytest.raises(SegError, match="does not fit"):
        tr.config_text({"backend": "python", "instance_group": [{"kind": "KIND_TPU"}]})


def test_a_stale_card_is_refused(exported, tmp_path):
    copy = tmp_path / "model.onnx"
    shutil.copy(exported("unet"), copy)
    shutil.copy(exported("fcn50").with_name("model.onnx.json"), tmp_path / "model.onnx.json")
    with pytest.raises(SegError, match="does not match"):
        tr.write_repository(copy, tmp_path / "repo")


def test_failed_write_leaves_the_old_model_whole_and_no_scratch(exported, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    tr.write_repository(exported("unet"), repo)
    before = (repo / "unet" / "config.pbtxt").read_text()

    def broken_copy(source, target):
        Path(target).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tr.shutil, "copyfile", broken_copy)
    with pytest.raises(SegError, match="No space left on device"):
        tr.write_repository(exported("unet"), repo, backend="python")
    assert (repo / "unet" / "config.pbtxt").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # the scratch folder beside it is gone


def test_a_folder_that_is_not_a_model_is_not_replaced(exported, tmp_path):
    (tmp_path / "repo" / "unet").mkdir(parents=True)
    (tmp_path / "repo" / "unet" / "notes.txt").write_text("mine")
    with pytest.raises(SegError, match="not a Triton model folder"):
        tr.write_repository(exported("unet"), tmp_path / "repo")
    assert (tmp_path / "repo" / "unet" / "notes.txt").read_text() == "mine"


def test_segexport_triton_from_an_onnx_and_from_an_engine(exported, tmp_path):
    onnx = tmp_path / "in" / "model.onnx"
    onnx.parent.mkdir()
    shutil.copy(exported("unet"), onnx)
    shutil.copy(exported("unet").with_name("model.onnx.json"), onnx.with_name("model.onnx.json"))
    assert main([str(onnx), "--triton", str(tmp_path / "repo"), "--triton-backend", "python"]) == 0
    assert parsed_config(tmp_path / "repo" / "unet").backend == "python"
    engine = fake_engine(tmp_path, onnx, [2, 720, 1280])
    assert main([str(engine), "--triton", str(tmp_path / "repo")]) == 0
    assert parsed_config(tmp_path / "repo" / "unet_fp16").max_batch_size == 2


def test_triton_backend_without_triton_is_refused(exported, capsys):
    assert main([str(exported("unet")), "--triton-backend", "python"]) == 2
    assert "--triton-backend python only applies with --triton REPO" in capsys.readouterr().err


def test_a_tensorrt_rtx_engine_is_served_by_the_python_backend(exported, tmp_path):
    from tritonclient.grpc import model_config_pb2 as pb

    engine = fake_engine(tmp_path, exported("unet"), [4, 720, 1280], library="tensorrt-rtx")
    folder = tr.write_repository(engine, tmp_path / "repo")
    config = parsed_config(folder)
    assert config.backend == "python" and config.default_model_filename == "model.py"
    assert config.max_batch_size == 4 and config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert config.parameters[tr.FILE_PARAMETER].string_value == "model.plan"
    assert read_sidecar(folder / "1" / "model.plan").tensorrt["library"] == "tensorrt-rtx"
    (tmp_path / "full").mkdir()
    full = fake_engine(tmp_path / "full", exported("unet"), [4, 720, 1280], library="tensorrt")
    assert parsed_config(tr.write_repository(full, tmp_path / "repo2")).backend == "tensorrt"


def test_segexport_reports_the_backend_it_chose_for_a_tensorrt_rtx_engine(exported, tmp_path, capsys):
    engine = fake_engine(tmp_path, exported("unet"), [4, 720, 1280], library="tensorrt-rtx")
    assert main([str(engine), "--triton", str(tmp_path / "repo")]) == 0
    assert parsed_config(tmp_path / "repo" / "unet_fp16").backend == "python"
    assert "(python backend, max batch 4)" in "".join(capsys.readouterr())


def test_the_tensorrt_backend_is_refused_for_a_tensorrt_rtx_engine(exported, tmp_path, capsys):
    engine = fake_engine(tmp_path, exported("unet"), [2, 720, 1280], library="tensorrt-rtx")
    with pytest.raises(SegError, match=r"a TensorRT-RTX engine, which .*cannot load; use --triton-backend python"):
        tr.write_repository(engine, tmp_path / "repo", backend="tensorrt")
    assert main([str(engine), "--triton", str(tmp_path / "repo"), "--triton-backend", "tensorrt"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--triton-backend python" in error
    assert not any((tmp_path / "repo").iterdir())


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        ([], "--triton-backend tensorrt serves engines and this run builds none: add --engine"),
        (["--fp16", "--onnx-only"], "this run builds none"),
        (["--rtx"], "cannot load TensorRT-RTX (--rtx) engines: use --triton-backend python"),
    ],
)
def test_tensorrt_backend_without_engines_to_serve_is_refused_before_any_work(
    exported, tmp_path, monkeypatch, capsys, flags, words
):
    from segexport import pipeline

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the flags were checked")

    monkeypatch.setattr(pipeline, "write_fp32_graph", no_work)
    monkeypatch.setattr(pipeline, "write_precision_graphs", no_work)
    monkeypatch.chdir(tmp_path)
    for model in ("unet", str(exported("unet"))):  # a PyTorch model and an ONNX file
        argv = [model, *flags, "--out", str(tmp_path / "out"), "--triton", str(tmp_path / "repo")]
        assert main([*argv, "--triton-backend", "tensorrt"]) == 2
        error = capsys.readouterr().err.strip()
        assert words in error and len(error.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output folder, no repository
