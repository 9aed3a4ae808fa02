"""segexport's `--triton REPO` step: its options, their checks before any work, and the repository at the end.

The run's final artefacts go into the repository, one Triton model per precision: the engine where
one was built (or given), else the ONNX graph. `--triton-backend` picks the Triton backend for all.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from segexport.request import TritonOptions
from segexport.triton.repository import write_repository
from segrt import ENGINE_SUFFIXES
from segrt.errors import SegError

if TYPE_CHECKING:
    from segexport.request import EngineOptions


def check_triton_options(options: TritonOptions, model: str, engine: EngineOptions) -> None:
    """Before any work: the options agree (with the engines this run builds too), tritonclient is there (it
    checks config.pbtxt), REPO can be written."""
    if options.repository is None:
        if options.backend is not None:
            raise SegError(f"--triton-backend {options.backend} only applies with --triton REPO")
        return
    source = Path(model)
    if source.suffix in ENGINE_SUFFIXES and options.backend == "onnxruntime":
        raise SegError(f"{source}: the onnxruntime backend serves ONNX files; use --triton-backend tensorrt or python")
    if options.backend == "tensorrt" and source.suffix not in ENGINE_SUFFIXES:
        check_engines_for_tensorrt_backend(engine)
    from segexport.triton.repository import INSTALL
    from segrt.errors import require
    from segrt.files import prepare_output_folder

    require("tritonclient.grpc.model_config_pb2", INSTALL)
    prepare_output_folder(options.repository, "--triton")  # made only for a request that passed the flag checks


def check_engines_for_tensorrt_backend(engine: EngineOptions) -> None:
    """Triton's tensorrt backend serves full-TensorRT engines only: the run must build some, and not with --rtx."""
    if not engine.sources:
        raise SegError(
            "--triton-backend tensorrt serves engines and this run builds none: add --engine, or use "
            "--triton-backend onnxruntime or python"
        )
    if engine.rtx:
        raise SegError(
            "--triton-backend tensorrt cannot load TensorRT-RTX (--rtx) engines: use --triton-backend python, "
            "or drop --rtx"
        )


def write_triton(options: TritonOptions, written: list[Path], report: Any) -> list[Path]:
    """Write the repository for this run's artefacts (`written`: the files the run wrote, or the MODEL file);
    returns the model folders written."""
    if options.repository is None:
        return []
    folders = []
    for artefact in final_artefacts(written, options.backend):
        with report.step(f"Triton model repository: {artefact.name}") as detail:
            folder = write_repository(artefact, options.repository, backend=options.backend)
            config = (folder / "config.pbtxt").read_text()
            backend, batch = _config_value(config, "backend").strip('"'), _config_value(config, "max_batch_size")
            detail["text"] = f"{folder} ({backend} backend, max batch {batch})"
        report.add_file(folder / "config.pbtxt")
        folders.append(folder)
    return folders


def _config_value(config: str, key: str) -> str:
    """A top-level scalar of config.pbtxt's text, as written (what the writer chose, defaults included)."""
    return next(line.split(":", 1)[1].strip() for line in config.splitlines() if line.startswith(f"{key}:"))


def final_artefacts(written: list[Path], backend: str | None) -> list[Path]:
    """Per precision, the engine if there is one (and the backend takes engines), else the ONNX graph."""
    from segrt.meta import read_card

    by_precision: dict[str, Path] = {}
    for path in written:
        engine = path.suffix in ENGINE_SUFFIXES
        if path.suffix != ".onnx" and not engine:
            continue
        if (engine and backend == "onnxruntime") or (not engine and backend == "tensorrt"):
            continue
        precision = read_card(path).precision
        if engine or precision not in by_precision:
            by_precision[precision] = path
    if not by_precision:
        kind = "an engine (--engine)" if backend == "tensorrt" else "an ONNX graph or engine"
        raise SegError(f"--triton: this run made no {kind} for the {backend or 'chosen'} backend to serve")
    return list(by_precision.values())
