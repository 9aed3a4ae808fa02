"""Whether an engine fits this machine, from its model card: the library and version that built it, the GPU
(TensorRT) or compute capabilities (TensorRT-RTX) it was built for, TensorRT-RTX's own validity check of its
header; and, where it does not fit, the command that rebuilds it here."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segrt.backends import tensorrt_library as library
from segrt.meta import ModelCard


@dataclass(frozen=True)
class GpuInfo:
    """What an engine is tied to: the GPU model and its compute capability."""

    name: str
    compute_capability: str  # "8.7"


def card_library(card: ModelCard) -> str:
    """The library an engine was built with: "tensorrt" (cards before TensorRT-RTX name none) or "tensorrt-rtx"."""
    return str(card.tensorrt.get("library") or library.TENSORRT)


def rebuild_command(card: ModelCard, engine_path: Path) -> str:
    return f"segexport {engine_path} --rebuild"


def rebuild_advice(card: ModelCard, engine_path: Path) -> str:
    """How to rebuild the engine here; where its ONNX is not beside it, which ONNX it must be (by sha256)."""
    command = rebuild_command(card, engine_path)
    source = engine_path.parent / (card.tensorrt.get("source") or "model.onnx")
    if source.is_file():
        return f"rebuild the engine on this machine with `{command}`"
    which = f"whose sha256 is {card.source_sha256} (the card's source_sha256)" if card.source_sha256 else "it came from"
    return (
        f"rebuild the engine on this machine from the ONNX {which}: {source.name} is not beside the engine, so put "
        f"that file there and run `{command}`"
    )


def version_problem(card: ModelCard, installed: library.TensorRTLibrary) -> str | None:
    """Why the installed library cannot load the engine the card describes, or None."""
    built = card.tensorrt.get("version")
    if not built:
        return "its model card has no TensorRT build record (not built by segexport)"
    name = card_library(card)
    if name != installed.name or built != installed.version:
        label = "TensorRT-RTX" if name == library.TENSORRT_RTX else "TensorRT"
        return f"it was built with {label} {built} and this machine has {installed.title}"
    return None


def gpu_problem(card: ModelCard, gpu: GpuInfo) -> str | None:
    """Why this GPU cannot run the engine the card describes, or None.

    A TensorRT engine runs on the GPU model it was built on; a TensorRT-RTX engine on any GPU of
    the compute capabilities it was built for.
    """
    if card_library(card) == library.TENSORRT_RTX:
        targets = [str(t) for t in card.tensorrt.get("targets") or ()]
        if gpu.compute_capability not in targets:
            arch = library.arch_flag([gpu.compute_capability])
            fix = (
                f"--gpu-arch {arch} builds for it"
                if gpu.compute_capability in library.RTX_TARGETS.values()
                else "TensorRT-RTX has no target for it, so build with full TensorRT there (without --rtx)"
            )
            return (
                f"it was built for compute capabilities {', '.join(targets) or 'none'} and this GPU is {gpu.name} "
                f"(compute capability {gpu.compute_capability}); {fix}"
            )
        return None
    built = (card.tensorrt.get("gpu"), card.tensorrt.get("compute_capability"))
    if built != (gpu.name, gpu.compute_capability):
        return (
            f"it was built for {built[0]} (compute capability {built[1]}) and this GPU is {gpu.name} "
            f"(compute capability {gpu.compute_capability})"
        )
    return None


def validity_problem(validity: Any, diagnostics: int, valid: Any, invalid: Any, flags: dict[str, int]) -> str | None:
    """TensorRT-RTX's `Runtime.get_engine_validity` answer in words, or None for a runnable engine.

    `flags`: the EngineInvalidityDiagnostics names and bit values. A SUBOPTIMAL engine runs (with a warning).
    """
    if validity == invalid:
        reasons = [name.lower().replace("_", " ") for name, bit in flags.items() if diagnostics & bit]
        return f"TensorRT-RTX says this GPU cannot run it ({', '.join(reasons) or 'no reason given'})"
    if validity != valid:
        warnings.warn(
            "TensorRT-RTX says this engine runs here but not at its best; rebuild it for this GPU",
            RuntimeWarning,
            stacklevel=3,
        )
    return None


def rtx_validity_problem(runtime: Any, data: bytes) -> str | None:
    """TensorRT-RTX's check of the engine's header against this GPU and driver, before deserializing."""
    rtx: Any = library.module(library.TENSORRT_RTX)
    validity, diagnostics = runtime.get_engine_validity(data[: int(runtime.engine_header_size)])
    flags = {name: int(value) for name, value in rtx.EngineInvalidityDiagnostics.__members__.items()}
    return validity_problem(validity, int(diagnostics), rtx.EngineValidity.VALID, rtx.EngineValidity.INVALID, flags)
