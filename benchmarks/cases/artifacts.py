"""The files a case runs: exported on demand with segexport into a cache folder, and whether a backend is here.

One folder per model and graph kind (fused or --no-fuse), named from the segexport
arguments and a fingerprint of the exporter (its source and the versions of the tools it
calls), so a second run reuses the exports and a changed exporter never does. Calibrated
files (INT8 always, FP16 where the model names calibration images) land in a subfolder named
from their calibration (the bytes of the images segexport picks, and their count), so a graph
calibrated on other data is never reused; an FP16 file without calibration images lands
beside model.onnx, under the names segrt.meta.artifact_name gives them. A step that cannot be
done raises SegError with the reason: MissingDependency where this machine lacks a piece
(no TensorRT, no GPU; the case is skipped), SegError where the export itself failed (a
failed parity check, an exporter error; the case failed).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from segbench.cases.budgeted import budget_key, budget_options
from segbench.cases.suite import Case, ModelSpec
from segbench.cases.suite_keys import BASELINE
from segbench.measure.machine import tensorrt_version
from segbench.scoring.held_out import first_shared_image
from segrt.backends import BACKENDS as BACKEND_ROWS
from segrt.errors import MissingDependency, SegError
from segrt.precisions import PRECISIONS

if TYPE_CHECKING:
    from segexport.request import ExportRequest, PrecisionOptions


def calibrates(precision: str, model: ModelSpec) -> bool:
    """Whether a case's graph is made from calibration images: a calibrated precision always (the precision
    table's `calibrated`), FP16 where the model names some (AutoCast picks the nodes kept in FP32 on them, not
    on the photo the case is scored on)."""
    return PRECISIONS[precision].calibrated or (precision == "fp16" and model.calib is not None)


def unavailable_reason(case: Case) -> str | None:
    """Why this machine cannot run the case's backend, or None when it can."""
    if case.is_baseline:
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed; install the benchmark extra: pip install 'segexport[bench]'"
        return None if case.device == "cpu" else _cuda_reason()
    if BACKEND_ROWS[case.backend].runs == "engine":
        return _tensorrt_reason()
    from segrt.backends.onnxruntime import available_backends

    if case.backend not in available_backends():
        row = BACKEND_ROWS[case.backend]
        return f"this onnxruntime has no {row.providers[0]}; install {row.needs}"
    return None


@cache
def _cuda_reason() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device: torch.cuda.is_available() is False on this machine"
    return None


@cache
def _tensorrt_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed; install it with pip install 'segexport[tensorrt]' (JetPack ships it)"
    from segrt.backends.tensorrt import gpu_info

    try:
        gpu_info(0)
    except SegError as exc:  # no cuda-python, no driver, no GPU: the backend's own sentence
        return str(exc)
    return None


