"""ONNX -> ONNX precision passes: FP16 mixed precision and INT8 Q/DQ, each checked against the FP32 graph.

- FP16 (`model.fp16.onnx`): NVIDIA ModelOpt's AutoCast converts what is safe to FP16 and keeps
  numerically sensitive nodes (and those named by `keep_fp32`) in FP32; input and output types stay.
- INT8 for TensorRT (`model.int8.onnx`): ModelOpt's ONNX quantization, symmetric Q/DQ placed the
  way TensorRT fuses it, FP16 elsewhere; a strongly typed TensorRT network takes its precision
  from these nodes.
- INT8 for ONNX Runtime CPU (`model.int8-cpu.onnx`): `onnxruntime.quantization.quantize_static`,
  QDQ, per-channel INT8 weights and UINT8 activations on every Conv, the form ONNX Runtime's CPU
  kernels fuse into integer convolutions. (ModelOpt's graph runs slower than FP32 there.)

Calibration images are read with `segrt.image.read_image` and fed exactly as the runtime feeds the
graph, one image per batch at its own size: a fused graph gets the uint8 1 x H x W x 3 image, an
unfused one `segrt.image.preprocess` of it. One image per batch needs no common size, so the
resize inside the fused graph sees real camera shapes, and memory stays that of one image.

ModelOpt runs in a child process: its quantizer patches ONNX Runtime's quantization module
process-wide, which would change what `quantize_static` computes later in the same process.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segexport.defaults import AUTOCAST_IMAGES
from segexport.onnx.tail import half_tail
from segexport.precision.calib_methods import method_for
from segexport.precision.calibration import NpzCalibrationReader, write_calibration_npz
from segexport.request import keep_fp32_regexes
from segrt.errors import MissingDependency, SegError, first_line
from segrt.meta import ModelCard, artifact_name, file_sha256
from segrt.precisions import PRECISIONS as PRECISION_ROWS

if TYPE_CHECKING:
    from segexport.parity import Parity

PRECISIONS = tuple(name for name in PRECISION_ROWS if name != "fp32")  # the graphs a pass writes
PASS_TITLES = {
    "fp16": "FP16 mixed precision (ModelOpt AutoCast)",
    "int8": "INT8 Q/DQ for TensorRT (ModelOpt, {method} calibration)",
    "int8-cpu": "INT8 Q/DQ for ONNX Runtime CPU (quantize_static, {method} calibration)",
}
_ORT_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}  # CalibrationMethod members
_MODELOPT_INSTALL = "install the exporter's extra: pip install 'segexport[export]' (nvidia-modelopt and its ONNX tools)"
_KEEP_FP32_FIX = (
    "keep the sensitive nodes in FP32 with --keep-fp32 REGEX (node names of the FP32 graph, for instance "
    "the last classifier Conv), or lower --min-agreement if you accept it"
)


@dataclass(frozen=True)
class PrecisionResult:
    """One written graph: where, how it compares with FP32 on the photo, what the pass did."""

    precision: str
    path: Path
    parity: Parity
    summary: str  # e.g. "141/150 nodes FP16" or "55 Conv quantized"


# --- node selection ----------------------------------------------------------------------------------


def match_nodes(model_proto: Any, patterns: Sequence[str]) -> list[str]:
    """Names of the nodes matching any of the `patterns` (regular expressions, `re.search`).

    A pattern that is not a valid regex, or that matches no node, is a SegError: a
    typo would otherwise silently keep nothing in FP32.
    """
    names = [node.name for node in model_proto.graph.node]
    layers = [n.name for n in model_proto.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")]
    matched: list[str] = []
    for pattern, regex in zip(patterns, keep_fp32_regexes(patterns), strict=True):
        hits = [name for name in names if regex.search(name)]
        if not hits:
            examples = ", ".join(layers[-3:] or names[-3:])
            raise SegError(f"--keep-fp32 {pattern!r}: matches no node of the graph (its last layers: {examples})")
        matched.extend(name for name in hits if name not in matched)
    return matched


def _exact(names: Sequence[str]) -> list[str]:
    """Node names as the anchored regexes ModelOpt's `nodes_to_exclude` takes (it uses `re.match`)."""
    return [re.escape(name) + "$" for name in names]


# --- the passes ----------------------------------------------------------------------------------------


