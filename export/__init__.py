"""segexport: PyTorch segmentation models to checked, fused ONNX graphs and TensorRT engines.

    from segexport import ExportRequest, ModelOptions, export
    result = export(ExportRequest(model=ModelOptions("fcn_resnet50", weights="none")))

`export(request)` (segexport.pipeline) runs the chain of small steps: `models.zoo.build` ->
`onnx.export.export_onnx` -> `check_and_simplify` -> `parity.check_parity` -> `save_onnx`, then
the precision graphs, the engines and a Triton repository. The `segexport` command makes the
request from its flags (segexport.cli) and prints the progress. The rooms are listed in docs/DESIGN.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segexport.progress import Report
    from segexport.request import ExportRequest, ExportResult

__version__ = "0.1.0"

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
