"""segbench on a GPU: the CUDA baseline with CUDA-event stages, TensorRT cases, NVML memory and power.

Skipped without a CUDA device (and TensorRT for the engine case); not yet run on a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from segbench.cases.artifacts import unavailable_reason  # noqa: E402
from segbench.cases.suite import Case, ModelSpec  # noqa: E402
from segbench.cli import main  # noqa: E402
from segexport.request import ModelOptions  # noqa: E402

pytestmark = pytest.mark.gpu
TINY = ["--model", "unet", "--input-size", "32x32", "--export-arg=--unet-base", "--export-arg=4"]
RUN = ["--shape", "2x48x64", "--warmup", "2", "--iterations", "5"]


def run_one(tmp_path: Path, *flags: str) -> list[dict]:
    out = tmp_path / "run"
    assert main([*TINY, *flags, *RUN, "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    return json.loads((out / "results.json").read_text())["cases"]


def test_cuda_baseline_times_its_stages_with_cuda_events(tmp_path: Path) -> None:
    cases = run_one(tmp_path, "--backend", "pytorch-eager", "--device", "cuda")
    cuda = next(c for c in cases if c["pipeline"] == "pytorch-eager cuda")
    assert cuda["status"] == "ok", cuda.get("reason")
    assert set(cuda["timing"]["stages"]) == {"h2d", "pre", "compute", "post", "d2h", "other"}
    device = cuda["resources"]["device"]
    if "absent" not in device:  # NVML answers on desktop and server GPUs
        assert device["memory_peak_mb"] > 0 and device["power_mean_w"] > 0 and device["energy_per_frame_j"] > 0


def test_tensorrt_case_splits_its_stages_around_the_device_work(tmp_path: Path) -> None:
    reason = unavailable_reason(Case(ModelSpec(ModelOptions("unet")), "tensorrt", "fp16", device="cuda"))
    if reason:
        pytest.skip(reason)
    cases = run_one(tmp_path, "--backend", "tensorrt", "--precision", "fp16")
    engine = next(c for c in cases if c["backend"] == "tensorrt")
    assert engine["status"] == "ok", engine.get("reason")
    assert {"h2d", "compute", "d2h", "backend-host", "other"} <= set(engine["timing"]["stages"])
    assert engine["file"].endswith("model.fp16.engine") and engine["network"]["p50_ms"] > 0
    assert engine["accuracy"]["pixel_agreement"] > 0.9
    assert engine["speedup"]["over"].endswith("pytorch-eager cuda | 2x48x64")
