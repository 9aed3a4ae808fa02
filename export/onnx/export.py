"""torch -> ONNX: export, check, simplify, prove parity against PyTorch, write with the model card."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segexport.models.base import SegmentationModel
from segexport.onnx.fused import FusedSegmentation
from segrt.errors import SegError, first_line
from segrt.image import preprocess
from segrt.meta import ModelCard, serialize_with_card, write_with_card

DEFAULT_OPSET = 17  # parsed by TensorRT 8.6 .. 11 and every ONNX Runtime since 1.12
INPUT_NAME, OUTPUT_NAME = "image", "labels"
CONFIDENCE_NAME = "confidence"  # the fused graph's second output, with --confidence (FusedSegmentation.confidence_map)
UNFUSED_INPUT_NAME, UNFUSED_OUTPUT_NAME = "input", "logits"


def package_versions() -> dict[str, str]:
    """Versions of what made an artefact, for its model card."""
    versions = {}
    for name in ("segexport", "torch", "torchvision", "onnx", "onnxslim", "onnxruntime", "onnxruntime-gpu"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def export_onnx(
    model: SegmentationModel,
    path: str | os.PathLike[str],
    *,
    sample: np.ndarray,
    fused: bool = True,
    opset: int = DEFAULT_OPSET,
    confidence: bool = False,
) -> Any:
    """Export to an in-memory `onnx.ModelProto`, dynamic in N, H and W.

    Uses the TorchScript exporter (`dynamo=False`): with torch 2.14 it exports the
    fused graph with dynamic N, H, W in one pass, where the dynamo exporter refuses
    the H and W that flow from the input shape into the two resizes. `path` is a
    scratch location beside the final file. `sample` is one uint8 H x W x 3 image
    to trace with. `confidence` adds the fused graph's second output, `CONFIDENCE_NAME`.
    """
    import onnx

    if fused:
        module: torch.nn.Module = FusedSegmentation(model, confidence=confidence).eval()
        example = torch.from_numpy(np.array(sample, dtype=np.uint8))[None]  # a writable copy
        names = (INPUT_NAME, OUTPUT_NAME, *([CONFIDENCE_NAME] if confidence else []))
        dynamic = {name: {0: "N", 1: "H", 2: "W"} for name in names}
    else:
        module = model.network
        example = torch.from_numpy(preprocess(sample[None], model.card()))
        names = (UNFUSED_INPUT_NAME, UNFUSED_OUTPUT_NAME)
        dynamic = {UNFUSED_INPUT_NAME: {0: "N", 2: "H", 3: "W"}, UNFUSED_OUTPUT_NAME: {0: "N", 2: "h", 3: "w"}}
    try:
        with warnings.catch_warnings(), torch.no_grad(), _native_stdout_dropped():
            warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic are expected here
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[names[0]],
                output_names=list(names[1:]),
                dynamic_axes=dynamic,
                do_constant_folding=True,
            )
    except Exception as exc:  # an op ONNX lacks at this opset, code the tracer cannot follow
        reason = first_line(exc, with_type=True)
        op = failed_op(str(exc))
        newer = "a newer" if opset < DEFAULT_OPSET else "another"
        raise SegError(
            f"{model.name}: torch.onnx.export failed at opset {opset}{f' on {op}' if op else ''} ({reason}); try "
            f"{newer} --opset (default {DEFAULT_OPSET}), or --no-fuse to export the plain network, or report it "
            f"with the model"
        ) from None
    return onnx.load(str(path))


def failed_op(message: str) -> str | None:
    """The operator the TorchScript exporter failed on, as its error names it: "(Occurred when translating
    upsample_bilinear2d)" from a symbolic function that failed, "Exporting the operator 'aten::fft_fft2' to ONNX
    opset version 17 is not supported" from one it lacks; None where it names none."""
    found = re.search(r"Occurred when translating ([\w:.]+)", message) or re.search(
        r"Exporting the operator '([^']+)'", message
    )
    return found[1] if found else None


def supported_opsets() -> tuple[int, int] | None:
    """The opsets torch.onnx's TorchScript exporter writes (7..20 with torch 2.14), from its own constants; None
    where this torch keeps them elsewhere (the export's own error then says it)."""
    try:
        from torch.onnx import _constants
    except ImportError:
        return None
    low = getattr(_constants, "ONNX_MIN_OPSET", None)
    high = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", None)
    return (int(low), int(high)) if isinstance(low, int) and isinstance(high, int) else None


def check_opset(opset: int | None) -> None:
    """Before any work: --opset is one the exporter writes. SegError names the range."""
    supported = supported_opsets()
    if opset is None or supported is None or supported[0] <= opset <= supported[1]:
        return
    raise SegError(
        f"--opset {opset}: torch {torch.__version__}'s ONNX exporter writes opsets {supported[0]} to {supported[1]}; "
        f"give one of them (default {DEFAULT_OPSET}, which TensorRT 10 and ONNX Runtime parse)"
    )


@contextlib.contextmanager
def _native_stdout_dropped() -> Iterator[None]:
    """The process's stdout (file descriptor 1) pointed at a scratch file while the block runs.

    When an export fails, the TorchScript exporter prints its whole IR graph (hundreds of lines) through
    C++'s std::cout: torch 2.x leaves its ONNX log switched on (`setup_onnx_logging` tests the function
    `_jit_is_onnx_log_enabled` for truth instead of calling it). The error names the failing op instead.
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout to protect
        yield
        return
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            try:
                yield
            finally:
                sys.stdout.flush()
                os.dup2(saved, 1)
    finally:
        os.close(saved)


def check_and_simplify(model_proto: Any) -> Any:
    """onnx.checker, shape inference, onnxslim, and a fused graph's tail made channel-last (segexport.onnx.tail);
    the result is checked again."""
    import onnx
    import onnxslim

    from segexport.onnx.tail import channel_last_tail

    onnx.checker.check_model(model_proto)
    inferred = onnx.shape_inference.infer_shapes(model_proto)
    slimmed = channel_last_tail(onnxslim.slim(inferred))
    onnx.checker.check_model(slimmed)
    return slimmed


def save_onnx(model_proto: Any, path: str | os.PathLike[str], card: ModelCard) -> Path:
    """Write the ONNX file with its embedded card and its sidecar card (with the file's sha256) as a pair."""
    import onnx

    from segexport.onnx.tensorrt_rules import check_uint8_io

    check_uint8_io(model_proto, f"{path} was not written")
    data = serialize_with_card(model_proto, card)
    if len(data) >= 2**31:
        raise SegError(f"{path}: the model is over 2 GB, which ONNX cannot hold in one file")

    def write_and_check(tmp: Path) -> None:
        # checked under its temporary name: a file that fails the check never reaches `path`
        tmp.write_bytes(data)
        try:
            onnx.checker.check_model(str(tmp))
        except onnx.checker.ValidationError as exc:
            reason = first_line(exc, with_type=True)
            raise SegError(
                f"{path} was not written: the graph fails onnx.checker ({reason}); report it with the model"
            ) from None

    return write_with_card(path, write_and_check, card)