@dataclass
class ExportCache:
    """Exports models into `root` once and remembers what failed, so a failure costs one try."""

    root: Path
    log: TextIO | None = None
    failures: dict[str, SegError] = field(default_factory=dict)  # MissingDependency stays one: a skip, not a failure
    calibration_keys: dict[tuple[Path | None, int | None, str], str] = field(default_factory=dict)
    named: set[Path] = field(default_factory=set)  # files made earlier already named in the log

    def folder(self, model: ModelSpec, *, fused: bool, confidence: bool = False) -> Path:
        options = json.dumps([model.name, model.export_options(), exporter_fingerprint()], sort_keys=True)
        key = hashlib.sha256(options.encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.name)
        return self.root / f"{slug}-{key}{'' if fused else '-unfused'}{'-confidence' if confidence else ''}"

    def model_file(
        self,
        model: ModelSpec,
        *,
        backend: str,
        precision: str,
        fused: bool,
        shape: tuple[int, int, int],
        max_miou_drop: float | None = None,
        confidence: bool = False,
    ) -> Path:
        """The file `segrt.load` opens for this case (NxHxW `shape`), exported first where it is missing.

        TensorRT engines are built per case shape with a static profile (min = opt = max),
        the fastest engine for that shape, in a subfolder beside their ONNX graph.
        """
        if backend == BASELINE:
            raise ValueError("the PyTorch baseline has no exported file")
        from segexport.engine.profile import ShapeRange
        from segexport.request import BuildOptions, EngineOptions, ExportRequest, ModelOptions, OnnxOptions
        from segrt.meta import artifact_name
        from segrt.precisions import graph_for

        folder = self.folder(model, fused=fused, confidence=confidence)
        fp32 = folder / "model.onnx"
        onnx_options = OnnxOptions(fuse=fused, confidence=confidence, out=folder)
        self._once(fp32, ExportRequest(model=model.options, onnx=onnx_options))
        flavour = graph_for(precision, on_ort_cpu=BACKEND_ROWS[backend].on_ort_cpu).name
        graphs = folder / f"calib-{self.calibration_key(model)}" if calibrates(precision, model) else folder
        budget = budget_options(model, max_miou_drop)  # a budgeted graph has a folder of its own
        graphs = graphs / budget_key(budget, model) if budget.wanted else graphs
        onnx = graphs / artifact_name("model", flavour)
        if precision != "fp32":
            graph = ExportRequest(
                model=ModelOptions(str(fp32)),
                onnx=OnnxOptions(out=graphs),
                precision=_precision_options(flavour, model),
                budget=budget,
            )
            self._once(onnx, graph)
        if BACKEND_ROWS[backend].runs != "engine":
            return onnx
        size = "x".join(map(str, shape))
        engines = graphs / f"engines-{size}"  # an INT8 engine lives with the calibration it came from
        build = BuildOptions(shapes=ShapeRange(shape, shape, shape), timing_cache=self.root / "tensorrt.timing-cache")
        engine = engines / artifact_name("model", precision, engine=True)
        request = ExportRequest(
            model=ModelOptions(str(onnx)), onnx=OnnxOptions(out=engines), engine=EngineOptions(("fp32",), build=build)
        )
        self._once(engine, request)
        return engine

    def calibration_key(self, model: ModelSpec) -> str:
        """A hash of the images calibration reads (their bytes) and how many: the calibrated files' folder name."""
        memo = (model.calib, model.calib_count, model.name)
        if memo not in self.calibration_keys:
            digest = hashlib.sha256(f"calib_count={model.calib_count}".encode())
            for path in calibration_files(model):
                digest.update(hashlib.sha256(path.read_bytes()).digest())
            self.calibration_keys[memo] = digest.hexdigest()[:10]
        return self.calibration_keys[memo]

    def name_in_log(self, path: Path, origin: str) -> None:
        """Say once in the log that `path` was made earlier, and by what: the log names every file a run used."""
        if self.log and path not in self.named:
            self.named.add(path)
            self.log.write(f"reused {path} ({origin})\n")
            self.log.flush()

    def _once(self, target: Path, request: ExportRequest) -> None:
        if target.is_file():
            self.name_in_log(target, "made by an earlier run into this cache")
            return
        key = str(target)
        if key not in self.failures:
            try:
                run_export(request, self.log)
                if not target.is_file():
                    raise SegError(f"segexport {describe_request(request)} finished without writing {target.name}")
            except SegError as exc:
                self.failures[key] = exc
        if key in self.failures:
            failure = self.failures[key]
            raise type(failure)(str(failure))


EXPORT_TOOLS = ("torch", "torchvision", "onnx", "onnxslim", "onnxruntime", "nvidia-modelopt")  # and TensorRT


