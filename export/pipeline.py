"""`segexport.export(request)`: the chain behind the `segexport` command, one small step after another.

build the model -> export the fused (or plain) FP32 ONNX graph, check it against PyTorch, write it
-> write the FP16 / INT8 graphs, each checked against FP32 -> build engines, each checked against
its graph -> write a Triton model repository. Every request is checked before any work is done;
each step's file is written under a temporary name and renamed, so a refusal leaves nothing half
written.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segexport.defaults import parity_image
from segexport.engine import step as engines
from segexport.extras import require_exporter
from segexport.precision.budget import budgeted_graph, check_budget, check_val_classes, prepare_budget
from segexport.progress import Report
from segexport.request import ExportRequest, ExportResult, check_model_options, check_precision_options
from segexport.triton.step import check_triton_options, write_triton
from segrt import ENGINE_SUFFIXES
from segrt.errors import SegError
from segrt.files import output_folder_lock, prepare_output_folder
from segrt.meta import ModelCard, read_card, sidecar_path
from segrt.precisions import PRECISIONS

if TYPE_CHECKING:
    import numpy as np

    from segexport.models.base import SegmentationModel

DEFAULT_FP32_OUT = Path("build")  # ./build/<model>/ when no output folder is given


def check_request(request: ExportRequest) -> None:
    """Refuse a request before any work is done (nothing is written for a refused request): the flags' values and
    combinations first, then what this install lacks (one sentence, exit 3), then what the files named hold."""
    engine_model = Path(request.model.name).suffix in ENGINE_SUFFIXES
    if engine_model and request.triton.repository is None:
        raise SegError(
            f"{request.model.name}: an engine is checked on its GPU with --check, built again with --rebuild, "
            f"or served with --triton REPO"
        )
    check_model_options(request.model, request.onnx)
    check_precision_options(request.precision)
    engines.check_engine_options(request.engine)
    nothing_asked = request.model.from_onnx and not (
        request.engine.sources or request.precision.graphs or request.triton.repository
    )
    checked = not request.model.from_onnx or request.engine.sources or request.precision.graphs
    for flag, given in (("--image", request.onnx.image), ("--min-agreement", request.min_agreement)):
        if given is not None and not checked and not nothing_asked:
            raise SegError(f"{flag} applies to the parity checks, and this run checks no graph or engine; drop it")
    check_budget(request.budget, request.precision.graphs)
    if not engine_model:
        require_exporter(request)  # torch and the ONNX tools where a step needs them: one sentence, exit 3
    if request.precision.calib is not None:
        from segexport.precision.calibration import find_calibration_images

        # a list that cannot be read fails before any work
        find_calibration_images(request.precision.calib, request.precision.calib_count)
    if not (engine_model or request.model.from_onnx):
        from segexport.onnx.export import check_opset

        check_opset(request.onnx.opset)
    check_triton_options(request.triton, request.model.name, request.engine)  # makes REPO where one is asked
    if nothing_asked:
        raise SegError(f"{request.model.name}: nothing to do for an ONNX file without --fp16, --int8 or --engine")


def export(request: ExportRequest, report: Report | None = None) -> ExportResult:
    """Run `request`: write and check every file it asks for; returns what was written.

    `report` shows progress (the CLI's goes to the terminal; the default shows nothing). The output folder is
    locked for the run (segrt.files.output_folder_lock): another export or segrun writing there is refused. Raises
    SegError naming the file or option and the fix, MissingDependency before any work where the exporter's
    packages are missing and after the ONNX files are written where an engine needs a library or GPU this machine
    lacks, KeyboardInterrupt on Ctrl-C.
    """
    with contextlib.ExitStack() as held:  # the output folder, locked for the run: one writer at a time
        return _export(request, report or Report.quiet(), held)


def _export(request: ExportRequest, report: Report, held: contextlib.ExitStack) -> ExportResult:
    from segrt.image import read_image

    check_request(request)
    source = Path(request.model.name)
    if request.triton.repository is not None and source.suffix in ENGINE_SUFFIXES:
        folders = write_triton(request.triton, [source], report)  # an engine: only its repository to write
        return ExportResult(folder=source.parent, triton=folders, files=list(report.files))
    card = _source_card(source) if request.model.from_onnx else None
    if card is not None:
        check_val_classes(request.budget, card.classes)
    image_path = request.onnx.image or parity_image(card.model if card else request.model.name)
    image = read_image(image_path)
    # the output folder proved writable before the model is built (./build where the model's name decides it)
    out = prepare_output_folder(request.onnx.out or (source.parent if card else DEFAULT_FP32_OUT), "--out")
    if card is not None:
        held.enter_context(output_folder_lock(out, "--out"))
        fp32 = source
    else:
        model = _build_model(request, report)
        check_val_classes(request.budget, model.classes)  # before model.onnx is written
        out = prepare_output_folder(request.onnx.out or DEFAULT_FP32_OUT / model.name, "--out")
        held.enter_context(output_folder_lock(out, "--out"))
        fp32, card = write_fp32_graph(request, model, out, image, image_path.name, report)
    result = ExportResult(folder=out, graphs={"fp32": fp32})
    result.graphs.update(write_precision_graphs(request, fp32, image, out, report))
    try:
        result.engines = engines.build_engines(
            request.engine, result.graphs, image, image_path.name, out, report, request.min_agreement
        )
    finally:
        result.files = list(report.files)
    written = [source, *report.files] if request.model.from_onnx else report.files
    result.triton = write_triton(request.triton, written, report)
    result.files = list(report.files)
    return result


def _source_card(source: Path) -> ModelCard:
    if not source.is_file():
        raise SegError(f"{source}: no such ONNX file")
    return read_card(source)


def _build_model(request: ExportRequest, report: Report) -> SegmentationModel:
    from segexport.models.zoo import build

    with report.step(f"build {request.model.name}") as detail:
        model = build(request.model)
        size = "x".join(map(str, model.input_size))
        kind = f"one class, {model.classes[1]!r} where sigmoid > {model.threshold:g}" if model.threshold else ""
        detail["text"] = f"{kind or f'{len(model.classes)} classes'}, input {size} ({model.resize})"
    return model


def write_fp32_graph(
    request: ExportRequest, model: SegmentationModel, out: Path, image: np.ndarray, image_name: str, report: Report
) -> tuple[Path, ModelCard]:
    """Export, check, simplify, parity-check and write model.onnx with its card."""
    from segexport import parity
    from segexport.onnx import export as onnx_export

    fused = request.onnx.fuse
    opset = request.onnx.opset or onnx_export.DEFAULT_OPSET
    minimum = PRECISIONS["fp32"].min_agreement if request.min_agreement is None else request.min_agreement
    with report.step(f"export {model.name} to ONNX (opset {opset}, {'fused' if fused else 'unfused'})") as detail:
        with tempfile.TemporaryDirectory(prefix=".segexport-", dir=out) as scratch:
            proto = onnx_export.export_onnx(
                model, Path(scratch) / "raw.onnx", sample=image, fused=fused, opset=opset,
                confidence=request.onnx.confidence,
            )  # fmt: skip
        detail["text"] = "; ".join(model.notes)
    with report.step("check, infer shapes, simplify (onnxslim)") as detail:
        before = len(proto.graph.node)
        proto = onnx_export.check_and_simplify(proto)
        detail["text"] = f"{before} -> {len(proto.graph.node)} nodes"
    card = model.card(
        fused=fused,
        opset=opset,
        input_name=proto.graph.input[0].name,
        output_name=proto.graph.output[0].name,
        confidence_name=onnx_export.CONFIDENCE_NAME if request.onnx.confidence else None,
        versions=onnx_export.package_versions(),
    )
    with report.step(f"parity: ONNX Runtime vs PyTorch on {image_name}") as detail:
        result = parity.check_parity(proto, model, image, card)
        diff = f"max |logit diff| {result.max_abs_logit_diff:.2e}, " if result.max_abs_logit_diff is not None else ""
        detail["text"] = f"{diff}label agreement {100 * result.agreement:.3f} %{result.confidence_text()}"
    path = out / "model.onnx"
    parity.check_agreement(
        result,
        minimum,
        f"{path} was not written",
        "the export changed the model's answers; report it with the model, or lower --min-agreement if you accept it",
    )
    card = card.replace(checks={"parity": result.record("PyTorch (eager, CPU)", image_name)})
    with report.step("write model.onnx and its model card"):
        onnx_export.save_onnx(proto, path, card)
    report.add_file(path)
    report.add_file(sidecar_path(path))
    return path, card


def write_precision_graphs(
    request: ExportRequest, fp32: Path, image: np.ndarray, out: Path, report: Report
) -> dict[str, Path]:
    """Write the FP16 / INT8 graphs the request asks for; returns {precision: ONNX path}."""
    options = request.precision
    if not options.graphs:
        return {}
    from segexport.precision import passes as precision
    from segexport.precision.calib_methods import CALIB_METHODS, method_for
    from segexport.precision.calibration import read_calibration_images

    calib_images: list[Any] = []
    if options.calib is not None:
        with report.step(f"read calibration images from {options.calib}") as detail:
            calib_images, unreadable = read_calibration_images(options.calib, options.calib_count)
            sizes = {f"{im.shape[1]}x{im.shape[0]}" for im in calib_images}
            detail["text"] = f"{len(calib_images)} images, {len(sizes)} size(s)" + (
                f"; {len(unreadable)} unreadable skipped (first: {unreadable[0].name})" if unreadable else ""
            )
    graphs = {}
    budget = prepare_budget(request, fp32, read_card(fp32), image, calib_images, report)
    for name in options.graphs:
        if budget is not None:  # the accuracy budget chooses the nodes kept: export/precision/budget.py
            path = budgeted_graph(budget, name, out, report).path
            graphs[name] = path
            report.add_file(path)
            report.add_file(sidecar_path(path))
            continue
        method = method_for(options.calib_method, name) if name in CALIB_METHODS else ""
        with report.step(precision.PASS_TITLES[name].format(method=method)) as detail:
            result = precision.make_precision_graph(
                name,
                fp32,
                image,
                calib_images=calib_images,
                keep_fp32=options.keep_fp32,
                min_agreement=request.min_agreement,
                out=out,
                verbose=request.verbose > 0,
                calib_method=options.calib_method,
            )
            detail["text"] = f"{result.summary}; label agreement with FP32 {100 * result.parity.agreement:.3f} %"
        graphs[name] = result.path
        report.add_file(result.path)
        report.add_file(sidecar_path(result.path))
    return graphs
