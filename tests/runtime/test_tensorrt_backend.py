"""The TensorRT backend up to the first TensorRT call: what it refuses, and in which words, before an engine's
bytes reach TensorRT. Runs without TensorRT, without a GPU, and without torch; real engines are in tests/gpu."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import pytest

import segrt
from segrt.backends import tensorrt as backend
from segrt.errors import MissingDependency, SegError
from segrt.files import write_bytes_atomic
from segrt.meta import read_card, write_sidecar

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
BUILT_WITH = {"version": "10.3.0.30", "gpu": "NVIDIA Jetson AGX Orin", "compute_capability": "8.7"}


@pytest.fixture
def engine(exported, tmp_path) -> Path:
    """A file with an engine's name and a valid engine card (built with TensorRT 10.3 on an Orin) beside it."""
    card = read_card(exported("unet")).replace(precision="fp16", tensorrt={**BUILT_WITH, "source": "model.fp16.onnx"})
    path = write_bytes_atomic(tmp_path / "model.fp16.engine", b"serialized engine bytes stand-in")
    write_sidecar(path, card)
    return path


@pytest.fixture
def fake_tensorrt(monkeypatch):
    """Install a stand-in `tensorrt` module whose Runtime records being constructed (it must not be)."""

    def install(version: str) -> list[object]:
        calls: list[object] = []
        module = types.ModuleType("tensorrt")
        module.__version__ = version
        module.Runtime = lambda *args: calls.append(args)
        monkeypatch.setitem(__import__("sys").modules, "tensorrt", module)
        return calls

    return install


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_engine_without_tensorrt_says_how_to_install_it(engine):
    with pytest.raises(MissingDependency) as info:
        segrt.load(engine)
    message = str(info.value)
    assert str(engine) in message and "TensorRT is not installed" in message
    assert "pip install segexport[tensorrt]" in message and "JetPack" in message
    assert info.value.exit_code == 3


def test_engine_from_another_tensorrt_is_refused_before_deserializing(engine, fake_tensorrt):
    runtime_calls = fake_tensorrt("10.13.0.35")
    with pytest.raises(SegError) as info:
        segrt.load(engine)
    message = str(info.value)
    assert "TensorRT 10.3.0.30" in message and "TensorRT 10.13.0.35" in message
    assert f"`segexport {engine} --rebuild`" in message
    assert runtime_calls == [] and not isinstance(info.value, MissingDependency)


def test_engine_for_another_gpu_is_refused_before_deserializing(engine, fake_tensorrt, monkeypatch):
    runtime_calls = fake_tensorrt(BUILT_WITH["version"])
    monkeypatch.setattr(backend, "gpu_info", lambda device: backend.GpuInfo("NVIDIA H100 80GB HBM3", "9.0"))
    with pytest.raises(SegError) as info:
        segrt.load(engine)
    message = str(info.value)
    assert "NVIDIA Jetson AGX Orin (compute capability 8.7)" in message
    assert "NVIDIA H100 80GB HBM3 (compute capability 9.0)" in message and "rebuild" in message
    assert runtime_calls == []


def test_same_gpu_name_with_another_compute_capability_is_refused(engine):
    card = read_card(engine)
    assert backend.gpu_problem(card, backend.GpuInfo(BUILT_WITH["gpu"], BUILT_WITH["compute_capability"])) is None
    assert "compute capability 8.6" in backend.gpu_problem(card, backend.GpuInfo(BUILT_WITH["gpu"], "8.6"))


def test_card_without_a_tensorrt_record_is_refused(engine, fake_tensorrt):
    write_sidecar(engine, read_card(engine).replace(tensorrt={}))
    fake_tensorrt(BUILT_WITH["version"])
    with pytest.raises(SegError, match="no TensorRT build record"):
        segrt.load(engine)


def test_matching_card_goes_on_to_the_gpu_and_stops_there_without_one(engine, fake_tensorrt):
    """With the right TensorRT version, the next question is the GPU: this machine has none (or not an Orin)."""
    runtime_calls = fake_tensorrt(BUILT_WITH["version"])
    with pytest.raises(SegError) as info:
        segrt.load(engine)
    assert runtime_calls == []
    if backend.cudart is None:
        assert "cuda-python is not installed" in str(info.value)
    elif not _gpu_present():
        assert isinstance(info.value, backend.NoUsableGpu) and "no usable NVIDIA GPU" in str(info.value)


