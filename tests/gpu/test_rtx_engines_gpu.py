"""TensorRT-RTX engines on a GPU with an RTX target (Turing to Blackwell GeForce/RTX; not SM90 Hopper, not
Jetson): `segexport --rtx` runs the engine check there, segrt runs the engine, keeps the runtime cache.

Skipped without TensorRT-RTX, cuda-python, or a GPU whose compute capability TensorRT-RTX targets.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorrt_rtx")

from gpu_here import usable_gpu  # tests/gpu/gpu_here.py (pytest puts this folder on the path)

import segrt
from segexport.cli import main
from segrt.backends import tensorrt_library as library
from segrt.backends.runtime_cache import cache_path
from segrt.meta import read_card

GPU = usable_gpu()
if GPU.compute_capability not in library.RTX_TARGETS.values():
    pytest.skip(f"{GPU.name} (SM{GPU.compute_capability}) has no TensorRT-RTX target", allow_module_level=True)

pytestmark = pytest.mark.gpu
ARCH = library.arch_flag([GPU.compute_capability])
SHAPES = ["--min-shape", "1x32x32", "--opt-shape", "1x480x640", "--max-shape", "2x720x720"]


@pytest.fixture(scope="module")
def fp16_engine(exported, tmp_path_factory):
    out = tmp_path_factory.mktemp("rtx")
    assert main([str(exported("unet")), "--fp16", "--rtx", "--gpu-arch", ARCH, *SHAPES, "--out", str(out)]) == 0
    return out / "model.fp16.rtx.engine"


def test_the_engine_was_checked_on_this_gpu_at_build_time(fp16_engine):
    card = read_card(fp16_engine)
    assert card.tensorrt["targets"] == [GPU.compute_capability] and "unchecked" not in card.checks
    assert card.checks["parity"]["label_agreement"] >= 0.995


def test_segrt_runs_it_keeps_the_runtime_cache_and_reuses_it(fp16_engine, photo):
    cache = cache_path(fp16_engine)
    cache.unlink(missing_ok=True)
    with segrt.load(fp16_engine) as seg:
        first = seg(photo)
        assert {"h2d", "compute", "d2h"} <= set(seg.timings)
    assert cache.is_file() and cache.stat().st_size > 40  # the kernels TensorRT-RTX compiled, saved on close
    with segrt.load(fp16_engine) as seg:
        assert (seg(photo) == first).all()
    with segrt.load(fp16_engine, cuda_graph=True) as graphed:  # TensorRT-RTX's own CUDA-graph capture
        assert all((graphed(photo) == first).all() for _ in range(3))


def test_a_runtime_cache_from_another_engine_costs_a_warning_and_a_compile(fp16_engine, photo, tmp_path):
    cache = cache_path(fp16_engine)
    cache.write_bytes(b"SEGRTRC1" + b"\0" * 32 + b"kernels of another engine")
    with pytest.warns(RuntimeWarning, match="belongs to another engine"), segrt.load(fp16_engine) as seg:
        assert seg(photo).shape == photo.shape[:2]


def test_check_runs_here_and_records_the_agreement(fp16_engine):
    assert main([str(fp16_engine), "--check"]) == 0
    assert read_card(fp16_engine).checks["parity"]["label_agreement"] >= 0.995


def test_batches_beyond_the_profile_are_split_and_agree(fp16_engine, photo):
    crops = [np.ascontiguousarray(photo[i * 40 : i * 40 + 300, :400]) for i in range(5)]  # 5 > max N of 2
    with segrt.load(fp16_engine) as seg:
        singles = [seg(crop) for crop in crops]
        batched = seg(np.stack(crops))
    assert all((b == s).all() for b, s in zip(batched, singles, strict=True))
