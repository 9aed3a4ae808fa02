"""segexport's `--triton REPO` step: its flags, their checks before any work, and the repository at the end.

The run's final artefacts go into the repository, one Triton model per precision: the engine where
one was built (or given), else the ONNX graph. `--triton-backend` picks the Triton backend for all.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from segexport.triton_repository import ENGINE_SUFFIXES, TRITON_BACKENDS, write_repository
from segrt.errors import SegError


def add_triton_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "Triton model repository",
        "Also write the run's artefacts as a Triton model repository (serve it with `segserve REPO`).",
    )
    group.add_argument(
        "--triton",
        type=Path,
        metavar="REPO",
        help="write REPO/<model>/config.pbtxt and 1/<model file> with its card, one model per precision "
        "(the engine where one is built, else the ONNX graph); also from an .onnx or .engine MODEL",
    )
    group.add_argument(
        "--triton-backend",
        choices=TRITON_BACKENDS,
        help="onnxruntime (ONNX) or tensorrt (engines), both in NVIDIA's Triton containers (default by file); "
        "python: a model.py that serves any artefact through segrt (what segserve's tritonserver runs)",
    )


def check_triton_flags(args: argparse.Namespace) -> None:
    """Before any work: the flags agree, tritonclient is there (it checks config.pbtxt), REPO can be written."""
    repository, backend = getattr(args, "triton", None), getattr(args, "triton_backend", None)
    if repository is None:
        if backend is not None:
            raise SegError(f"--triton-backend {backend} only applies with --triton REPO")
        return
    from segexport.triton_repository import INSTALL
    from segrt.errors import require
    from segrt.meta import prepare_output_folder

    require("tritonclient.grpc.model_config_pb2", INSTALL)
    prepare_output_folder(repository, "--triton")
    source = Path(args.model)
    if source.suffix in ENGINE_SUFFIXES and backend == "onnxruntime":
        raise SegError(f"{source}: the onnxruntime backend serves ONNX files; use --triton-backend tensorrt or python")


def triton_step(args: argparse.Namespace, written: list[Path], report: Any) -> None:
    """Write the repository for this run's artefacts (`written`: the files the run wrote, or the MODEL file)."""
    repository = getattr(args, "triton", None)
    if repository is None:
        return
    backend = getattr(args, "triton_backend", None)
    for artefact in final_artefacts(written, backend):
        with report.step(f"Triton model repository: {artefact.name}") as detail:
            folder = write_repository(artefact, repository, backend=backend)
            config = (folder / "config.pbtxt").read_text()
            chosen = backend or ("tensorrt" if artefact.suffix in ENGINE_SUFFIXES else "onnxruntime")
            batch = next(line.split(":")[1].strip() for line in config.splitlines() if "max_batch_size" in line)
            detail["text"] = f"{folder} ({chosen} backend, max batch {batch})"
        report.add_file(folder / "config.pbtxt")


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
