"""An engine later: `segexport ENGINE --check` (the engine gate on the GPU that runs it, for an engine built
elsewhere) and `--rebuild` (built again for this machine from the ONNX its card names, sha256 checked)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from segexport import parity
from segexport.defaults import parity_image
from segexport.engine import prerequisites as engine_prerequisites
from segexport.engine.prerequisites import later_command, later_engine_flags
from segexport.engine.step import ENGINE_ONLY_FLAGS, build_one, gate_or_note, image_shapes
from segexport.request import BuildOptions
from segrt import ENGINE_SUFFIXES
from segrt.backends import tensorrt_library as library
from segrt.errors import MissingDependency, SegError
from segrt.image import read_image
from segrt.meta import ModelCard, file_sha256, read_card, read_sidecar, sidecar_path, write_sidecar

if TYPE_CHECKING:
    import numpy as np

    from segexport.progress import Report


# what each way of taking an ENGINE as MODEL reads; any other flag given is refused, not ignored
ENGINE_MODE_FLAGS = {
    "--check": ("--check", "--image", "--min-agreement", "--verbose", "--rtx"),
    "--rebuild": ("--rebuild", "--image", "--min-agreement", "--verbose", "--rtx", "--gpu-arch"),
    "--triton": ("--triton", "--triton-backend", "--verbose"),
}


def check_engine_flags(engine: Path, mode: str, given: Mapping[str, object], card: ModelCard | None = None) -> None:
    """Before any work: no flag that `mode` (--check, --rebuild, --triton) would ignore, and no --rtx for an engine
    TensorRT built. `given`: the flags the command line gave, with their values as parsed."""
    if "--check" in given and "--rebuild" in given:
        raise SegError("--check and --rebuild: give one (--rebuild checks the engine it builds where it can)")
    library_name = card.tensorrt.get("library") if card is not None else None
    if "--rtx" in given and card is not None and library_name != library.TENSORRT_RTX:
        raise SegError(
            f"--rtx: {engine.name} was built with TensorRT, and {mode} takes the library its card names; drop --rtx"
        )
    ignored = [flag for flag in given if flag not in ENGINE_MODE_FLAGS[mode]]
    if not ignored:
        return
    flag = ignored[0]
    if mode == "--rebuild" and card is not None and flag in ENGINE_ONLY_FLAGS:
        source = engine.parent / str(card.tensorrt.get("source") or "model.onnx")
        rtx = library_name == library.TENSORRT_RTX
        flags = later_engine_flags({f: v for f, v in given.items() if f in ENGINE_ONLY_FLAGS}, rtx=rtx, targets=())
        command = later_command([source], flags)
        raise SegError(
            f"{flag} does not apply with --rebuild, which builds with the options in {engine.name}'s card; to build "
            f"it with other ones, build it from its ONNX graph: {command}"
        )
    raise SegError(f"{flag} does not apply to an engine with {mode}; drop it")


def check_or_rebuild(
    path: Path,
    image_path: Path | None,
    report: Report,
    *,
    rebuild: bool,
    targets: tuple[str, ...] = (),
    verbosity: int = 0,
    min_agreement: float | None = None,
    given: Mapping[str, object] | None = None,
) -> None:
    """`segexport ENGINE --check` or `--rebuild`, on `image_path` (None: the model's own parity image). `given`: the
    flags the command line gave (with their values), any that the mode would ignore refused before any work."""
    engine, card = engine_and_card(path)
    if given is not None:
        check_engine_flags(engine, "--rebuild" if rebuild else "--check", given, card)
    image_path = image_path or parity_image(card.model)
    image = read_image(image_path)
    if rebuild:
        rebuild_engine(
            path, image, image_path.name, report, targets=targets, verbosity=verbosity, min_agreement=min_agreement
        )
    else:
        check_engine(path, image, image_path.name, report, min_agreement)


def engine_and_card(path: Path) -> tuple[Path, ModelCard]:
    """ENGINE or ENGINE.json -> (engine path, its card). The card is checked against the engine's sha256 where
    the engine is there; a card alone (the engine lost, or from another machine) is enough to rebuild."""
    engine = path.with_name(path.name[: -len(".json")]) if path.name.endswith(".json") else path
    if engine.suffix not in ENGINE_SUFFIXES:
        raise SegError(f"{path}: not an engine or an engine's card (.engine, .engine.json)")
    if engine.is_file():
        return engine, read_card(engine)
    card = read_sidecar(engine, verify=False)
    if card is None:
        raise SegError(f"{path}: no such engine, and no card {sidecar_path(engine).name} beside it")
    return engine, card


def source_onnx(engine: Path, card: ModelCard) -> Path:
    """The ONNX graph the engine was built from, beside it, checked against the sha256 the card records."""
    name = card.tensorrt.get("source")
    if not name:
        raise SegError(f"{engine}: its card names no source ONNX graph; export and build it again with segexport")
    source = engine.parent / name
    if not source.is_file():
        raise SegError(
            f"{engine}: its ONNX graph {name} is not beside it; put the file whose sha256 is {card.source_sha256} "
            f"there (the card's source_sha256)"
        )
    if card.source_sha256 and file_sha256(source) != card.source_sha256:
        raise SegError(
            f"{source}: is not the graph {engine.name} was built from (its sha256 differs from the card's "
            f"{card.source_sha256[:12]}...); put that file there, or export it again and build a new engine"
        )
    return source


def check_engine(
    path: Path, image: np.ndarray, image_name: str, report: Report, min_agreement: float | None = None
) -> ModelCard:
    """`segexport ENGINE --check`: the engine gate on this machine's GPU, for an engine built elsewhere (a
    TensorRT-RTX engine built ahead of time); the card records the result. The engine's bytes are untouched."""
    engine, card = engine_and_card(path)
    source = source_onnx(engine, card)
    problem = parity.engine_check_problem(card)
    if problem:
        raise MissingDependency(f"{engine}: cannot check it here: {problem}; run `segexport {engine} --check` there")
    checks = gate_or_note(engine, engine, source, card, image, image_name, report, min_agreement)
    checked = card.replace(checks=checks)
    write_sidecar(engine, checked)
    report.add_file(sidecar_path(engine))
    return checked