def test_changed_engine_bytes_are_refused_by_the_card_sha(engine):
    engine.write_bytes(engine.read_bytes() + b"\0")
    with pytest.raises(SegError, match="does not match"):
        segrt.load(engine)


def test_engine_without_its_card_is_refused(engine):
    engine.with_name(engine.name + ".json").unlink()
    with pytest.raises(SegError, match=r"model card .* is missing"):
        segrt.load(engine)


# --- CUDA errors in words ---------------------------------------------------------------------------


def test_no_driver_and_no_device_errors_are_a_missing_dependency_sentence():
    for code, name in ((35, "cudaErrorInsufficientDriver"), (100, "cudaErrorNoDevice")):
        error = backend.cuda_error(code, name, "some words from CUDA", "CUDA device 0")
        assert isinstance(error, backend.NoUsableGpu) and error.exit_code == 3
        assert str(error).startswith("CUDA device 0: no usable NVIDIA GPU (some words from CUDA; ")
        assert f"{name} = {code}" in str(error) and "driver" in str(error) and "cuda-python 12" in str(error)
        assert error.reason == f"some words from CUDA; {name} = {code}"


def test_other_cuda_errors_are_bad_input_not_a_missing_dependency():
    error = backend.cuda_error(2, "cudaErrorMemoryAllocation", "out of memory", "allocating 8 bytes on cuda:0")
    assert type(error) is SegError and error.exit_code == 2
    assert str(error) == "allocating 8 bytes on cuda:0 failed (out of memory; cudaErrorMemoryAllocation = 2)"


def _gpu_present() -> bool:
    err, _ = backend.cudart.cudaGetDeviceCount()
    return err == backend.cudart.cudaError_t.cudaSuccess


def test_cuda_python_runtime_module_is_found_in_its_current_layout():
    pytest.importorskip("cuda.bindings.runtime")
    from cuda.bindings import runtime

    assert backend.cudart is runtime


def test_real_cuda_error_codes_are_read_in_cuda_words():
    """cuda-python returns error codes instead of raising; _check turns them into one sentence."""
    cudart = pytest.importorskip("cuda.bindings.runtime")
    backend._check(cudart.cudaError_t.cudaSuccess, "nothing")
    with pytest.raises(backend.NoUsableGpu) as info:
        backend._check(cudart.cudaError_t.cudaErrorInsufficientDriver, "CUDA device 0")
    assert "CUDA driver version is insufficient for CUDA runtime version" in str(info.value)
    assert "cudaErrorInsufficientDriver = 35" in str(info.value)
    with pytest.raises(SegError, match=r"out of memory; cudaErrorMemoryAllocation = 2\)$"):
        backend._check(cudart.cudaError_t.cudaErrorMemoryAllocation, "allocating")


def test_this_machine_without_a_driver_gets_one_sentence_not_a_traceback():
    pytest.importorskip("cuda.bindings.runtime")
    if _gpu_present():
        pytest.skip("a CUDA GPU is usable here")
    with pytest.raises(backend.NoUsableGpu) as info:
        backend.gpu_info(0)
    message = str(info.value)
    assert message.startswith("CUDA device 0: no usable NVIDIA GPU (") and "\n" not in message
    assert "cudaErrorInsufficientDriver = 35" in message or "cudaErrorNoDevice = 100" in message


def test_logger_keeps_errors_and_lets_nothing_escape_into_tensorrt(monkeypatch) -> None:
    """TensorRT calls the logger from C++ (noexcept): a failing `emit` must not raise through it."""

    class Severity(int):
        pass

    class ILogger:
        ERROR, WARNING = Severity(1), Severity(2)

        def __init__(self) -> None:
            pass

    module = types.ModuleType("tensorrt")
    module.ILogger = ILogger
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", module)

    def emit(severity: object, msg: str) -> None:
        raise RuntimeWarning(f"warnings are errors here: {msg}")

    logger = backend.tensorrt_logger(module, emit, hint=" (hint)")
    assert logger.last_error() == "no message from TensorRT (hint)"
    logger.log(ILogger.WARNING, "a warning")  # emit raises; the logger swallows it
    logger.log(ILogger.ERROR, "engine plan is corrupt")
    assert logger.last_error() == "engine plan is corrupt"
