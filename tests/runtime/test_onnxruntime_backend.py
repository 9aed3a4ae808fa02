"""The ONNX Runtime backend: which providers "ort" picks, the IO-binding path, and what load reads before a session."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

import segrt
from segrt.backends import onnxruntime as ort_backend
from segrt.backends.onnxruntime import OnnxRuntimeBackend, auto_backend
from segrt.errors import SegError
from segrt.meta import sidecar_path

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


@pytest.mark.parametrize(
    ("installed", "tensorrt_here", "expected"),
    [
        ([TRT, CUDA, CPU], True, "ort-trt"),
        ([TRT, CUDA, CPU], False, "ort-cuda"),  # onnxruntime-gpu lists the TensorRT EP without TensorRT
        ([CUDA, CPU], True, "ort-cuda"),
        ([CPU], True, "ort-cpu"),
        ([CPU], False, "ort-cpu"),
    ],
)
def test_ort_picks_tensorrt_then_cuda_then_cpu(installed, tensorrt_here, expected):
    asked = []

    def tensorrt_present() -> bool:
        asked.append(True)
        return tensorrt_here

    assert auto_backend(installed, tensorrt_present) == expected
    assert bool(asked) == (TRT in installed)  # TensorRT's library is looked for only when ORT could use it


@pytest.mark.filterwarnings("ignore:Specified provider:UserWarning")
@pytest.mark.parametrize(("tensorrt_here", "expected"), [(False, "ort-cuda"), (True, "ort-trt")])
def test_backend_ort_opens_the_provider_auto_backend_picks(exported, monkeypatch, tensorrt_here, expected):
    """On a pretend onnxruntime-gpu: this CPU build then warns about the GPU providers and runs on its CPU."""
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [TRT, CUDA, CPU])
    monkeypatch.setattr(ort_backend, "tensorrt_loadable", lambda: tensorrt_here)
    opened = OnnxRuntimeBackend(exported("unet"), backend="ort")
    assert opened.name == expected and opened.device == "cuda:0"
    assert opened.session.get_providers()[-1] == CPU


def test_tensorrt_library_probe_answers_without_raising():
    assert isinstance(ort_backend.tensorrt_loadable(), bool)


def test_this_cpu_onnxruntime_means_cpu_by_ort():
    import onnxruntime

    if CUDA in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    assert ort_backend.default_backend() == "ort-cpu"


# --- IO binding (the GPU providers' path), run here on the CPU provider --------------------------------


@pytest.fixture
def images(photo):
    return [np.ascontiguousarray(np.roll(photo, 50 * i, axis=0)[:200, :300]) for i in range(3)]


def test_bound_labels_match_a_plain_run_and_the_buffer_is_reused_per_shape(exported, images):
    plain = OnnxRuntimeBackend(exported("unet"), backend="ort-cpu")
    bound = OnnxRuntimeBackend(exported("unet"), backend="ort-cpu", io_binding=True)
    assert bound.fused and bound._binding is not None and plain._binding is None
    first = bound.run(images[0][None])
    buffer = bound._labels
    results = [first, *(bound.run(image[None]) for image in images[1:])]
    assert bound._labels is buffer  # same shape: the same bound buffer, no new output
    for image, labels in zip(images, results, strict=True):
        assert labels.dtype == np.uint8 and (labels == plain.run(image[None])).all()
    # each caller's labels are its own, not views of the buffer the next run overwrites
    assert not any(np.shares_memory(a, b) for a, b in itertools.combinations([*results, buffer], 2))
    small = bound.run(images[0][None, :64, :80])
    assert bound._labels is not buffer and bound._labels.shape == (1, 64, 80) and small.shape == (1, 64, 80)
    batch = np.stack(images)
    assert (bound.run(batch) == plain.run(batch)).all()
    bound.close()
    assert bound._labels is None and bound._binding is None


def test_bound_unfused_logits_come_back_whole(exported, photo):
    plain = OnnxRuntimeBackend(exported("unet-unfused"), backend="ort-cpu")
    bound = OnnxRuntimeBackend(exported("unet-unfused"), backend="ort-cpu", io_binding=True)
    tensor = np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32)
    assert not bound.fused
    np.testing.assert_allclose(bound.run(tensor), plain.run(tensor), atol=1e-5)


def test_the_cpu_provider_runs_without_io_binding_by_default(exported):
    assert OnnxRuntimeBackend(exported("unet"), backend="ort-cpu")._binding is None


# --- segrt.load: the sidecar card before the session ----------------------------------------------------


@pytest.fixture
def copied(exported, tmp_path):
    """A copy of the fused unet and its sidecar card in tmp_path."""
    target = tmp_path / "model.onnx"
    target.write_bytes(exported("unet").read_bytes())
    sidecar_path(target).write_text(sidecar_path(exported("unet")).read_text())
    return target


@pytest.fixture
def sessions(monkeypatch):
    """Count the ONNX Runtime sessions segrt builds."""
    built: list[object] = []
    real = ort_backend.OnnxRuntimeBackend.__init__

    def counting(self, *args, **kwargs):
        built.append(args)
        real(self, *args, **kwargs)

    monkeypatch.setattr(ort_backend.OnnxRuntimeBackend, "__init__", counting)
    return built


@pytest.mark.parametrize(
    ("spoil", "words"),
    [
        (lambda side: side.write_text(side.read_text().replace('"sha256": "', '"sha256": "0')), "does not match"),
        (lambda side: side.write_text("{"), "not valid JSON"),
        (lambda side: side.write_text(json.dumps({"sha256": "x"})), "does not match"),
    ],
    ids=["stale sha256", "malformed", "another file's"],
)
def test_a_bad_sidecar_is_refused_before_a_session_is_built(copied, sessions, spoil, words):
    spoil(sidecar_path(copied))
    with pytest.raises(SegError, match=words):
        segrt.load(copied)
    assert sessions == []


def test_a_good_sidecar_is_read_once_and_the_embedded_card_is_the_fallback(copied, sessions, monkeypatch):
    reads: list[object] = []
    real = segrt.read_sidecar
    monkeypatch.setattr(segrt, "read_sidecar", lambda path: reads.append(path) or real(path))
    from_sidecar = segrt.load(copied).card
    assert len(reads) == 1 and len(sessions) == 1
    sidecar_path(copied).unlink()
    from_metadata = segrt.load(copied).card  # embedded in the file, read through the session's metadata
    assert from_metadata == from_sidecar and len(sessions) == 2


@pytest.mark.parametrize(("auto", "expected"), [("ort-cpu", "model.int8-cpu.onnx"), ("ort-cuda", "model.int8.onnx")])
def test_int8_under_ort_follows_the_provider_ort_picks(tmp_path, monkeypatch, auto, expected):
    """The CPU-flavoured Q/DQ graph for ONNX Runtime's CPU provider, the TensorRT-flavoured one on a GPU provider."""
    for name in ("model.onnx", "model.int8.onnx", "model.int8-cpu.onnx"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setattr(ort_backend, "default_backend", lambda: auto)
    for backend in (None, "ort"):
        assert segrt.resolve_model_file(tmp_path, backend=backend, precision="int8").name == expected
    assert segrt.resolve_model_file(tmp_path, backend="ort-cpu", precision="int8").name == "model.int8-cpu.onnx"
    assert segrt.resolve_model_file(tmp_path, backend="ort-cuda", precision="int8").name == "model.int8.onnx"


def test_every_backend_keeps_one_life_cycle(exported, photo):
    """close() twice is fine, a run after close() is a SegError naming the file, and `with` closes."""
    from segrt.backends.onnxruntime import OnnxRuntimeBackend
    from segrt.backends.tensorrt import TensorRTBackend
    from segrt.errors import SegError

    path = exported("unet")
    with OnnxRuntimeBackend(path, backend="ort-cpu") as ort_backend:
        assert ort_backend.run(photo[None]).shape == (1, *photo.shape[:2])
    ort_backend.close()  # a second close
    with pytest.raises(SegError, match=r"model\.onnx: the ONNX Runtime backend was closed"):
        ort_backend.run(photo[None])

    engine = TensorRTBackend.__new__(TensorRTBackend)  # the state a closed engine runner is left in
    engine.path, engine._context, engine._stream, engine._runtime_cache = path.with_suffix(".engine"), None, None, None
    engine._events, engine._device_buffers, engine._host_buffers = [], [], []
    engine._graph = engine._graph_exec = None
    with engine:
        pass
    engine.close()
    with pytest.raises(SegError, match=r"model\.engine: the TensorRT backend was closed"):
        engine.run(photo[None])
