"""segrt's TensorRT runner, its CUDA half driven for real on any NVIDIA GPU, with the engine replaced by a stand-in.

No TensorRT engine runs here: `stand_in_engine` takes TensorRT's place and enqueues one real device copy per
execution on the runner's stream (see its docstring). What is checked is the runner's own work: pinned host and
device buffers the right size, the stream and events timing each stage, CUDA-graph capture once per shape and
replay after, batches split to the profile, and close() freeing every buffer, event, graph and the stream.
Skipped without cuda-python and a usable CUDA GPU. Not yet run on a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import stand_in_engine  # tests/gpu/stand_in_engine.py (pytest puts this folder on the path)
from gpu_here import usable_gpu

import segrt
from segrt.backends import tensorrt as runner
from segrt.errors import SegError

GPU = usable_gpu()

pytestmark = pytest.mark.gpu
cudart = runner.cudart
MIB = 1024 * 1024


def frames(n: int, height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


@pytest.fixture
def engine_path(tmp_path: Path) -> Path:
    return stand_in_engine.write_engine(tmp_path, max_shape=(4, 1080, 1920))


def memory_type(pointer: int) -> str:
    """What CUDA says `pointer` is now: cudaMemoryTypeDevice / Host while allocated, Unregistered once freed."""
    err, attributes = cudart.cudaPointerGetAttributes(pointer)
    if err != cudart.cudaError_t.cudaSuccess:
        return f"error {cudart.cudaGetErrorName(err)[1]!r}"
    return attributes.type.name


def free_device_bytes() -> int:
    runner._check(cudart.cudaSetDevice(0)[0], "selecting device 0")
    runner._check(cudart.cudaFree(0)[0], "creating the CUDA context")
    err, free, _ = cudart.cudaMemGetInfo()
    runner._check(err, "cudaMemGetInfo")
    return int(free)


def test_labels_come_back_through_the_runners_buffers_at_every_shape(engine_path: Path) -> None:
    with stand_in_engine.installed(), segrt.load(engine_path, backend="tensorrt") as segmenter:
        for seed, shape in enumerate([(1, 612, 640), (2, 1080, 1920), (4, 300, 401), (1, 612, 640)]):
            batch = frames(*shape, seed=seed)
            assert np.array_equal(segmenter(batch), stand_in_engine.expected_labels(batch)), shape
            timings = segmenter.timings
            assert {"infer", "h2d", "compute", "d2h"} <= set(timings), timings
            assert all(timings[k] > 0 for k in ("h2d", "compute", "d2h")), timings
            assert timings["h2d"] + timings["compute"] + timings["d2h"] <= timings["infer"] * 1.01 + 0.05
        six = frames(6, 200, 300, seed=9)  # more than the profile's 4: Segmenter splits it 4 + 2
        assert np.array_equal(segmenter(six), stand_in_engine.expected_labels(six))


def test_cuda_graph_is_captured_once_per_shape_and_its_replays_do_the_work(engine_path: Path) -> None:
    with stand_in_engine.installed(), segrt.load(engine_path, backend="tensorrt", cuda_graph=True) as segmenter:
        backend = segmenter.backend
        context = stand_in_engine.Runtime.engines[-1].contexts[-1]
        for seed in range(4):  # each replay must copy the new frame: stale labels would differ
            batch = frames(1, 612, 640, seed=seed)
            assert np.array_equal(segmenter(batch), stand_in_engine.expected_labels(batch))
        assert backend._graph_exec is not None
        assert context.enqueued == 2  # one run outside the capture, one captured; the four calls replayed it
        first_graph = backend._graph_exec
        batch = frames(2, 720, 1280, seed=7)
        assert np.array_equal(segmenter(batch), stand_in_engine.expected_labels(batch))
        assert context.enqueued == 4 and backend._graph_exec is not None and backend._graph_exec is not first_graph


def test_close_frees_every_buffer_event_graph_and_the_stream(engine_path: Path) -> None:
    free_before = free_device_bytes()
    with stand_in_engine.installed():
        segmenter = segrt.load(engine_path, backend="tensorrt", cuda_graph=True)
    backend = segmenter.backend
    batch = frames(4, 1080, 1920, seed=3)
    assert np.array_equal(segmenter(batch), stand_in_engine.expected_labels(batch))
    device, host = list(backend._device_buffers), list(backend._host_buffers)
    assert len(device) == 2 and len(host) == 2 and len(backend._events) == 4
    assert {memory_type(p) for p in device} == {"cudaMemoryTypeDevice"}
    assert {memory_type(p) for p in host} == {"cudaMemoryTypeHost"}
    held = free_before - free_device_bytes()
    assert held >= 4 * 1080 * 1920 * 4 - 4 * MIB, held  # the profile's largest input and output, on the device

    segmenter.close()
    segmenter.close()  # a second close does nothing
    assert all(memory_type(p) != "cudaMemoryTypeDevice" for p in device)
    assert all(memory_type(p) != "cudaMemoryTypeHost" for p in host)
    assert backend._device_buffers == [] and backend._host_buffers == [] and backend._events == []
    assert backend._stream is None and backend._graph is None and backend._graph_exec is None
    assert free_device_bytes() >= free_before - 4 * MIB
    with pytest.raises(SegError, match="closed"):
        segmenter(batch)