def rebuild_options(card: ModelCard, *, targets: tuple[str, ...] = (), verbosity: int = 0) -> BuildOptions:
    """The options the engine the card describes was built with (`targets` retargets a TensorRT-RTX engine)."""
    record = card.tensorrt
    name = str(record.get("library") or library.TENSORRT)
    if targets and name != library.TENSORRT_RTX:
        raise SegError("--gpu-arch picks TensorRT-RTX targets; this engine was built with TensorRT")
    recorded_targets = tuple(str(t) for t in record.get("gpu_arch") or ())
    return BuildOptions(
        shapes=image_shapes(card),
        workspace_mib=record.get("workspace_mib"),
        builder_opt_level=record.get("builder_optimization_level"),
        dla_core=record.get("dla_core"),
        verbosity=verbosity,
        library=name,
        targets=targets or recorded_targets,
    )


def rebuild_engine(
    path: Path,
    image: np.ndarray,
    image_name: str,
    report: Report,
    *,
    targets: tuple[str, ...] = (),
    verbosity: int = 0,
    min_agreement: float | None = None,
) -> Path:
    """`segexport ENGINE --rebuild`: build the engine again for this machine from the ONNX its card names (sha256
    checked), with the options it was built with; the new engine and card replace the old pair."""
    engine, card = engine_and_card(path)
    source = source_onnx(engine, card)
    options = rebuild_options(card, targets=targets, verbosity=verbosity)
    rtx = options.library == library.TENSORRT_RTX
    later = f"`segexport {engine} --rebuild`"
    missing = engine_prerequisites.engine_prerequisites([source], rtx=rtx, later=later)
    if missing:
        raise MissingDependency(missing)
    build_one(source, read_card(source), engine, options, image, image_name, report, min_agreement)
    report.add_file(engine)
    report.add_file(sidecar_path(engine))
    return engine
