"""An engine's files: their names, the card that describes a build, and publishing the engine and its card as
a pair. (Which graphs become engines is a flag decision: `segexport.cli.request_from_args`.)"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from segrt.errors import SegError
from segrt.files import publish_together, write_bytes_atomic
from segrt.meta import ModelCard, artifact_name, sidecar_path, write_sidecar
from segrt.precisions import PRECISIONS

if TYPE_CHECKING:
    from segexport.engine.build import BuildRecord


def engine_path(onnx_path: Path, card: ModelCard, out: Path | None = None, *, rtx: bool = False) -> Path:
    """model.fp16.onnx (card precision fp16) -> model.fp16.engine (model.fp16.rtx.engine), beside it or in `out`."""
    if not PRECISIONS[card.precision].tensorrt:
        raise SegError(
            f"{onnx_path}: this is the ONNX Runtime (CPU) INT8 graph; TensorRT builds from the TensorRT Q/DQ graph, "
            f"`segexport {onnx_path.with_name(artifact_name(onnx_path.name.split('.')[0], 'int8'))} --engine`"
        )
    stem = onnx_path.name.split(".")[0]
    return (out or onnx_path.parent) / artifact_name(stem, card.precision, engine=True, rtx=rtx)


def engine_card(source_card: ModelCard, record: BuildRecord, source_sha256: str) -> ModelCard:
    """The engine's card: the ONNX card plus how, where, for which GPUs and from what the engine was built."""
    low, best, high = record.profile
    options = record.options
    tensorrt = {
        "library": record.library.name,
        "version": record.library.version,
        "gpu": record.gpu.name if record.gpu else None,
        "compute_capability": record.gpu.compute_capability if record.gpu else None,
        "targets": list(record.targets),
        "precision": source_card.precision,
        "strongly_typed": True,
        "profile": {"input": record.input_name, "min": list(low), "opt": list(best), "max": list(high)},
        "image_shapes": {
            "min": list(record.shapes.min),
            "opt": list(record.shapes.opt),
            "max": list(record.shapes.max),
        },
        "build_seconds": round(record.build_seconds, 2),
        "source": record.source,
        "workspace_mib": options.workspace_mib,
        "builder_optimization_level": options.builder_opt_level,
        "dla_core": options.dla_core,
        "gpu_arch": list(options.targets) if options.targets else None,  # as asked; None: the library's default
    }
    versions = {**source_card.versions, record.library.name: record.library.version}
    return source_card.replace(tensorrt=tensorrt, source_sha256=source_sha256, versions=versions)


def save_engine(path: Path, engine: bytes, card: ModelCard) -> Path:
    """Write the engine atomically, then its sidecar card with the engine's sha256."""
    write_bytes_atomic(path, engine)
    write_sidecar(path, card)
    return path


def publish_engine(built: Path, target: Path) -> Path:
    """Move a checked engine and its card (`built`, in the scratch folder) to `target` and its card, as a pair:
    under the folder's lock, with signals held between the two renames (segrt.files.publish_together). A failed
    rename leaves the old pair or no pair, never the new engine beside the old card."""
    publish_together([(built, target), (sidecar_path(built), sidecar_path(target))], " the engine")
    return target
