"""Real TensorRT engines (FP32, FP16, INT8) built by `segexport` and run by `segrt`, checked against ONNX Runtime.

Skipped without TensorRT, cuda-python or a usable CUDA GPU; runs on any machine with an NVIDIA GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorrt")

from gpu_here import usable_gpu  # tests/gpu/gpu_here.py (pytest puts this folder on the path)

import segrt
from segexport.cli import main
from segexport.parity import reference_outputs
from segrt.errors import SegError
from segrt.meta import file_sha256, read_card

GPU = usable_gpu()

pytestmark = pytest.mark.gpu
UNET = ["unet", "--unet-base", "8", "--unet-depth", "3", "--input-size", "64x64"]
SHAPES = ["--min-shape", "1x32x32", "--opt-shape", "2x480x640", "--max-shape", "4x720x720"]


def _agreement(engine_path, onnx_path, image) -> float:
    """Engine vs ONNX Runtime on its graph, with the reference segexport's gates use (node by node for Q/DQ)."""
    card = read_card(onnx_path)
    with segrt.load(engine_path) as seg:
        labels = seg(image)
    reference, _ = reference_outputs(onnx_path, image, card)
    return float((labels == reference).mean())


@pytest.fixture(scope="module")
def fp32_engine(exported, tmp_path_factory):
    out = tmp_path_factory.mktemp("fp32-engine")
    cache = out / "timing.cache"
    assert main([str(exported("unet")), "--engine", *SHAPES, "--timing-cache", str(cache), "--out", str(out)]) == 0
    return out / "model.engine"


def test_fp32_engine_card_names_this_gpu_tensorrt_and_profile(fp32_engine, exported):
    import tensorrt as trt

    card = read_card(fp32_engine)
    info = card.tensorrt
    assert (info["gpu"], info["compute_capability"], info["version"]) == (
        GPU.name,
        GPU.compute_capability,
        trt.__version__,
    )
    assert info["profile"]["min"] == [1, 32, 32, 3] and info["profile"]["max"] == [4, 720, 720, 3]
    assert card.precision == "fp32" and info["build_seconds"] > 0
    assert card.source_sha256 == file_sha256(exported("unet"))


def test_fp32_engine_agrees_with_onnx_runtime(fp32_engine, exported, photo):
    assert _agreement(fp32_engine, exported("unet"), photo) >= 0.999


def test_timing_cache_is_written_and_reused(fp32_engine, exported, tmp_path, monkeypatch, capsys):
    from segexport.engine import build as tb

    cache = fp32_engine.parent / "timing.cache"
    first = cache.read_bytes()
    assert first
    given: list[bytes] = []
    real = tb._load_timing_cache

    def recording(config, data, path, console):
        given.append(bytes(data))
        return real(config, data, path, console)

    monkeypatch.setattr(tb, "_load_timing_cache", recording)
    args = [str(exported("unet")), "--engine", *SHAPES, "--timing-cache", str(cache), "--out", str(tmp_path)]
    capsys.readouterr()
    assert main(args) == 0
    assert given == [first]  # the second build was handed the first build's cache ...
    assert "unreadable or from another GPU" not in capsys.readouterr().err  # ... and TensorRT took it
    assert cache.stat().st_size >= len(first)


def test_engine_whose_profile_starts_above_one_image_is_checked_on_a_batch(exported, tmp_path, photo):
    batch = ["--min-shape", "2x32x32", "--opt-shape", "2x240x320", "--max-shape", "3x480x640"]
    assert main([str(exported("unet")), "--engine", *batch, "--out", str(tmp_path)]) == 0
    card = read_card(tmp_path / "model.engine")
    assert card.tensorrt["profile"]["min"] == [2, 32, 32, 3] and card.checks["parity"]["label_agreement"] >= 0.999


def test_batches_timings_profile_limits_graph_and_close(fp32_engine, photo):
    crops = [np.ascontiguousarray(photo[i * 50 : i * 50 + 300, :400]) for i in range(6)]  # 6 > max N of 4
    with segrt.load(fp32_engine) as seg:
        singles = [seg(crop) for crop in crops]
        batched = seg(np.stack(crops))
        assert all((b == s).all() for b, s in zip(batched, singles, strict=True))
        assert {"h2d", "compute", "d2h", "infer"} <= set(seg.timings) and seg.timings["compute"] > 0
        with pytest.raises(SegError, match="profile"):
            seg(np.zeros((800, 800, 3), np.uint8))
        mixed = seg([photo, crops[0], photo[:100, :120]])
        assert [m.shape for m in mixed] == [photo.shape[:2], crops[0].shape[:2], (100, 120)]
    with segrt.load(fp32_engine, cuda_graph=True) as graphed:
        assert all((graphed(crop) == single).all() for crop, single in zip(crops, singles, strict=True))
        assert (graphed(crops[0]) == singles[0]).all()  # replayed graph, same shape
    graphed.backend.close()  # twice is fine
    with pytest.raises(SegError, match="closed"):
        graphed(crops[0])


def test_unfused_engine_agrees_with_onnx_runtime(exported, tmp_path, photo):
    assert main([str(exported("unet-unfused")), "--engine", "--out", str(tmp_path)]) == 0
    assert _agreement(tmp_path / "model.engine", exported("unet-unfused"), photo) >= 0.999


def test_fp16_engine_from_the_whole_path(tmp_path, photo):
    assert main([*UNET, "--fp16", "--out", str(tmp_path)]) == 0
    engine = tmp_path / "model.fp16.engine"
    assert read_card(engine).precision == "fp16"
    assert _agreement(engine, tmp_path / "model.fp16.onnx", photo) >= 0.995


def test_int8_engine_from_the_tensorrt_qdq_graph(tmp_path, photo):
    from PIL import Image

    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(8):
        Image.fromarray(photo[i * 20 : i * 20 + 400, i * 25 : i * 25 + 400]).save(calib / f"{i}.png")
    out = tmp_path / "out"
    assert main([*UNET, "--int8", "--calib", str(calib), "--out", str(out)]) == 0
    engine = out / "model.int8.engine"
    assert read_card(engine).precision == "int8" and read_card(engine).tensorrt["source"] == "model.int8.onnx"
    assert _agreement(engine, out / "model.int8.onnx", photo) >= 0.98
