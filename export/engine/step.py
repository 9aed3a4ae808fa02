"""The engine step of an export, and the two things done to an engine later: check it (`--check`) on the GPU it
runs on, and rebuild it (`--rebuild`) for this machine from the ONNX its card names.

Every engine is built and checked in a scratch folder and published with its card as a pair, so a
failing or interrupted build never lands at the engine's path.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segexport import parity
from segexport.engine import build as tensorrt_build
from segexport.engine import files as engine_files
from segexport.engine import prerequisites as engine_prerequisites
from segexport.engine.profile import ShapeRange
from segexport.progress import Report
from segexport.request import BuildOptions
from segrt.backends import tensorrt_library as library
from segrt.errors import MissingDependency, SegError
from segrt.meta import ModelCard, file_sha256, read_card, sidecar_path, write_sidecar
from segrt.precisions import PRECISIONS

if TYPE_CHECKING:
    import numpy as np

    from segexport.request import EngineOptions

# the flags that only an engine build reads: refused where the run builds none
ENGINE_ONLY_FLAGS = (
    "--min-shape", "--opt-shape", "--max-shape", "--workspace", "--timing-cache", "--builder-opt-level", "--dla-core"
)  # fmt: skip


def check_engine_options(options: EngineOptions) -> None:
    """Refuse what the chosen library lacks, an engine flag where no engine is built, a value out of its range, a
    contradicting profile or an unreadable timing cache, before any work is done."""
    build = options.build
    if build.targets and not options.rtx:
        raise SegError("--gpu-arch picks TensorRT-RTX targets: add --rtx (full TensorRT builds for the GPU it runs on)")
    if options.rtx:
        for flag, given, what in (
            ("--timing-cache", build.timing_cache, "timing cache"),
            ("--dla-core", build.dla_core, "DLA"),
        ):
            if given is not None:
                raise SegError(
                    f"{flag} does not apply with --rtx: TensorRT-RTX has no {what}; drop {flag}, or drop --rtx to "
                    f"build with TensorRT"
                )
    if not options.sources:
        ignored = [flag for flag in options.later_flags if flag in ENGINE_ONLY_FLAGS]
        if ignored:
            raise SegError(
                f"{ignored[0]} applies to engines, and this run builds none (--engine, --rtx, --fp16 or --int8 "
                f"build one, and not with --onnx-only); drop {ignored[0]}, or ask for an engine"
            )
        return
    for flag, value, least in (("--workspace", build.workspace_mib, 1), ("--dla-core", build.dla_core, 0)):
        if value is not None and value < least:
            raise SegError(f"{flag} {value}: must be at least {least}{' MiB' if flag == '--workspace' else ''}")
    if build.builder_opt_level is not None and not 0 <= build.builder_opt_level <= 5:
        raise SegError(f"--builder-opt-level {build.builder_opt_level}: TensorRT's levels are 0 to 5")
    ShapeRange(build.shapes.min, build.shapes.opt, build.shapes.max)
    tensorrt_build.read_timing_cache(build.timing_cache)


def build_engines(
    options: EngineOptions,
    graphs: dict[str, Path],
    image: np.ndarray,
    image_name: str,
    out: Path,
    report: Report,
    min_agreement: float | None = None,
) -> dict[str, Path]:
    """Build an engine from each graph `options.sources` names (precision -> ONNX in `graphs`), each checked
    against its ONNX graph before it is kept; returns precision -> engine.

    Without the library (or, for TensorRT, cuda-python and a GPU): MissingDependency naming the command
    for later, after the ONNX files are written. A TensorRT-RTX engine is built ahead of time on any
    machine; where no GPU here runs it, its check is left for the target GPU (one line, card unchecked).
    """
    if not options.sources:
        return {}
    for precision in options.sources:
        if precision not in graphs:
            raise SegError(f"no {precision} ONNX graph was written, so no {precision} engine can be built")
    sources = [graphs[precision] for precision in options.sources]
    builds = []  # (ONNX, its card, engine path): bad input is refused before TensorRT is looked for
    for source in sources:
        card = read_card(source)
        builds.append((source, card, engine_files.engine_path(source, card, out, rtx=options.rtx)))
    missing = engine_prerequisites.engine_prerequisites(sources, later_flags=options.later_flags, rtx=options.rtx)
    if missing:
        raise MissingDependency(missing)
    engines = {}
    for source, card, target in builds:
        build_one(source, card, target, options.build, image, image_name, report, min_agreement)
        report.add_file(target)
        report.add_file(sidecar_path(target))
        engines[card.precision] = target
    return engines


def build_one(
    source: Path,
    card: ModelCard,
    target: Path,
    options: BuildOptions,
    image: np.ndarray,
    image_name: str,
    report: Report,
    min_agreement: float | None = None,
) -> ModelCard:
    """Build, check and publish one engine and its card; returns the card written."""
    title = "TensorRT-RTX" if options.library == library.TENSORRT_RTX else "TensorRT"
    report.console.print(f"building {target.name} from {source.name} with {title} ...", highlight=False, markup=False)
    with tempfile.TemporaryDirectory(prefix=".segexport-", dir=target.parent) as scratch:
        scratch_engine = Path(scratch) / target.name
        engine, record = tensorrt_build.build_engine(source, card, options, report.console)
        built_card = engine_files.engine_card(card, record, file_sha256(source))
        engine_files.save_engine(scratch_engine, engine, built_card)
        low, _, high = record.profile
        where = f"on {record.gpu.name}" if record.gpu else f"for compute capability {', '.join(record.targets)}"
        detail = f"input {list(low)} .. {list(high)}, {len(engine) / 2**20:.1f} MiB"
        report.done(f"{record.library.title} {card.precision} engine {where}", record.build_seconds, detail)
        checks = gate_or_note(scratch_engine, target, source, built_card, image, image_name, report, min_agreement)
        final = built_card.replace(checks=checks)
        write_sidecar(scratch_engine, final)
        engine_files.publish_engine(scratch_engine, target)
    return final


def gate_or_note(
    engine: Path,
    shown_as: Path,
    source: Path,
    card: ModelCard,
    image: np.ndarray,
    image_name: str,
    report: Report,
    min_agreement: float | None,
) -> dict[str, Any]:
    """The engine gate where this machine can run the engine; else one line saying so, and the card's `checks`
    record why it is unchecked."""
    unchecked = parity.engine_check_problem(card)
    if unchecked:
        report.note(
            f"{shown_as.name} is not checked against {source.name}: {unchecked}; its card says so. Check it on "
            f"a target GPU with `segexport {shown_as} --check`"
        )
        return {"parity": None, "unchecked": unchecked}
    source_card = read_card(source)
    shapes = image_shapes(card)
    minimum = PRECISIONS[card.precision].min_agreement if min_agreement is None else min_agreement
    with report.step(f"parity: {shown_as.name} vs ONNX Runtime (CPU) on {image_name}") as step:
        agreement = parity.engine_agreement(engine, source, source_card, image, shapes)
        step["text"] = f"label agreement {100 * agreement:.3f} %"
    parity.check_agreement(
        parity.Parity(agreement=agreement, max_abs_logit_diff=None),
        minimum,
        f"{shown_as} was not written",
        "the engine's labels differ from its ONNX graph's; try another --builder-opt-level, or lower "
        "--min-agreement if you accept it",
    )
    return {
        "parity": {
            "reference": f"{source.name} on ONNX Runtime CPU",
            "image": image_name,
            "label_agreement": round(agreement, 6),
        }
    }


def image_shapes(card: ModelCard) -> ShapeRange:
    """The image shapes (N x H x W) the engine the card describes was built for."""
    recorded = card.tensorrt.get("image_shapes") or {}
    try:
        low, best, high = (tuple(int(v) for v in recorded[key]) for key in ("min", "opt", "max"))
    except (KeyError, TypeError, ValueError):
        raise SegError("the engine's card has no image_shapes record; rebuild it with segexport") from None
    return ShapeRange(low, best, high)  # type: ignore[arg-type]
