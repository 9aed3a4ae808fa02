"""benchmarks/suites/gpu-lent.toml, the segbench part of tests/gpu/run.sh: valid, and nothing in it needs what a lent
GPU machine lacks (TensorRT, onnxruntime-gpu) or a data set it would have to generate in its few minutes."""

from __future__ import annotations

from pathlib import Path

from segbench.cases.suite import load_suite

SUITE = Path(__file__).resolve().parents[2] / "benchmarks" / "suites" / "gpu-lent.toml"


def test_gpu_lent_suite_runs_only_what_a_gpu_machine_without_tensorrt_has() -> None:
    suite = load_suite(SUITE)
    assert suite.name == "gpu-lent" and not suite.generate
    pipelines = {(case.model.name, case.pipeline) for case in suite.cases}
    assert pipelines == {
        ("unet_shapes", "pytorch-eager cuda"),
        ("unet_shapes", "ort-cpu fp32 fused"),
        ("fcn_resnet50", "pytorch-eager cuda"),
    }
    assert {(c.batch, c.height, c.width) for c in suite.cases} == {(1, 612, 640), (1, 1080, 1920)}
    assert all(case.clip is None and case.model.dataset is None for case in suite.cases)
