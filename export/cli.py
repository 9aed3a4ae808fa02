"""The `segexport` command: parse flags, make one `ExportRequest` from them, run it, print progress and a summary.

Also `segexport ENGINE --check` / `--rebuild` (an engine later, on its GPU or for this machine) and
`segexport doctor` (what this machine can build and run). Every decision a flag makes is in
`request_from_args`; the work is `segexport.export` and `segexport.engine.step`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segexport.defaults import DEFAULT_MODEL
from segexport.graph_output_flags import add_graph_output_arguments, onnx_options
from segexport.options import add_budget_arguments, add_precision_arguments
from segexport.text_lists import read_class_names
from segrt import ENGINE_SUFFIXES
from segrt.errors import MissingDependency, SegError, rich_say, run_command
from segrt.precisions import PRECISIONS, least_agreements
from segrt.signals import interrupt_once

if TYPE_CHECKING:
    from segexport.request import ExportRequest

ENGINE_MODES = ("--check", "--rebuild")


def int8_flavours(target: str | None) -> list[str]:
    """The INT8 graphs `--int8 --int8-target TARGET` writes, as segrt.meta precisions."""
    return {"tensorrt": ["int8"], "cpu": ["int8-cpu"]}.get(target or "both", ["int8", "int8-cpu"])


def parse_size(text: str) -> tuple[int, ...]:
    """--input-size: "520x520" -> (520, 520), a fixed H x W; "520" -> (520,), the shorter side."""
    from segexport.request import parse_input_size

    try:
        return parse_input_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def percent(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text}: a percentage within 0..100")
    return value / 100.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segexport",
        description="Export a PyTorch segmentation model to a checked, fused ONNX graph (and a TensorRT engine).",
        epilog="Examples: segexport  |  segexport fcn_resnet50 --fp16  |  segexport mypkg.nets:build "
        "--checkpoint w.pt  |  segexport build/unet/model.fp16.onnx --engine",
    )
    parser.add_argument(
        "model",
        nargs="?",
        default=DEFAULT_MODEL,
        help=f"zoo name (fcn_resnet18, fcn_resnet50, fcn_resnet101, unet, {DEFAULT_MODEL}), "
        f"package.module:factory, an .onnx file made by segexport (skips the PyTorch step), an .engine with "
        f"--check or --rebuild, or `doctor` (what this machine can build and run); "
        f"default: {DEFAULT_MODEL}, the bundled reference model",
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--weights",
        help="torchvision weights: DEFAULT (downloads as torchvision does), a weights name, or none for random weights",
    )
    model.add_argument("--checkpoint", type=Path, help="state dict saved with torch.save(model.state_dict())")
    model.add_argument("--num-classes", type=int, help="number of classes (default: the model's own)")
    model.add_argument("--threshold", type=float, help="one-class models: label 1 where sigmoid > T (default 0.5)")
    model.add_argument("--classes", help="class names, comma-separated, or a text file with one per line")
    model.add_argument(
        "--input-size",
        type=parse_size,
        help="network input: HxW resizes every image to that size (default 520x520 for FCN, "
        "static shapes make the fastest engines); one number S resizes the shorter side to S "
        "keeping the aspect ratio, as torchvision's transforms do",
    )
    model.add_argument("--seed", type=int, default=0, help="seed for random weights, so exports repeat (default 0)")
    model.add_argument("--unet-depth", type=int, default=4, help="unet: down-sampling steps (default 4)")
    model.add_argument("--unet-base", type=int, default=32, help="unet: channels at full resolution (default 32)")
    model.add_argument("--unet-transposed", action="store_true", help="unet: transposed-conv up-sampling, not bilinear")
    onnx_group = parser.add_argument_group("ONNX")
    add_graph_output_arguments(onnx_group)  # --no-fuse, --confidence
    onnx_group.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17, parsed by TensorRT 10)")
    onnx_group.add_argument(
        "--image",
        type=Path,
        help="image for the parity checks (default: the model's own sample image where it ships one, "
        "else the bundled 612x640 photo)",
    )
    onnx_group.add_argument(
        "--min-agreement",
        type=percent,
        default=None,
        metavar="PCT",
        help=f"least share of pixels that must agree with the reference, in %% (default {least_agreements()})",
    )
    onnx_group.add_argument("--out", type=Path, help="output folder (default ./build/<model>)")
    add_precision_arguments(parser)  # --fp16, --int8, --calib, --calib-method: export/options.py
    add_budget_arguments(parser)  # --max-miou-drop, --max-class-iou-drop, --val: export/options.py
    add_engine_arguments(parser)
    add_triton_arguments(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: TensorRT's own)")
    return parser


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the TensorRT engine step. Owned by the engine work."""
    from segexport.engine import profile as tb

    def shape(text: str) -> tuple[int, int, int]:
        try:
            return tb.parse_shape(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    def text(values: tuple[int, ...]) -> str:
        return "x".join(map(str, values))

    group = parser.add_argument_group(
        "TensorRT engine",
        "Engines are built only when asked for: --engine (from the FP32 graph, or from an .onnx MODEL as it is), "
        "--fp16 or --int8 (from those graphs). Without TensorRT or a CUDA GPU the ONNX files are still written, "
        "then segexport exits with code 3 and the command that builds the engine later.",
    )
    group.add_argument("--engine", action="store_true", help="build a TensorRT engine (implied by --fp16 / --int8)")
    add_rtx_and_engine_mode_arguments(group)
    group.add_argument(
        "--onnx-only", action="store_true", help="stop after the ONNX files, even with --fp16 / --int8 (exit 0)"
    )
    group.add_argument(
        "--min-shape",
        type=shape,
        metavar="NxHxW",
        help=f"smallest image batch the engine takes (default {text(tb.DEFAULT_MIN_SHAPE)}, less if the others are)",
    )
    group.add_argument(
        "--opt-shape",
        type=shape,
        metavar="NxHxW",
        help=f"the batch TensorRT tunes for, e.g. your camera's frames (default {text(tb.DEFAULT_OPT_SHAPE)}, 720p)",
    )
    group.add_argument(
        "--max-shape",
        type=shape,
        metavar="NxHxW",
        help=f"largest image batch (default {text(tb.DEFAULT_MAX_SHAPE)}: 1080p either way up; raise N to batch)",
    )
    group.add_argument(
        "--workspace", type=int, metavar="MiB", help="TensorRT's scratch memory limit (default: its own)"
    )
    group.add_argument(
        "--timing-cache", type=Path, metavar="FILE", help="reuse and update this timing cache (faster rebuilds)"
    )
    group.add_argument(
        "--builder-opt-level",
        type=int,
        choices=range(6),
        metavar="0-5",
        help="TensorRT builder optimization level: higher searches longer for faster kernels (default 3)",
    )
    group.add_argument(
        "--dla-core", type=int, metavar="N", help="run on DLA core N (Jetson Orin/Xavier), the rest on the GPU"
    )


def add_rtx_and_engine_mode_arguments(group: argparse._ArgumentGroup) -> None:
    """--rtx and --gpu-arch (TensorRT-RTX, built anywhere), and what is done to an engine later (--check, --rebuild)."""
    from segrt.backends import tensorrt_library

    group.add_argument(
        "--rtx",
        action="store_true",
        help="build with TensorRT for RTX instead (model.<precision>.rtx.engine): ahead of time, on any machine, "
        "GPU or not, for GeForce/RTX GPUs of the --gpu-arch targets; its kernels are compiled on the GPU at first run",
    )
    group.add_argument(
        "--gpu-arch",  # parsed by gpu_targets, so a bad value is one line, not argparse's usage block
        metavar="SM,...",
        help="with --rtx: the GPUs to build for, from "
        f"{', '.join(tensorrt_library.RTX_TARGETS)} (default: TensorRT-RTX's own portable set, compute capability "
        f"{', '.join(tensorrt_library.RTX_DEFAULT_TARGETS)}); Hopper (sm90) and Jetson (sm87) need full TensorRT",
    )
    group.add_argument(
        "--check",
        action="store_true",
        help="with an ENGINE as MODEL: run its check against the ONNX it was built from on this machine's GPU "
        "(a TensorRT-RTX engine built where no GPU ran it) and record the result in its card",
    )
    group.add_argument(
        "--rebuild",
        action="store_true",
        help="with an ENGINE (or its .json card) as MODEL: build it again for this machine from the ONNX its card "
        "names (sha256 checked), with the options it was built with",
    )


def add_triton_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the Triton repository step (export/triton/step.py)."""
    from segexport.triton.repository import TRITON_BACKENDS

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
        "python: a model.py that serves any artefact through segrt (what segserve's tritonserver runs; the "
        "default for TensorRT-RTX engines, which the tensorrt backend cannot load)",
    )


# --- flags -> request ------------------------------------------------------------------------------


def gpu_targets(args: argparse.Namespace) -> tuple[str, ...]:
    """--gpu-arch as TensorRT-RTX targets ("sm86,sm89" -> ("8.6", "8.9")), () when not given; a target that is not
    TensorRT-RTX's is a SegError naming the flag and the valid targets."""
    from segrt.backends import tensorrt_library

    return () if args.gpu_arch is None else tensorrt_library.parse_gpu_arch(args.gpu_arch)


def engine_flags_typed(args: argparse.Namespace) -> dict[str, Any]:
    """The engine flags as typed (None where not given), for the command that builds the engine later."""
    return {
        "--min-shape": args.min_shape,
        "--opt-shape": args.opt_shape,
        "--max-shape": args.max_shape,
        "--workspace": args.workspace,
        "--timing-cache": args.timing_cache,
        "--builder-opt-level": args.builder_opt_level,
        "--dla-core": args.dla_core,
        "--min-agreement": None if args.min_agreement is None else f"{100 * args.min_agreement:g}",
    }


def request_from_args(args: argparse.Namespace) -> ExportRequest:
    """The one place where flags become decisions: the `ExportRequest` this command line asks for."""
    from segexport import request as rq
    from segexport.engine.prerequisites import later_engine_flags
    from segexport.engine.profile import ShapeRange, shape_range
    from segexport.precision.budget import budget_from_flags
    from segexport.request import BuildOptions, TritonOptions
    from segrt.backends import tensorrt_library

    if args.int8_target is not None and not args.int8:
        raise SegError(f"--int8-target {args.int8_target} only applies with --int8")
    if args.onnx_only and (args.engine or args.rtx):
        asked = "--rtx" if args.rtx else "--engine"
        raise SegError(f"--onnx-only builds no engine, and {asked} asks for one: drop one of them")
    targets = gpu_targets(args)
    model = rq.ModelOptions(
        name=args.model,
        weights=args.weights,
        checkpoint=args.checkpoint,
        num_classes=args.num_classes,
        classes=read_class_names(args.classes) if args.classes else None,
        threshold=args.threshold,
        input_size=args.input_size,
        seed=args.seed,
        unet_depth=args.unet_depth,
        unet_base=args.unet_base,
        unet_transposed=args.unet_transposed,
    )
    graphs = (["fp16"] if args.fp16 else []) + (int8_flavours(args.int8_target) if args.int8 else [])
    precision = rq.PrecisionOptions(
        graphs=tuple(graphs),
        calib=args.calib,
        calib_count=args.calib_count,
        keep_fp32=tuple(args.keep_fp32),
        calib_method=args.calib_method,
    )
    # engines: --fp16 / --int8 build from the graphs TensorRT takes (the precision table's `tensorrt`: the INT8 one
    # for TensorRT, not the CPU one), --engine / --rtx from the FP32 graph or the .onnx MODEL as given;
    # --onnx-only builds none
    sources = [name for name in graphs if PRECISIONS[name].tensorrt]
    if (args.engine or args.rtx) and not sources:
        sources = ["fp32"]
    sources = [] if args.onnx_only else sources
    build = BuildOptions(
        # the profile is checked (and can be refused) only where an engine is built
        shapes=shape_range(args.min_shape, args.opt_shape, args.max_shape) if sources else ShapeRange(),
        workspace_mib=args.workspace,
        timing_cache=args.timing_cache,
        builder_opt_level=args.builder_opt_level,
        dla_core=args.dla_core,
        verbosity=args.verbose,
        library=tensorrt_library.TENSORRT_RTX if args.rtx else tensorrt_library.TENSORRT,
        targets=targets,
    )
    later = later_engine_flags(engine_flags_typed(args), rtx=args.rtx, targets=targets)
    engine = rq.EngineOptions(sources=tuple(sources), build=build, later_flags=tuple(later))
    return rq.ExportRequest(
        model=model,
        onnx=onnx_options(args),
        precision=precision,
        engine=engine,
        triton=TritonOptions(repository=args.triton, backend=args.triton_backend),
        budget=budget_from_flags(
            args.max_miou_drop, args.max_disagreement, args.val, args.val_count, args.max_class_iou_drop
        ),
        min_agreement=args.min_agreement,
        verbose=args.verbose,
    )


# --- the command ----------------------------------------------------------------------------------


def flags_given(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The flags a command line gave (a value other than the default), by their long names, with their values."""
    return {
        action.option_strings[-1]: getattr(args, action.dest)
        for action in parser._actions
        if action.option_strings and getattr(args, action.dest, action.default) != action.default
    }


def run(args: argparse.Namespace, console: Any, given: dict[str, Any]) -> int:
    """One command line: an export, an engine checked or rebuilt, or the doctor; returns the exit code. `given`:
    the flags it gave (`flags_given`), refused where the doctor or an ENGINE would ignore them."""
    from segexport.engine.check import check_engine_flags, check_or_rebuild
    from segexport.progress import Report

    if args.model == "doctor":
        from segexport.doctor import print_doctor

        print_doctor(console, given)
        return 0
    report = Report(console)
    try:
        if args.check or args.rebuild:  # an engine later: checked, or built again for this machine
            check_or_rebuild(Path(args.model), args.image, report, rebuild=args.rebuild, targets=gpu_targets(args),
                             verbosity=args.verbose, min_agreement=args.min_agreement, given=given)  # fmt: skip
        else:
            from segexport.pipeline import export

            if args.triton is not None and Path(args.model).suffix in ENGINE_SUFFIXES:
                check_engine_flags(Path(args.model), "--triton", given)
            export(request_from_args(args), report)
    except MissingDependency:
        if report.steps:  # what could be done was done: show it before the sentence that says what is missing
            report.print_summary()
        raise
    report.print_summary()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console

    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    with interrupt_once():
        return run_command(
            "segexport",
            lambda: run(args, console, flags_given(parser, args)),
            rich_say(console),
            interrupted="; no partial file was left at the output paths",
        )


if __name__ == "__main__":
    sys.exit(main())