def _run_modelopt(step: str, verbose: bool = False, **options: Any) -> None:
    """Run a ModelOpt step (`python -m segexport.precision.passes STEP OPTIONS`) in a fresh process; see the module
    docstring.

    A plain subprocess, not multiprocessing: spawn would re-run a caller's unguarded script.
    Its output is shown with `verbose`, else dropped; a failure raises with its last error line.
    """
    import json
    import subprocess
    import sys

    command = [sys.executable, "-m", "segexport.precision.passes", step, json.dumps(options)]
    quiet = subprocess.DEVNULL
    result = subprocess.run(
        command, stdout=None if verbose else quiet, stderr=None if verbose else subprocess.PIPE, text=True
    )
    if result.returncode != 0:
        lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
        raise _ChildFailed(lines[-1] if lines else f"exit code {result.returncode}, see the log above")


class _ChildFailed(RuntimeError):
    """The ModelOpt process failed; the message is its last error line (already 'Type: text')."""


def _child_main(argv: Sequence[str]) -> None:
    """Entry of the ModelOpt process: `STEP JSON-OPTIONS`."""
    import json

    import onnxruntime

    step, options = argv[0], json.loads(argv[1])
    onnxruntime.set_default_logger_severity(3)  # one warning per Q/DQ constant otherwise
    if step == "autocast":
        _autocast_child(**options)
    elif step == "int8":
        _modelopt_int8_child(**options)
    else:
        raise SystemExit(f"unknown step {step!r}")


def _autocast_child(source: str, target: str, npz_dir: str, keep: list[str]) -> None:
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    converted = convert_to_mixed_precision(
        source,
        low_precision_type="fp16",
        nodes_to_exclude=_exact(keep) or None,
        keep_io_types=True,
        calibration_data=npz_dir,
        providers=["cpu"],
    )
    onnx.save(converted, target)


def _modelopt_int8_child(source: str, target: str, npz_files: list[str], keep: list[str], method: str) -> None:
    from modelopt.onnx.quantization import quantize

    quantize(
        source,
        quantize_mode="int8",
        calibration_data_reader=NpzCalibrationReader(npz_files),
        calibration_method="max" if method == "minmax" else method,  # ModelOpt's name for symmetric MinMax
        calibration_eps=["cpu"],
        nodes_to_exclude=_exact(keep),
        high_precision_dtype="fp16",
        output_path=target,
    )


def _require_modelopt() -> str:
    import importlib.util
    from importlib import metadata

    if importlib.util.find_spec("modelopt") is None:
        raise MissingDependency(f"nvidia-modelopt is not installed; {_MODELOPT_INSTALL}")
    return metadata.version("nvidia-modelopt")


def convert_fp16(
    fp32_path: Path, npz_files: Sequence[Path], scratch: Path, *, keep_fp32: Sequence[str] = (), verbose: bool = False
) -> Any:
    """FP32 ONNX -> FP16 mixed-precision `onnx.ModelProto` (AutoCast), I/O types kept.

    AutoCast runs the graph on AUTOCAST_IMAGES of `npz_files` (first and last, spread) to find
    nodes whose values do not fit FP16; its own random inputs would not do for a uint8
    image input. `keep_fp32` names nodes (exact names) to keep in FP32.
    """
    import shutil

    import onnx

    _require_modelopt()
    npz_dir = scratch / "autocast-inputs"
    npz_dir.mkdir(exist_ok=True)
    spread = np.unique(np.linspace(0, len(npz_files) - 1, min(AUTOCAST_IMAGES, len(npz_files))).round().astype(int))
    for index in spread:
        shutil.copy(npz_files[index], npz_dir / npz_files[index].name)
    target = scratch / "fp16.onnx"
    _guarded(
        "AutoCast",
        fp32_path,
        _run_modelopt,
        "autocast",
        verbose=verbose,
        source=str(fp32_path),
        target=str(target),
        npz_dir=str(npz_dir),
        keep=list(keep_fp32),
    )
    return half_tail(onnx.load(str(target)))