@cache
def exporter_fingerprint() -> str:
    """A hash of what decides an export's bytes: the segexport/segrt sources and the installed tool versions."""
    from importlib import metadata

    digest = hashlib.sha256()
    for package in ("segexport", "segrt"):
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations is not None
        folder = Path(next(iter(spec.submodule_search_locations)))
        for source in sorted(folder.rglob("*.py")):
            digest.update(source.relative_to(folder).as_posix().encode())
            digest.update(source.read_bytes())
    for tool in EXPORT_TOOLS:
        try:
            digest.update(f"{tool}=={metadata.version(tool)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{tool} absent".encode())
    digest.update(f"tensorrt=={tensorrt_version()}".encode())  # whichever wheel (or JetPack) installed it
    return digest.hexdigest()


def _precision_options(flavour: str, model: ModelSpec) -> PrecisionOptions:
    """The precision options writing one graph: fp16, int8 (TensorRT Q/DQ) or int8-cpu."""
    from segexport.defaults import DEFAULT_CALIB_COUNT
    from segexport.request import PrecisionOptions

    count = model.calib_count or DEFAULT_CALIB_COUNT
    if flavour == "fp16":  # AutoCast on the model's calib images where it names some, else on the photo
        return PrecisionOptions(("fp16",), calib=model.calib, calib_count=count if model.calib else DEFAULT_CALIB_COUNT)
    return PrecisionOptions((flavour,), calib=calibration_source(model), calib_count=count)


def calibration_source(model: ModelSpec) -> Path:
    """The model's calib folder or list; without one, the folder of its own sample image (or of the bundled photo)."""
    from segexport.defaults import parity_image

    return model.calib or parity_image(model.name).parent


def calibration_files(model: ModelSpec) -> list[Path]:
    """The image files segexport's INT8 calibration reads for this model: the very selection it makes."""
    from segexport.defaults import DEFAULT_CALIB_COUNT
    from segexport.precision.calibration import find_calibration_images

    return find_calibration_images(calibration_source(model), model.calib_count or DEFAULT_CALIB_COUNT)


def check_calibration(model: ModelSpec, evaluated: list[Path], where: str) -> None:
    """Refuse INT8 calibration that reads an image the run scores on (the agreement photo, a val image).

    Calibrating on the evaluation image makes INT8 look better than it is on any other
    frame. Compared by content, so a copy under another name is caught too.
    """
    hint = (
        "the shipped suites calibrate on the generated shapes train split (python -m segbench.data.shapes build/shapes)"
    )
    try:
        files = calibration_files(model)
    except SegError as exc:
        raise SegError(f"{where}: {model.label}: INT8 calibration: {exc}; {hint}") from None
    shared = first_shared_image(files, evaluated)
    if shared is not None:
        path, image = shared
        raise SegError(
            f"{where}: {model.label}: INT8 calibration ({calibration_source(model)}) includes {path.name}, the "
            f"image {image} this run scores on; give calib = (--calib) images the run does not score, e.g. {hint}"
        )


def describe_request(request: ExportRequest) -> str:
    """A request in a few words, for the export log: what it reads and what it writes where."""
    parts = [request.model.name, *(f"--{name}" for name in request.precision.graphs)]
    if request.budget.max_miou_drop is not None:
        parts += ["--max-miou-drop", f"{request.budget.max_miou_drop:g}", "--val", str(request.budget.val)]
    if request.engine.sources:
        parts.append("--engine")
    if not request.onnx.fuse:
        parts.append("--no-fuse")
    return " ".join([*parts, "->", str(request.onnx.out)])


def run_export(request: ExportRequest, log: TextIO | None = None) -> None:
    """Run one export in this process through segexport's API, its progress going to `log`; SegError says why
    it failed."""
    try:
        from rich.console import Console

        from segexport import export
        from segexport.progress import Report
    except ImportError as exc:
        raise MissingDependency(
            f"segbench exports its cases with segexport, which needs torch ({exc}); "
            f"install the benchmark extra: pip install 'segexport[bench]'"
        ) from None
    console: Any = Console(file=log, width=120, no_color=True) if log else Console(quiet=True)
    if log:
        console.rule(f"segexport {describe_request(request)}")
    report = Report(console)
    export(request, report)
    report.print_summary()
