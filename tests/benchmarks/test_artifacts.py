"""The export cache: a folder per model, graph kind, exporter and INT8 calibration: stale exports are never reused."""

import io
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segbench.cases import artifacts
from segbench.cases.artifacts import ExportCache, check_calibration, exporter_fingerprint
from segbench.cases.suite import ModelSpec
from segexport.request import ModelOptions
from segrt.errors import SegError


@pytest.fixture(autouse=True)
def fresh_fingerprint():
    exporter_fingerprint.cache_clear()
    yield
    exporter_fingerprint.cache_clear()


def test_folder_depends_on_model_args_graph_kind_and_exporter(tmp_path: Path, monkeypatch) -> None:
    cache = ExportCache(tmp_path)
    unet = ModelSpec(ModelOptions("unet", weights="none"))
    first = cache.folder(unet, fused=True)
    assert first == cache.folder(ModelSpec(ModelOptions("unet", weights="none")), fused=True)
    assert first.parent == tmp_path and first.name.startswith("unet-")
    assert cache.folder(unet, fused=False).name == first.name + "-unfused"
    assert cache.folder(ModelSpec(ModelOptions("unet", weights="none", unet_base=16)), fused=True) != first

    monkeypatch.setattr(artifacts, "exporter_fingerprint", lambda: "another exporter")
    assert cache.folder(unet, fused=True) != first


def test_fingerprint_follows_tool_versions(monkeypatch) -> None:
    before = exporter_fingerprint()
    assert before == exporter_fingerprint() and len(before) == 64
    exporter_fingerprint.cache_clear()
    real_version = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "99.0" if name == "onnxslim" else real_version(name))
    assert exporter_fingerprint() != before


def write_images(folder: Path, seeds: list[int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        pixels = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"frame_{seed:03d}.png")
    return folder


class FakeSegexport:
    """Stands in for segexport.export: records each request and writes the file it would write."""

    def __init__(self) -> None:
        self.requests: list = []

    def __call__(self, request, log: object = None) -> None:
        self.requests.append(request)
        out = request.onnx.out
        out.mkdir(parents=True, exist_ok=True)
        graphs = request.precision.graphs
        name = f"model.{graphs[0]}.onnx" if graphs else "model.onnx"
        (out / name).write_bytes(b"graph")


def int8_file(cache: ExportCache, model: ModelSpec) -> Path:
    return cache.model_file(model, backend="ort-cpu", precision="int8", fused=True, shape=(1, 24, 32))


def test_int8_files_are_keyed_by_their_calibration_images_and_count(tmp_path: Path, monkeypatch) -> None:
    fake = FakeSegexport()
    monkeypatch.setattr(artifacts, "run_export", fake)
    cache = ExportCache(tmp_path / "cache")
    first = ModelSpec(ModelOptions("unet", weights="none"), calib=write_images(tmp_path / "a", [1, 2, 3]))
    path = int8_file(cache, first)
    assert path.name == "model.int8-cpu.onnx" and path.parent.name.startswith("calib-")
    assert path.parent.parent == cache.folder(first, fused=True)
    assert int8_file(cache, first) == path and len(fake.requests) == 2  # model.onnx, then the INT8 graph: reused

    same_images = ModelSpec(ModelOptions("unet", weights="none"), calib=write_images(tmp_path / "copy", [1, 2, 3]))
    assert int8_file(ExportCache(tmp_path / "cache"), same_images) == path  # the same bytes: the same graph
    other_images = ModelSpec(ModelOptions("unet", weights="none"), calib=write_images(tmp_path / "b", [1, 2, 4]))
    fewer = ModelSpec(ModelOptions("unet", weights="none"), calib=first.calib, calib_count=2)
    for other in (other_images, fewer):
        exports = len(fake.requests)
        other_path = int8_file(ExportCache(tmp_path / "cache"), other)
        assert other_path.parent != path.parent and other_path.parent.parent == path.parent.parent
        assert len(fake.requests) == exports + 1  # exported afresh, from the cached model.onnx
        assert fake.requests[-1].precision.calib == other.calib


def test_calibration_that_reads_an_image_the_run_scores_is_refused(tmp_path: Path) -> None:
    photo = write_images(tmp_path / "photo", [7]) / "frame_007.png"
    calib = write_images(tmp_path / "calib", [1, 2])
    check_calibration(
        ModelSpec(ModelOptions("unet"), calib=calib, label="unet"), [photo], "suite.toml"
    )  # no overlap: accepted
    shutil.copy(photo, calib / "renamed.png")
    with pytest.raises(SegError) as caught:
        check_calibration(ModelSpec(ModelOptions("unet"), calib=calib, label="unet"), [photo], "suite.toml")
    message = str(caught.value)
    assert message.startswith("suite.toml: unet: INT8 calibration") and "renamed.png" in message
    assert str(photo) in message and "python -m segbench.data.shapes" in message
    with pytest.raises(SegError, match=r"suite.toml: unet: INT8 calibration: --calib .*nowhere: no such folder"):
        check_calibration(
            ModelSpec(ModelOptions("unet"), calib=tmp_path / "nowhere", label="unet"), [photo], "suite.toml"
        )


def test_without_calib_the_fcn_default_would_calibrate_on_the_bundled_photo_and_is_refused() -> None:
    from segexport.defaults import ASSETS

    with pytest.raises(SegError, match=r"astronaut\.jpg"):
        check_calibration(
            ModelSpec(ModelOptions("fcn_resnet50"), label="fcn"), [ASSETS / "astronaut.jpg"], "command line"
        )


def test_fp16_uses_the_models_calibration_images_when_it_names_them(tmp_path: Path, monkeypatch) -> None:
    fake = FakeSegexport()
    monkeypatch.setattr(artifacts, "run_export", fake)
    cache = ExportCache(tmp_path / "cache")
    calibrated = ModelSpec(ModelOptions("unet", weights="none"), calib=write_images(tmp_path / "a", [1, 2, 3]))
    path = cache.model_file(calibrated, backend="ort-cpu", precision="fp16", fused=True, shape=(1, 24, 32))
    assert path.parent.name.startswith("calib-")
    assert fake.requests[-1].precision.calib == calibrated.calib

    plain = ModelSpec(ModelOptions("unet", weights="none"))
    path = cache.model_file(plain, backend="ort-cpu", precision="fp16", fused=True, shape=(1, 24, 32))
    assert path.parent == cache.folder(plain, fused=True) and fake.requests[-1].precision.calib is None


def test_the_export_log_names_each_cached_file_reused_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(artifacts, "run_export", FakeSegexport())
    model = ModelSpec(ModelOptions("unet", weights="none"), calib=write_images(tmp_path / "a", [1, 2]))
    path = int8_file(ExportCache(tmp_path / "cache"), model)  # made: the fake export writes no log lines
    log = io.StringIO()
    rerun = ExportCache(tmp_path / "cache", log=log)
    assert int8_file(rerun, model) == int8_file(rerun, model) == path
    lines = log.getvalue().splitlines()
    assert lines == [
        f"reused {path.parent.parent / 'model.onnx'} (made by an earlier run into this cache)",
        f"reused {path} (made by an earlier run into this cache)",
    ]
