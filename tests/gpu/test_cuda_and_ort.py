"""What needs a GPU but no TensorRT: cuda-python buffers, streams and events as segrt's engine runner uses them,
and ONNX Runtime's CUDA provider (with its IO binding) giving the CPU provider's labels.

Skipped without cuda-python and a usable CUDA GPU (ONNX Runtime CUDA: without onnxruntime-gpu's provider).
"""

from __future__ import annotations

import numpy as np
import pytest
from gpu_here import usable_gpu  # tests/gpu/gpu_here.py (pytest puts this folder on the path)

import segrt
from segrt.backends import tensorrt as backend
from segrt.errors import SegError

GPU = usable_gpu()

pytestmark = pytest.mark.gpu
cudart = backend.cudart


def test_gpu_info_names_the_device_and_its_compute_capability():
    major, minor = (int(v) for v in GPU.compute_capability.split("."))
    assert GPU.name and major >= 5 and minor >= 0
    with pytest.raises(SegError, match="does not exist"):
        backend.gpu_info(999)


def test_pinned_buffers_round_trip_through_the_device_on_a_stream_timed_by_events():
    """The calls TensorRTBackend makes around an engine, in its order, with its error checks."""
    nbytes = 3 * 1080 * 1920
    data = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8)
    err, stream = cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking)
    backend._check(err, "creating a CUDA stream")
    events = []
    for _ in range(3):
        err, event = cudart.cudaEventCreate()
        backend._check(err, "creating a CUDA event")
        events.append(event)
    err, device = cudart.cudaMalloc(nbytes)
    backend._check(err, "cudaMalloc")
    pinned = []
    for _ in range(2):
        err, pointer = cudart.cudaMallocHost(nbytes)
        backend._check(err, "cudaMallocHost")
        pinned.append(int(pointer))
    try:
        source, target = backend._host_array(pinned[0], nbytes), backend._host_array(pinned[1], nbytes)
        source[:] = data
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        backend._check(cudart.cudaEventRecord(events[0], stream)[0], "event")
        backend._check(cudart.cudaMemcpyAsync(device, pinned[0], nbytes, h2d, stream)[0], "h2d")
        backend._check(cudart.cudaEventRecord(events[1], stream)[0], "event")
        backend._check(cudart.cudaMemcpyAsync(pinned[1], device, nbytes, d2h, stream)[0], "d2h")
        backend._check(cudart.cudaEventRecord(events[2], stream)[0], "event")
        backend._check(cudart.cudaStreamSynchronize(stream)[0], "sync")
        assert (target == data).all()
        err, elapsed = cudart.cudaEventElapsedTime(events[0], events[2])
        backend._check(err, "elapsed")
        assert elapsed > 0
    finally:
        cudart.cudaFree(device)
        for pointer in pinned:
            cudart.cudaFreeHost(pointer)
        for event in events:
            cudart.cudaEventDestroy(event)
        cudart.cudaStreamDestroy(stream)


def test_onnx_runtime_cuda_gives_the_cpu_providers_labels(exported, photo):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu as the README says)")
    for name in ("unet", "unet-unfused"):
        with (
            segrt.load(exported(name), backend="ort-cpu") as cpu,
            segrt.load(exported(name), backend="ort-cuda") as gpu,
        ):
            expected = cpu(photo)
            assert gpu.backend.device == "cuda:0"
            for _ in range(3):  # the bound output buffer is reused while the shape holds
                assert (gpu(photo) == expected).mean() >= 0.999
            crops = [photo[:200, :300], photo[100:400, 50:500]]
            assert all((g == c).mean() >= 0.999 for g, c in zip(gpu(crops), cpu(crops), strict=True))