def quantize_int8_tensorrt(
    fp32_path: Path,
    npz_files: Sequence[Path],
    scratch: Path,
    *,
    keep_fp32: Sequence[str] = (),
    verbose: bool = False,
    calib_method: str | None = None,
) -> Any:
    """FP32 ONNX -> INT8 Q/DQ `onnx.ModelProto` for TensorRT (ModelOpt: symmetric, FP16 elsewhere), calibrated with
    `calib_method` ("entropy" or "minmax"; None: entropy, `calib_methods.CALIB_METHODS`).

    ModelOpt writes intermediate files beside its input, so it gets a copy in `scratch`.
    """
    import shutil

    import onnx

    _require_modelopt()
    source = scratch / "int8-source.onnx"
    shutil.copy(fp32_path, source)
    target = scratch / "int8.onnx"
    _guarded(
        "ModelOpt quantization",
        fp32_path,
        _run_modelopt,
        "int8",
        verbose=verbose,
        source=str(source),
        target=str(target),
        npz_files=[str(p) for p in npz_files],
        keep=list(keep_fp32),
        method=method_for(calib_method, "int8"),
    )
    return onnx.load(str(target))


def quantize_int8_cpu(
    fp32_path: Path,
    npz_files: Sequence[Path],
    scratch: Path,
    *,
    keep_fp32: Sequence[str] = (),
    verbose: bool = False,
    calib_method: str | None = None,
) -> Any:
    """FP32 ONNX -> INT8 QDQ `onnx.ModelProto` for ONNX Runtime's CPU provider.

    Every Conv: per-channel symmetric INT8 weights, UINT8 activations (the U8S8 form
    ONNX Runtime's x86 and ARM kernels run fastest), ranges collected image by image with `calib_method`
    ("minmax", "entropy", "percentile"; None: minmax).
    """
    import contextlib
    import io
    import logging

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    target = scratch / "int8-cpu.onnx"
    root = logging.getLogger()
    level = root.level
    if not verbose:  # quantize_static logs a pre-processing hint on the root logger; our graph is already slimmed
        root.setLevel(logging.ERROR)
    # its histogram calibrators (entropy, percentile) print their settings on stdout, where segexport prints nothing
    quiet = contextlib.redirect_stdout(io.StringIO()) if not verbose else contextlib.nullcontext()
    try:
        with quiet:
            _guarded(
                "ONNX Runtime quantization",
                fp32_path,
                quantize_static,
                str(fp32_path),
                str(target),
                NpzCalibrationReader(npz_files),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv"],
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(keep_fp32),
                calibrate_method=getattr(CalibrationMethod, _ORT_METHODS[method_for(calib_method, "int8-cpu")]),
                extra_options={"CalibStridedMinMax": 1},
            )
    finally:
        root.setLevel(level)
    return onnx.load(str(target))


def _guarded(tool: str, model_path: Path, function: Any, /, *args: Any, **kwargs: Any) -> None:
    """Call a third-party pass; its failure becomes one SegError line naming the file and the tool."""
    try:
        function(*args, **kwargs)
    except SegError:
        raise
    except Exception as exc:
        reason = first_line(exc, with_type=not isinstance(exc, _ChildFailed))
        raise SegError(
            f"{model_path}: {tool} failed ({reason}); try --keep-fp32 on the node it names, or report it with the model"
        ) from exc


# --- checks, cards, files --------------------------------------------------------------------------------


def graph_opset(model_proto: Any) -> int:
    return next(entry.version for entry in model_proto.opset_import if entry.domain in ("", "ai.onnx"))


def summarize(model_proto: Any, precision: str) -> str:
    """What a pass changed, in a few words: "141/150 nodes FP16" or "12/15 Conv INT8"."""
    import onnx

    nodes = [n for n in model_proto.graph.node if n.op_type not in ("Cast", "QuantizeLinear", "DequantizeLinear")]
    if precision == "fp16":
        inferred = onnx.shape_inference.infer_shapes(model_proto)
        types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
        types.update({v.name: v.type.tensor_type.elem_type for v in inferred.graph.output})
        half = sum(1 for n in nodes if n.output and types.get(n.output[0]) == onnx.TensorProto.FLOAT16)
        return f"{half}/{len(nodes)} nodes FP16"
    dequantized = {n.output[0] for n in model_proto.graph.node if n.op_type == "DequantizeLinear"}
    parts = []
    for op in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
        total = [n for n in nodes if n.op_type == op]
        quantized = [n for n in total if n.input and n.input[0] in dequantized]
        if total:
            parts.append(f"{len(quantized)}/{len(total)} {op}")
    return ", ".join(parts) + " INT8" if parts else "no Conv, Gemm or MatMul to quantize"


