"""`segexport doctor`: what this machine can build and run, on one screen, with the install that fixes each gap."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from segexport import extras
from segrt.backends import tensorrt_library as library
from segrt.errors import SegError


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's table: a piece, whether it is here, what it is, and how to get it where not."""

    piece: str
    ok: bool
    detail: str
    fix: str = ""


def findings() -> list[Finding]:
    """Everything the doctor looks at, in the order it prints them."""
    from segexport.engine.prerequisites import CUDA_PYTHON_INSTALL

    rows = [*_exporter_findings(), _library_finding(library.TENSORRT), _library_finding(library.TENSORRT_RTX)]
    cudart = _cudart()
    if cudart is None:
        rows.append(Finding("cuda-python", False, "not installed", CUDA_PYTHON_INSTALL))
        rows.append(Finding("CUDA driver / GPUs", False, "unknown: cuda-python is needed to look", CUDA_PYTHON_INSTALL))
    else:
        from segrt.backends.tensorrt import _cuda_python_version

        rows.append(Finding("cuda-python", True, _cuda_python_version()))
        rows.extend(_gpu_findings(cudart))
    rows.append(_ort_finding())
    rows.append(_dla_finding())
    return rows


def _exporter_findings() -> list[Finding]:
    """The exporter's packages (segexport[export]): PyTorch to ONNX, and the FP16 / INT8 passes (ModelOpt)."""
    rows = []
    for piece, modules, what in (
        ("PyTorch -> ONNX", extras.PYTORCH_TO_ONNX, "exports PyTorch models to ONNX here"),
        ("FP16 / INT8 graphs", extras.PRECISION_GRAPHS, "writes FP16 and INT8 graphs here (--fp16, --int8)"),
    ):
        missing = extras.absent(modules)
        if missing:
            where = f"{extras.EXPORT_INSTALL}, or export where it is and copy the folder here"
            rows.append(Finding(piece, False, f"absent ({', '.join(missing)} not installed)", where))
        else:
            rows.append(Finding(piece, True, f"{extras.versions(modules)}: {what}"))
    return rows


def _library_finding(name: str) -> Finding:
    problem = library.import_problem(name)
    label = "TensorRT-RTX" if name == library.TENSORRT_RTX else "TensorRT"
    if problem is not None:
        return Finding(label, False, f"absent ({problem})", library.INSTALL[name])
    version = str(library.module(name).__version__)
    if name == library.TENSORRT_RTX:
        targets = ", ".join(library.RTX_TARGETS)
        return Finding(label, True, f"{version}: builds engines here, for {targets} (no GPU needed to build)")
    return Finding(label, True, f"{version}: builds engines on a CUDA GPU here")


def _cudart() -> Any:
    from segrt.backends.tensorrt import cudart

    return cudart


def _gpu_findings(cudart: Any) -> list[Finding]:
    from segrt.backends.tensorrt import NoUsableGpu, gpu_info

    err, driver = cudart.cudaDriverGetVersion()
    found = err == cudart.cudaError_t.cudaSuccess and driver > 0
    driver_text = f"CUDA {driver // 1000}.{driver % 1000 // 10}" if found else "none"
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or count == 0:
        try:
            gpu_info(0)
        except NoUsableGpu as exc:
            reason = exc.reason
        else:
            reason = "no device"
        fix = "install the NVIDIA driver on a machine with an NVIDIA GPU; engines for other GPUs: --rtx --gpu-arch"
        return [Finding("CUDA driver / GPUs", False, f"driver {driver_text}; no usable GPU ({reason})", fix)]
    rows = [Finding("CUDA driver", True, driver_text)]
    for device in range(count):
        gpu = gpu_info(device)
        rtx = gpu.compute_capability in library.RTX_TARGETS.values()
        runs = "TensorRT-RTX and TensorRT engines" if rtx else "TensorRT engines (no TensorRT-RTX target)"
        rows.append(Finding(f"GPU {device}", True, f"{gpu.name}, compute capability {gpu.compute_capability}: {runs}"))
    return rows


def _ort_finding() -> Finding:
    if importlib.util.find_spec("onnxruntime") is None:
        return Finding("ONNX Runtime", False, "not installed", "pip install segexport (the base install)")
    import onnxruntime

    providers = onnxruntime.get_available_providers()
    short = ", ".join(p.removesuffix("ExecutionProvider") for p in providers)
    gpu = any(p in providers for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider"))
    fix = "" if gpu else "for CUDA: pip install 'segexport[gpu]' (see the README: the GPU wheel must own the module)"
    return Finding("ONNX Runtime", True, f"{onnxruntime.__version__}: providers {short}", fix)


def _dla_finding() -> Finding:
    """DLA is a Jetson (AGX/NX Orin, Xavier) accelerator, reached through full TensorRT's builder on the device."""
    if library.import_problem(library.TENSORRT) is not None or _cudart() is None:
        return Finding("DLA", False, "unknown: needs TensorRT and a Jetson GPU to look", "JetPack on a Jetson Orin")
    import tensorrt as trt

    try:
        cores = trt.Builder(trt.Logger(trt.Logger.ERROR)).num_DLA_cores
    except Exception as exc:  # no GPU: the builder cannot start
        return Finding("DLA", False, f"unknown ({type(exc).__name__})", "JetPack on a Jetson Orin")
    return Finding("DLA", cores > 0, f"{cores} core(s)", "" if cores else "DLA exists on Jetson AGX/NX Orin and Xavier")


def print_doctor(console: Any, given: Mapping[str, object] | None = None) -> None:
    """The table, then what can be built and run here in two lines. `given`: the flags the command line gave; the
    doctor reads none but -v."""
    from rich.markup import escape
    from rich.table import Table

    ignored = [flag for flag in given or () if flag != "--verbose"]
    if ignored:
        raise SegError(f"{ignored[0]} does not apply to doctor, which only looks at this machine; drop it")
    rows = findings()
    table = Table(title="segexport doctor: what this machine can build and run", title_justify="left")
    for column in ("", "piece", "here", "to fix"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row("[green]✓[/]" if row.ok else "[red]✗[/]", row.piece, escape(row.detail), escape(row.fix))
    console.print(table)
    have = {row.piece: row.ok for row in rows}
    gpu = any(row.ok and row.piece.startswith("GPU") for row in rows)
    builds = []
    if have.get("PyTorch -> ONNX"):
        builds.append("ONNX graphs (FP32, FP16, INT8)" if have.get("FP16 / INT8 graphs") else "ONNX graphs (FP32)")
    if have.get("TensorRT-RTX"):
        builds.append("TensorRT-RTX engines (--rtx) for any RTX target")
    if have.get("TensorRT") and gpu:
        builds.append("TensorRT engines for the GPUs above")
    if not builds:
        builds.append(
            f"nothing yet (ONNX graphs: {extras.EXPORT_INSTALL}; engines from them: segexport[rtx] on any machine, "
            f"segexport[tensorrt] on the GPU that runs them)"
        )
    runs = ["ONNX Runtime " + ("CPU and GPU" if gpu else "CPU")] if have.get("ONNX Runtime") else []
    if gpu and have.get("TensorRT"):
        runs.append("TensorRT engines")
    if gpu and have.get("TensorRT-RTX"):
        runs.append("TensorRT-RTX engines for the GPUs above")
    console.print(f"builds here: {'; '.join(builds)}", highlight=False, markup=False)
    console.print(f"runs here: {'; '.join(runs) or 'nothing yet (install onnxruntime)'}", highlight=False, markup=False)
