"""TensorRT-RTX engines in segrt up to the first call that needs a GPU: what is refused before the engine's bytes
reach TensorRT-RTX, in which words, and the runtime cache file beside the engine. No torch, no GPU."""

from __future__ import annotations

import importlib.util
import sys
import types
import warnings
from pathlib import Path

import pytest

import segrt
from segrt.backends import engine_fit, runtime_cache
from segrt.backends import tensorrt as backend
from segrt.backends import tensorrt_library as library
from segrt.errors import MissingDependency, SegError
from segrt.files import write_bytes_atomic
from segrt.meta import read_card, write_sidecar

HAS_RTX = importlib.util.find_spec("tensorrt_rtx") is not None
BUILT = {"library": "tensorrt-rtx", "version": "1.7.1.116", "targets": ["8.6", "8.9"], "source": "model.fp16.onnx"}


@pytest.fixture
def rtx_engine(exported, tmp_path) -> Path:
    """A file named as an RTX engine with a valid card (TensorRT-RTX 1.7.1.116, for SM86 and SM89) beside it."""
    card = read_card(exported("unet")).replace(precision="fp16", tensorrt=dict(BUILT))
    path = write_bytes_atomic(tmp_path / "model.fp16.rtx.engine", b"serialized RTX engine stand-in")
    write_sidecar(path, card)
    return path


@pytest.fixture
def fake_rtx(monkeypatch):
    """A stand-in `tensorrt_rtx` whose Runtime records being constructed (it must not be)."""

    def install(version: str) -> list[object]:
        calls: list[object] = []
        module = types.ModuleType("tensorrt_rtx")
        module.__version__ = version
        module.Runtime = lambda *args: calls.append(args)
        monkeypatch.setitem(sys.modules, "tensorrt_rtx", module)
        return calls

    return install


def test_rtx_engine_from_another_release_is_refused_before_deserializing(rtx_engine, fake_rtx):
    calls = fake_rtx("1.8.0.20")
    with pytest.raises(SegError) as info:
        segrt.load(rtx_engine)
    message = str(info.value)
    assert "built with TensorRT-RTX 1.7.1.116 and this machine has TensorRT-RTX 1.8.0.20" in message
    assert f"`segexport {rtx_engine} --rebuild`" in message and calls == []


