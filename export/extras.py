"""What each part of segexport needs installed, looked up without importing it, and the one sentence (exit 3) that
names the extra where a piece is missing: the exporter's packages are on the workstation, not on the device."""

from __future__ import annotations

import importlib.util
from importlib import metadata
from typing import TYPE_CHECKING

from segrt.errors import MissingDependency

if TYPE_CHECKING:
    from segexport.request import ExportRequest

EXPORT_INSTALL = "pip install 'segexport[export]'"
# the modules each step imports (all from segexport[export]); ModelOpt imports torch too
PYTORCH_TO_ONNX = ("torch", "torchvision", "onnx", "onnxslim")
PRECISION_GRAPHS = ("onnx", "modelopt", "torch")
DISTRIBUTIONS = {"modelopt": "nvidia-modelopt"}  # module -> the distribution whose version is shown
_DEVICE_HINT = (
    "a device without it builds engines from the ONNX files exported elsewhere: `segexport model.onnx --engine` "
    "or `--rtx`"
)


def absent(modules: tuple[str, ...]) -> list[str]:
    """The modules of `modules` this install cannot import (found without importing them)."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent that fails, or a module set to None
            found = False
        if not found:
            missing.append(name)
    return missing


def versions(modules: tuple[str, ...]) -> str:
    """ "torch 2.14.1, onnx 1.19.0": the installed versions of `modules`, for the doctor."""
    shown = []
    for name in modules:
        try:
            shown.append(f"{name} {metadata.version(DISTRIBUTIONS.get(name, name))}")
        except metadata.PackageNotFoundError:
            shown.append(name)
    return ", ".join(shown)


def require_exporter(request: ExportRequest) -> None:
    """Before any work: the packages the request's PyTorch and precision steps import are here, else one sentence
    naming them and the extra (MissingDependency, exit 3). An ONNX file to an engine needs none of them."""
    wants: list[tuple[str, tuple[str, ...]]] = []
    if not request.model.from_onnx:
        wants.append((f"segexport {request.model.name} builds the model in PyTorch and exports it", PYTORCH_TO_ONNX))
    if request.precision.graphs:
        kinds = list(dict.fromkeys(name.split("-")[0] for name in request.precision.graphs))  # int8-cpu: int8
        flags = ", ".join(f"--{kind}" for kind in kinds)
        graphs = f"{' and '.join(kind.upper() for kind in kinds)} graph{'s are' if len(kinds) > 1 else ' is'}"
        what = f"the {graphs} made with NVIDIA ModelOpt ({flags})"
        wants.append((what, PRECISION_GRAPHS))
    for what, modules in wants:
        missing = absent(modules)
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            raise MissingDependency(
                f"{what}, and {', '.join(missing)} {verb} not installed here: install the exporter with "
                f"{EXPORT_INSTALL} (on the machine that exports; {_DEVICE_HINT})"
            )
