"""The GPU benchmark of tests/gpu/run.sh: what a frame costs on any NVIDIA GPU without TensorRT, in one JSON file.

Per model and frame size, on the same frames:
- the PyTorch baseline on CUDA (segbench's `pytorch-eager`: the pipeline as users write it, PIL preset on the
  host), FP32 and FP16 (torch.autocast);
- the fused deploy module (segexport's FusedSegmentation: uint8 image in, uint8 labels out, everything between on
  the GPU) in PyTorch on CUDA, FP32 and FP16 (network weights in half, autocast), captured in a CUDA graph: once
  timed from host numpy to host numpy through pinned buffers, and once with the frame staying on the GPU
  (graph replays back to back, timed by CUDA events);
- each one's labels against the FP32 reference (segbench's, computed on the CPU), its peak torch allocation,
  and NVML's device memory, power and energy per frame;
- segrt's TensorRT runner with its engine replaced by a stand-in (tests/gpu/stand_in_engine.py: no TensorRT),
  so its CUDA half (pinned buffers, stream, events, CUDA graph) is timed for real and its labels checked.
A part that fails is recorded with its error and the rest still runs. Not yet run on a GPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

# The one place that names the project's modules.
from segbench.cases.baseline import EagerPipeline, build_reference
from segbench.cases.runner import make_batch
from segbench.cases.suite import ModelSpec
from segbench.measure.machine import environment
from segbench.measure.resources import ResourceSampler
from segbench.measure.timing import Timed, Window, time_calls
from segexport.onnx.fused import FusedSegmentation
from segexport.request import ModelOptions
from segrt.image import read_image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # stand_in_engine, beside this file
import stand_in_engine  # noqa: E402

PHOTO = HERE.parents[1] / "export" / "assets" / "astronaut.jpg"
MB = 1024 * 1024
MODELS = {  # name -> the segexport options it is built with (random FCN weights: nothing to download)
    "unet_shapes": ModelOptions("unet_shapes"),
    "fcn_resnet50": ModelOptions("fcn_resnet50", weights="none", input_size=(520, 520)),
}
SHAPES = ("1x612x640", "1x1080x1920")
STAND_IN_SHAPES = ("1x612x640", "1x1080x1920", "4x612x640")
REPLAYS = 20  # back-to-back graph replays per device-only sample


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated NxHxW")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per case (at least 3 samples)")
    return parser.parse_args(argv)


def shape_of(text: str) -> tuple[int, int, int]:
    n, h, w = (int(v) for v in text.lower().split("x"))
    return n, h, w


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu: torch sees no CUDA device; nothing measured")
        return 1
    record: dict[str, Any] = {"device": device_facts(torch), "models": [], "errors": []}
    timing = {"warmup": args.warmup, "iterations": args.iterations, "seconds": args.seconds}
    record["timing"] = timing
    record["environment"] = attempt(record, "environment", environment)
    photo = read_image(PHOTO)
    for name in args.models.split(","):
        result = attempt(record, name, lambda n=name: bench_model(torch, n, args.shapes.split(","), photo, timing))
        if result:
            record["models"].append(result)
        write(args.out, record)
    record["runner_stand_in"] = attempt(record, "runner stand-in", lambda: bench_stand_in(photo, timing))
    write(args.out, record)
    print(f"bench_gpu: wrote {args.out} ({len(record['errors'])} part(s) failed)")
    return 1 if record["errors"] else 0


def attempt(record: dict[str, Any], part: str, work: Callable[[], Any]) -> Any:
    """`work()`, or None with the failure recorded under "errors" (one part's failure must not lose the rest)."""
    try:
        return work()
    except Exception as exc:  # recorded and printed: the results say what failed and why
        traceback.print_exc()
        record["errors"].append({"part": part, "error": f"{type(exc).__name__}: {exc}"})
        return None


def write(path: Path, record: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")


def device_facts(torch: Any) -> dict[str, Any]:
    props = torch.cuda.get_device_properties(0)
    return {
        "name": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "memory_mb": props.total_memory / MB,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        # PyTorch's defaults, kept: "FP32" convolutions run in TF32 on Ampere and later unless a user turns it off
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }


# --- one model: the eager baseline and the fused module, on the same frames ----------------------------------


def bench_model(torch: Any, name: str, shapes: list[str], photo: np.ndarray, timing: dict[str, Any]) -> dict:
    reference = build_reference(ModelSpec(MODELS[name]))
    card = reference.card
    result: dict[str, Any] = {
        "model": name,
        "input_size": list(card.input_size),
        "classes": card.num_classes,
        "reference": "FP32 PyTorch on the CPU, the fused graph's steps (segbench's reference)",
        "shapes": [],
    }
    for shape in shapes:
        batch = make_batch(photo, *shape_of(shape))
        expected = reference.labels_for(batch)
        cases = []
        for precision in ("fp32", "fp16"):
            cases.append(eager_case(torch, reference, batch, expected, precision, timing))
            cases.append(fused_case(torch, reference.model, batch, expected, precision, timing))
        result["shapes"].append({"shape": shape, "cases": cases})
        figures = ", ".join(f"{c['pipeline']} {c['precision']} {c['per_frame_ms']['p50']:.2f} ms" for c in cases)
        print(f"bench_gpu: {name} {shape}: {figures}", flush=True)
    return result


def eager_case(torch: Any, reference: Any, batch: np.ndarray, expected: np.ndarray, precision: str, timing: dict):
    """segbench's pytorch-eager pipeline on CUDA; FP16 through torch.autocast around the whole call."""
    fresh(torch)
    pipeline = EagerPipeline(reference, device="cuda")
    last: dict[str, np.ndarray] = {}

    def call() -> dict[str, float]:
        with torch.autocast("cuda", dtype=torch.float16, enabled=precision == "fp16"):
            last["labels"] = pipeline(batch)
        return pipeline.timings

    try:
        case = measured(torch, call, batch, timing)
        case.update(
            pipeline="pytorch-eager",
            precision=precision,
            cuda_graph=False,
            what=f"{pipeline.transforms_name} on the host, then the network with its aux head, interpolate, argmax"
            + (" (torch.autocast float16)" if precision == "fp16" else ""),
            agreement=agreement(last["labels"], expected),
        )
        return case
    finally:
        pipeline.close()


def fused_case(torch: Any, model: Any, batch: np.ndarray, expected: np.ndarray, precision: str, timing: dict):
    """The fused deploy module in one CUDA graph: pinned host buffers in and out, the frame's work on the GPU."""
    half = precision == "fp16"
    fresh(torch)
    fused = FusedSegmentation(copy.deepcopy(model)).cuda().eval()
    if half:
        fused.network.half()  # weights stored in half; autocast casts the activations the convolutions read
    host_in = torch.empty(batch.shape, dtype=torch.uint8).pin_memory()
    device_in = torch.empty(batch.shape, dtype=torch.uint8, device="cuda")
    host_in.copy_(torch.from_numpy(batch))
    device_in.copy_(host_in)
    torch.cuda.reset_peak_memory_stats()
    graph, device_out = capture(torch, fused, device_in, half)
    host_out = torch.empty(device_out.shape, dtype=torch.uint8).pin_memory()
    marks = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
    last: dict[str, np.ndarray] = {}

    def call() -> dict[str, float]:
        host_in.copy_(torch.from_numpy(batch))
        marks[0].record()
        device_in.copy_(host_in, non_blocking=True)
        marks[1].record()
        graph.replay()
        marks[2].record()
        host_out.copy_(device_out, non_blocking=True)
        marks[3].record()
        marks[3].synchronize()
        last["labels"] = host_out.numpy().copy()
        stages = ("h2d", "compute", "d2h")
        return {stage: marks[i].elapsed_time(marks[i + 1]) for i, stage in enumerate(stages)}

    case = measured(torch, call, batch, timing, reset_peak=False)
    case.update(
        pipeline="fused-cuda-graph",
        precision=precision,
        cuda_graph=True,
        what="segexport's FusedSegmentation (cast, resize, normalize, network, upsample, argmax) in one CUDA graph"
        + (", network weights in half under torch.autocast" if half else ""),
        agreement=agreement(last["labels"], expected),
        on_device_ms=on_device(torch, graph, len(batch), timing),
    )
    return case


def fresh(torch: Any) -> None:
    """Hand the previous case's cached blocks back, so NVML's memory reading is this case's own."""
    import gc

    gc.collect()
    torch.cuda.empty_cache()


def capture(torch: Any, fused: Any, device_in: Any, half: bool) -> tuple[Any, Any]:
    """Warm the module up on a side stream (cuDNN picks its kernels), then capture one call into a CUDA graph."""

    def forward() -> Any:
        # cache_enabled=False: autocast's cast cache must not outlive a graph capture (PyTorch's CUDA graph notes)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=half, cache_enabled=False):
            return fused(device_in)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            forward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        device_out = forward()
    graph.replay()
    torch.cuda.synchronize()
    return graph, device_out


def on_device(torch: Any, graph: Any, frames_per_call: int, timing: dict) -> dict[str, float]:
    """ms per frame when the frame stays on the GPU: REPLAYS replays back to back between two CUDA events."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    deadline = time.perf_counter() + timing["seconds"]
    while len(samples) < 3 or (len(samples) < timing["iterations"] and time.perf_counter() < deadline):
        start.record()
        for _ in range(REPLAYS):
            graph.replay()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / REPLAYS / frames_per_call)
    return {"p50": float(np.median(samples)), "min": float(np.min(samples)), "samples": len(samples)}


def measured(torch: Any, call: Callable[[], dict[str, float]], batch: np.ndarray, timing: dict, *, reset_peak=True):
    """Time `call` with segbench's loop under segbench's NVML sampler: per-frame latency, stages, memory, energy."""
    if reset_peak:
        torch.cuda.reset_peak_memory_stats()
    window = Window()
    with ResourceSampler(gpu_index=0) as sampler:
        timed = time_calls(
            call,
            frames_per_call=len(batch),
            warmup=timing["warmup"],
            iterations=timing["iterations"],
            seconds=timing["seconds"],
            window=window,
        )
    return {
        "per_frame_ms": per_frame(timed),
        "stages_p50_ms": {name: float(np.median(values)) for name, values in timed.stages_ms.items()},
        "samples": len(timed.e2e_ms),
        "torch_peak_mb": torch.cuda.max_memory_allocated() / MB,
        "device": sampler.summary(window)["device"],
    }


def per_frame(timed: Timed) -> dict[str, float]:
    stats = timed.stats()
    frames = timed.frames_per_call
    return {"p50": stats.p50 / frames, "p90": stats.p90 / frames, "p99": stats.p99 / frames, "fps": stats.fps}


def agreement(labels: np.ndarray, expected: np.ndarray) -> float:
    return float((labels == expected).mean())


# --- segrt's engine runner with the stand-in engine ------------------------------------------------------------


def bench_stand_in(photo: np.ndarray, timing: dict[str, Any]) -> dict[str, Any]:
    """Time segrt.load(engine, backend="tensorrt") with and without its CUDA graph, the engine a stand-in."""
    import segrt

    cases = []
    with tempfile.TemporaryDirectory(prefix="segexport-stand-in-") as folder, stand_in_engine.installed():
        path = stand_in_engine.write_engine(Path(folder), max_shape=(4, 1080, 1920))
        for cuda_graph in (False, True):
            with segrt.load(path, backend="tensorrt", cuda_graph=cuda_graph) as segmenter:
                for shape in STAND_IN_SHAPES:
                    batch = make_batch(photo, *shape_of(shape))
                    labels_ok = bool(np.array_equal(segmenter(batch), stand_in_engine.expected_labels(batch)))
                    timed = time_calls(
                        lambda b=batch: (segmenter(b), segmenter.timings)[1],
                        frames_per_call=len(batch),
                        warmup=timing["warmup"],
                        iterations=timing["iterations"],
                        seconds=min(timing["seconds"], 1.0),
                    )
                    cases.append(
                        {
                            "shape": shape,
                            "cuda_graph": cuda_graph,
                            "labels_as_expected": labels_ok,
                            "per_frame_ms": per_frame(timed),
                            "stages_p50_ms": {n: float(np.median(v)) for n, v in timed.stages_ms.items()},
                            "samples": len(timed.e2e_ms),
                        }
                    )
    return {"what": stand_in_engine.WHAT, "cases": cases}


if __name__ == "__main__":
    sys.exit(main())
