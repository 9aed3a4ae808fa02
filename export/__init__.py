"""segexport: PyTorch segmentation models to checked, fused ONNX graphs and TensorRT engines.

    from segexport import ExportRequest, ModelOptions, export
    result = export(ExportRequest(model=ModelOptions("fcn_resnet50", weights="none")))

`export(request)` (segexport.pipeline) runs the chain of small steps: `models.build` ->
`onnx_export.export_onnx` -> `check_and_simplify` -> `parity.check_parity` -> `save_onnx`, then
the precision graphs, the engines and a Triton repository. The `segexport` command makes the
request from its flags (segexport.cli) and prints the progress.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segexport.progress import Report
    from segexport.request import ExportRequest, ExportResult

__version__ = "0.1.0"

ASSETS = Path(__file__).parent / "assets"
WEIGHTS = Path(__file__).parent / "weights"
DEFAULT_MODEL = "unet_shapes"  # the bundled reference model, trained on the generated shapes set


def is_user_model(name: str) -> bool:
    """Whether a model name is a user's `package.module:factory` rather than a zoo name or a file."""
    return ":" in name


def parity_image(model_name: str) -> Path:
    """The image parity checks run on by default: the model's own sample where it ships one, else the photo.

    A model trained on other images than photos (the shapes reference model) is checked
    on an image like its own: on an out-of-distribution photo its near-tie logits flip
    under FP16/INT8 and the agreement says nothing about the model.
    """
    sample = WEIGHTS / f"{model_name}_sample.jpg"
    return sample if sample.is_file() else ASSETS / "astronaut.jpg"


def read_lines(path: Path, what: str, fix: str, reading: str = "it") -> list[str]:
    """The non-empty, stripped lines of a UTF-8 text file the user named, or SegError: "`what`: cannot read
    `reading` (reason); `fix`" (--classes and --calib lists are read this way)."""
    from segrt.errors import SegError

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SegError(f"{what}: cannot read {reading} ({reason}); {fix}") from None
    return [line.strip() for line in lines if line.strip()]


_REQUEST_TYPES = ("ExportRequest", "ExportResult", "ModelOptions", "OnnxOptions", "PrecisionOptions", "EngineOptions")


def export(request: ExportRequest, report: Report | None = None) -> ExportResult:
    """Run an export request and return what it wrote; see `segexport.pipeline.export`."""
    from segexport.pipeline import export as run

    return run(request, report)


def __getattr__(name: str) -> Any:
    """The request types, imported on first use (`import segexport` stays light for segrt-only tools)."""
    if name in _REQUEST_TYPES:
        from segexport import request

        return getattr(request, name)
    raise AttributeError(f"module 'segexport' has no attribute {name!r}")