def test_rtx_engine_is_not_run_by_full_tensorrt(rtx_engine, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    with pytest.raises(MissingDependency, match=r"TensorRT-RTX is not installed .*pip install segexport\[rtx\]"):
        segrt.load(rtx_engine)


def test_rtx_engine_on_a_gpu_it_was_not_built_for_names_the_target_to_build(rtx_engine, fake_rtx, monkeypatch):
    calls = fake_rtx(BUILT["version"])
    monkeypatch.setattr(backend, "gpu_info", lambda device: backend.GpuInfo("NVIDIA GeForce RTX 5090", "12.0"))
    with pytest.raises(SegError) as info:
        segrt.load(rtx_engine)
    message = str(info.value)
    assert "built for compute capabilities 8.6, 8.9" in message and "RTX 5090 (compute capability 12.0)" in message
    assert "--gpu-arch sm120" in message and calls == []


def test_rtx_engine_on_hopper_says_full_tensorrt_is_needed(rtx_engine):
    problem = backend.gpu_problem(read_card(rtx_engine), backend.GpuInfo("NVIDIA H200", "9.0"))
    assert "no target for it" in problem and "full TensorRT" in problem and "--gpu-arch" not in problem


def test_rtx_engine_runs_on_any_gpu_of_its_targets(rtx_engine):
    card = read_card(rtx_engine)
    assert backend.gpu_problem(card, backend.GpuInfo("NVIDIA RTX A6000", "8.6")) is None
    assert backend.gpu_problem(card, backend.GpuInfo("NVIDIA GeForce RTX 4090", "8.9")) is None


@pytest.mark.skipif(not HAS_RTX, reason="needs the real TensorRT-RTX (segexport[rtx])")
def test_real_tensorrt_rtx_with_a_matching_card_stops_at_the_gpu_on_this_machine(rtx_engine):
    real = sys.modules.get("tensorrt_rtx") or __import__("tensorrt_rtx")
    write_sidecar(rtx_engine, read_card(rtx_engine).replace(tensorrt={**BUILT, "version": real.__version__}))
    with pytest.raises(SegError) as info:
        segrt.load(rtx_engine)
    if backend.cudart is None:
        assert "cuda-python is not installed" in str(info.value)
    else:
        err, _ = backend.cudart.cudaGetDeviceCount()
        if err != backend.cudart.cudaError_t.cudaSuccess:
            assert isinstance(info.value, backend.NoUsableGpu) and info.value.exit_code == 3


@pytest.mark.skipif(not HAS_RTX, reason="needs the real TensorRT-RTX (segexport[rtx])")
def test_a_folder_with_an_rtx_engine_opens_it_for_that_precision(rtx_engine):
    assert segrt.resolve_model_file(rtx_engine.parent, precision="fp16") == rtx_engine


def test_engine_validity_in_words():
    flags = {"VERSION_MISMATCH": 1, "UNSUPPORTED_CC": 2, "OLD_CUDA_DRIVER": 4}
    assert engine_fit.validity_problem("VALID", 0, "VALID", "INVALID", flags) is None
    problem = engine_fit.validity_problem("INVALID", 2 | 4, "VALID", "INVALID", flags)
    assert problem == "TensorRT-RTX says this GPU cannot run it (unsupported cc, old cuda driver)"
    with pytest.warns(RuntimeWarning, match="not at its best"):
        assert engine_fit.validity_problem("SUBOPTIMAL", 0, "VALID", "INVALID", flags) is None


def test_gpu_arch_names_targets_and_refuses_the_ones_without_an_rtx_target():
    assert library.parse_gpu_arch("sm86, SM89,sm86") == ("8.6", "8.9")
    assert library.arch_flag(("8.6", "12.0")) == "sm86,sm120"
    for text, words in (("sm90", "Hopper"), ("sm87", "Jetson"), ("ampere", "not a TensorRT-RTX target"), (",", "one")):
        with pytest.raises(SegError, match=words):
            library.parse_gpu_arch(text)


@pytest.mark.parametrize(
    ("name", "version", "strongly_typed_flag", "dla_flag", "timing_cache", "aot"),
    [
        ("tensorrt", "10.3.0", True, False, True, False),
        ("tensorrt", "11.4.1.2", False, True, True, False),
        ("tensorrt-rtx", "1.7.1.116", False, False, False, True),
    ],
)
def test_library_differences_are_read_from_one_description(
    name, version, strongly_typed_flag, dla_flag, timing_cache, aot
):
    lib = library.describe(name, version)
    assert (lib.ask_strongly_typed, lib.dla_parser_flag) == (strongly_typed_flag, dla_flag)
    assert (lib.has_timing_cache, lib.has_dla, lib.builds_without_gpu) == (timing_cache, timing_cache, aot)
    assert (lib.has_runtime_cache, lib.builtin_cuda_graphs) == (aot, aot)


# --- the runtime cache beside the engine -------------------------------------------------------------------


def test_runtime_cache_round_trip_and_refusals(tmp_path):
    path = runtime_cache.cache_path(tmp_path / "model.fp16.rtx.engine")
    assert path.name == "model.fp16.rtx.engine.runtime-cache"
    engine, other = b"\1" * 32, b"\2" * 32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runtime_cache.read_runtime_cache(path, engine) == b""  # none yet: no warning
    runtime_cache.write_runtime_cache(path, engine, b"compiled kernels")
    assert runtime_cache.read_runtime_cache(path, engine) == b"compiled kernels"
    with pytest.warns(RuntimeWarning, match=r"runtime-cache: the runtime cache belongs to another engine"):
        assert runtime_cache.read_runtime_cache(path, other) == b""
    path.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match=r"\(corrupt or truncated\); compiling .* again"):
        assert runtime_cache.read_runtime_cache(path, engine) == b""


def test_a_runtime_cache_that_cannot_be_saved_costs_a_warning_not_the_run(tmp_path, monkeypatch):
    class Cache:
        def serialize(self) -> bytes:
            return b"kernels"

    def refuse(path, data):
        raise SegError(f"{path}: cannot write (Read-only file system); choose another output directory")

    monkeypatch.setattr(backend, "write_runtime_cache", lambda path, sha, blob: refuse(path, blob))
    runner = backend.TensorRTBackend.__new__(backend.TensorRTBackend)
    runner.path, runner._engine_sha256, runner._runtime_cache = tmp_path / "model.rtx.engine", b"\0" * 32, Cache()
    with pytest.warns(RuntimeWarning, match="Read-only file system.*the next start compiles again"):
        runner._save_runtime_cache()
    assert runner._runtime_cache is None
    runner._save_runtime_cache()  # a second close saves nothing and says nothing