def make_card(card: ModelCard, precision: str, model_proto: Any, source_sha256: str) -> ModelCard:
    """The FP32 card with the precision, the opset the pass produced and the source's sha256."""
    from segexport.onnx.export import package_versions

    versions = dict(card.versions)
    versions.update(package_versions())
    if precision in ("fp16", "int8"):
        versions["nvidia-modelopt"] = _require_modelopt()
    return card.replace(
        precision=precision, opset=graph_opset(model_proto), source_sha256=source_sha256, versions=versions
    )


def calibration_record(precision: str, calib_method: str | None, images: int) -> dict[str, Any]:
    """The card's `checks.calibration` of an INT8 graph: how its ranges were set, on how many images, and the
    flag that sets them the same way again."""
    from segexport.precision.calib_methods import PASS_NAMES, method_flags

    method = method_for(calib_method, precision)
    return {"method": method, "pass": PASS_NAMES[precision], "images": images, "rebuild_flags": method_flags(method)}


def make_precision_graph(
    precision: str,
    fp32_path: str | os.PathLike[str],
    image: np.ndarray,
    *,
    calib_images: Sequence[np.ndarray] = (),
    keep_fp32: Sequence[str] = (),
    min_agreement: float | None = None,
    out: str | os.PathLike[str] | None = None,
    verbose: bool = False,
    calib_method: str | None = None,
) -> PrecisionResult:
    """Convert the FP32 graph at `fp32_path` to `precision` ("fp16", "int8", "int8-cpu"), check it, write it.

    `calib_images`: uint8 H x W x 3 arrays (INT8 needs them; FP16 uses up to
    AUTOCAST_IMAGES of them, or `image` when none are given). The result is compared
    with FP32 on `image` on ONNX Runtime CPU; below `min_agreement` (default
    the precision's row in segrt.precisions) a SegError names --keep-fp32 and nothing is written.
    Otherwise `<out>/model.<precision>.onnx` is written atomically with its model card
    (embedded and as the sidecar). `keep_fp32`: regexes of node names kept in FP32. `calib_method`: how INT8
    sets its ranges (`calib_methods.CALIB_METHODS`; None: the pass's own), recorded in the card.
    """
    from segexport.onnx.export import save_onnx
    from segexport.parity import check_agreement, compare_with_fp32
    from segrt.meta import read_card

    if precision not in PRECISIONS:
        raise SegError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    fp32_path = Path(fp32_path)
    card = read_card(fp32_path)
    if card.precision != "fp32":
        raise SegError(f"{fp32_path}: is a {card.precision} graph; convert the FP32 model.onnx instead")
    if precision != "fp16" and not calib_images:
        raise SegError(f"{precision} needs calibration images: pass --calib DIR, a folder of images like the model's")
    import onnx

    keep = match_nodes(onnx.load(str(fp32_path), load_external_data=False), keep_fp32)
    folder = Path(out) if out is not None else fp32_path.parent
    target = folder / artifact_name("model", precision)
    minimum = PRECISION_ROWS[precision].min_agreement if min_agreement is None else min_agreement
    with tempfile.TemporaryDirectory(prefix=".segexport-precision-", dir=folder) as scratch_name:
        scratch = Path(scratch_name)
        npz_files = write_calibration_npz(list(calib_images) or [image], card, scratch / "calib")
        if precision == "fp16":
            proto = convert_fp16(fp32_path, npz_files, scratch, keep_fp32=keep, verbose=verbose)
        else:
            quantize = quantize_int8_tensorrt if precision == "int8" else quantize_int8_cpu
            proto = quantize(fp32_path, npz_files, scratch, keep_fp32=keep, verbose=verbose, calib_method=calib_method)
    parity = compare_with_fp32(proto, precision, fp32_path, image, card)
    check_agreement(parity, minimum, f"{target} was not written", _KEEP_FP32_FIX)
    new_card = make_card(card, precision, proto, file_sha256(fp32_path))
    checks = {"parity": parity.record(f"{Path(fp32_path).name} on ONNX Runtime CPU", "the --image photo")}
    if precision != "fp16":
        checks["calibration"] = calibration_record(precision, calib_method, len(npz_files))
    save_onnx(proto, target, new_card.replace(checks=checks))
    return PrecisionResult(precision=precision, path=target, parity=parity, summary=summarize(proto, precision))


if __name__ == "__main__":
    import sys

    _child_main(sys.argv[1:])
