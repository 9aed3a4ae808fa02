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
from typing import Any, TextIO

from segbench.budgeted import budget_flags, budget_key
from segbench.machine import tensorrt_version
from segbench.suite import BASELINE, Case, ModelSpec
from segrt.errors import MissingDependency, SegError


def unavailable_reason(case: Case) -> str | None:
    """Why this machine cannot run the case's backend, or None when it can."""
    if case.is_baseline:
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed; install the benchmark extra: pip install 'segexport[bench]'"
        return None if case.device == "cpu" else _cuda_reason()
    if case.backend == "tensorrt":
        return _tensorrt_reason()
    from segrt.backends.onnxruntime import PROVIDERS, available_backends

    if case.backend not in available_backends():
        return (
            f"this onnxruntime has no {PROVIDERS[case.backend][0]}; install onnxruntime-gpu "
            f"(pip install 'segexport[gpu]') on a machine with an NVIDIA GPU"
        )
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

    def folder(self, model: ModelSpec, *, fused: bool) -> Path:
        key = hashlib.sha256(json.dumps([model.export_args(), exporter_fingerprint()]).encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.name)
        return self.root / f"{slug}-{key}{'' if fused else '-unfused'}"

    def model_file(
        self,
        model: ModelSpec,
        *,
        backend: str,
        precision: str,
        fused: bool,
        shape: tuple[int, int, int],
        max_miou_drop: float | None = None,
    ) -> Path:
        """The file `segrt.load` opens for this case (NxHxW `shape`), exported first where it is missing.

        TensorRT engines are built per case shape with a static profile (min = opt = max),
        the fastest engine for that shape, in a subfolder beside their ONNX graph.
        """
        if backend == BASELINE:
            raise ValueError("the PyTorch baseline has no exported file")
        from segrt.meta import artifact_name

        folder = self.folder(model, fused=fused)
        fp32 = folder / "model.onnx"
        self._once(fp32, [*model.export_args(), *([] if fused else ["--no-fuse"]), "--out", str(folder)])
        flavour = "int8-cpu" if precision == "int8" and backend == "ort-cpu" else precision
        # INT8 always calibrates; FP16 does where the model names calibration images (AutoCast picks the
        # nodes kept in FP32 on them, not on the photo the case is scored on)
        calibrated = precision == "int8" or (precision == "fp16" and model.calib is not None)
        graphs = folder / f"calib-{self.calibration_key(model)}" if calibrated else folder
        budget = budget_flags(model, max_miou_drop)  # a budgeted graph has a folder of its own
        graphs = graphs / budget_key(budget, model) if budget else graphs
        onnx = graphs / artifact_name("model", flavour)
        if precision != "fp32":
            flags = [*_precision_flags(flavour, model), *budget, "--onnx-only", "--out", str(graphs)]
            self._once(onnx, [str(fp32), *flags])
        if backend != "tensorrt":
            return onnx
        size = "x".join(map(str, shape))
        engines = graphs / f"engines-{size}"  # an INT8 engine lives with the calibration it came from
        profile = ["--min-shape", size, "--opt-shape", size, "--max-shape", size]
        timing_cache = ["--timing-cache", str(self.root / "tensorrt.timing-cache")]
        engine = engines / artifact_name("model", precision, engine=True)
        self._once(engine, [str(onnx), "--engine", *profile, *timing_cache, "--out", str(engines)])
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

    def _once(self, target: Path, argv: list[str]) -> None:
        if target.is_file():
            return
        key = str(target)
        if key not in self.failures:
            try:
                run_segexport(argv, self.log)
                if not target.is_file():
                    raise SegError(f"segexport {' '.join(argv)} finished without writing {target.name}")
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


def _precision_flags(flavour: str, model: ModelSpec) -> list[str]:
    """segexport flags writing one precision graph: fp16, int8 (TensorRT Q/DQ) or int8-cpu."""
    count = ["--calib-count", str(model.calib_count)] if model.calib_count else []
    if flavour == "fp16":
        return ["--fp16", *(["--calib", str(model.calib), *count] if model.calib else [])]
    target = ["--int8-target", "cpu" if flavour == "int8-cpu" else "tensorrt"]
    return ["--int8", *target, "--calib", str(calibration_source(model)), *count]


def calibration_source(model: ModelSpec) -> Path:
    """The model's calib folder or list; without one, the folder of its own sample image (or of the bundled photo)."""
    from segexport import parity_image

    return model.calib or parity_image(model.name).parent


def calibration_files(model: ModelSpec) -> list[Path]:
    """The image files segexport's INT8 calibration reads for this model: the very selection it makes."""
    from segexport.precision import DEFAULT_CALIB_COUNT, find_calibration_images

    return find_calibration_images(calibration_source(model), model.calib_count or DEFAULT_CALIB_COUNT)


def check_calibration(model: ModelSpec, evaluated: list[Path], where: str) -> None:
    """Refuse INT8 calibration that reads an image the run scores on (the agreement photo, a val image).

    Calibrating on the evaluation image makes INT8 look better than it is on any other
    frame. Compared by content, so a copy under another name is caught too.
    """
    hint = "the shipped suites calibrate on the generated shapes train split (python -m segbench.shapes build/shapes)"
    try:
        files = calibration_files(model)
    except SegError as exc:
        raise SegError(f"{where}: {model.label}: INT8 calibration: {exc}; {hint}") from None
    scored = {hashlib.sha256(path.read_bytes()).digest(): path for path in evaluated}
    for path in files:
        image = scored.get(hashlib.sha256(path.read_bytes()).digest())
        if image is not None:
            raise SegError(
                f"{where}: {model.label}: INT8 calibration ({calibration_source(model)}) includes {path.name}, the "
                f"image {image} this run scores on; give calib = (--calib) images the run does not score, e.g. {hint}"
            )


def run_segexport(argv: list[str], log: TextIO | None = None) -> None:
    """Run the segexport chain in this process, its progress going to `log`; SegError says why it failed."""
    try:
        from rich.console import Console

        from segexport.cli import build_parser, run
    except ImportError as exc:
        raise MissingDependency(
            f"segbench exports its cases with segexport, which needs torch ({exc}); "
            f"install the benchmark extra: pip install 'segexport[bench]'"
        ) from None
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit:
        raise SegError(f"segexport refused the arguments {' '.join(argv)}") from None
    if unknown:
        raise SegError(f"this segexport has no {' '.join(unknown)} option yet (segexport {' '.join(argv)})")
    console: Any = Console(file=log, width=120, no_color=True) if log else Console(quiet=True)
    if log:
        console.rule(f"segexport {' '.join(argv)}")
    run(args, console)
