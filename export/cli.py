"""The `segexport` command: parse flags, run the export chain step by step, print progress and a summary."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segexport import DEFAULT_MODEL, parity_image, read_lines
from segrt.errors import SegError, interrupt_on_sigterm

INT8_TARGETS = ("tensorrt", "cpu", "both")


def int8_flavours(target: str | None) -> list[str]:
    """The INT8 graphs `--int8 --int8-target TARGET` writes, as segrt.meta precisions."""
    return {"tensorrt": ["int8"], "cpu": ["int8-cpu"]}.get(target or "both", ["int8", "int8-cpu"])


def parse_size(text: str) -> tuple[int, ...]:
    """ "520x520" -> (520, 520), a fixed H x W; "520" -> (520,), the shorter side."""
    try:
        values = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected HxW (e.g. 520x520) or one number (shorter side)"
        ) from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HxW (e.g. 520x520) or one number (shorter side)")
    return values


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
        f"package.module:factory, or an .onnx file made by segexport (skips the PyTorch step); "
        f"default: {DEFAULT_MODEL}, the bundled reference model",
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--weights",
        help="torchvision weights: DEFAULT (downloads as torchvision does), a weights name, or none for random weights",
    )
    model.add_argument("--checkpoint", type=Path, help="state dict saved with torch.save(model.state_dict())")
    model.add_argument("--num-classes", type=int, help="number of classes (default: the model's own)")
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
    onnx_group.add_argument(
        "--no-fuse",
        action="store_true",
        help="export the plain network (float NCHW in, logits out) without pre/post-processing",
    )
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
        help="least share of pixels that must agree with the reference, in %% "
        "(default 99.9 for FP32, 99.5 for FP16, 98 for INT8)",
    )
    onnx_group.add_argument("--out", type=Path, help="output folder (default ./build/<model>)")
    add_precision_arguments(parser)
    add_engine_arguments(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: TensorRT's own)")
    return parser


def add_precision_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the precision step (FP16 / INT8 ONNX graphs). Owned by the precision work."""
    from segexport.precision import AUTOCAST_IMAGES, DEFAULT_CALIB_COUNT

    group = parser.add_argument_group("precision (ONNX -> ONNX, each checked against FP32 on --image)")
    group.add_argument(
        "--fp16",
        action="store_true",
        help="also write model.fp16.onnx: FP16 mixed precision (ModelOpt AutoCast; numerically sensitive nodes "
        f"stay FP32, found on {AUTOCAST_IMAGES} --calib images or the --image photo)",
    )
    group.add_argument(
        "--int8",
        action="store_true",
        help="also write model.int8.onnx (Q/DQ for TensorRT, ModelOpt) and model.int8-cpu.onnx (Q/DQ for "
        "ONNX Runtime CPU), calibrated on --calib",
    )
    group.add_argument(
        "--int8-target",
        choices=INT8_TARGETS,
        help="which INT8 graph --int8 writes: tensorrt (model.int8.onnx), cpu (model.int8-cpu.onnx, and no "
        "engine), or both (default)",
    )
    group.add_argument(
        "--calib",
        type=Path,
        metavar="DIR",
        help="folder of calibration images (searched recursively), like the ones the model will see, or a .txt "
        "list of them (a Pascal-VOC ImageSets/Segmentation/train.txt works); each is fed to the graph at its own "
        "size, as segrt does",
    )
    group.add_argument(
        "--calib-count",
        type=int,
        default=DEFAULT_CALIB_COUNT,
        metavar="N",
        help=f"calibration images to use, spread over the folder (default {DEFAULT_CALIB_COUNT}, or all if fewer)",
    )
    group.add_argument(
        "--keep-fp32",
        action="append",
        default=[],
        metavar="REGEX",
        help="keep nodes whose name matches REGEX in FP32 (not FP16, not quantized); repeatable",
    )


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the TensorRT engine step. Owned by the engine work."""
    from segexport import tensorrt_build as tb

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


# --- progress and summary ----------------------------------------------------------------------------


@dataclass
class Report:
    """What the run did: steps with their time and figures, files with their sizes."""

    console: Any
    steps: list[tuple[str, float, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @contextmanager
    def step(self, title: str) -> Iterator[dict[str, str]]:
        """Show a spinner while the block runs, then a line with its time and `detail["text"]`."""
        detail = {"text": ""}
        start = time.perf_counter()
        with self.console.status(f"{title} ..."):
            yield detail
        seconds = time.perf_counter() - start
        self.steps.append((title, seconds, detail["text"]))
        self.console.print(
            f"[green]✓[/] {title} [dim]({seconds:.1f} s)[/] {detail['text']}", highlight=False, soft_wrap=True
        )

    def add_file(self, path: Path) -> None:
        self.files.append(path)

    def print_summary(self) -> None:
        from rich.table import Table

        steps = Table(title="segexport summary", title_justify="left")
        steps.add_column("step", overflow="fold")
        steps.add_column("time", justify="right", no_wrap=True)
        steps.add_column("result", overflow="fold")
        for title, seconds, text in self.steps:
            steps.add_row(title, f"{seconds:.1f} s", text)
        folders = {path.parent for path in self.files}
        where = f" in {folders.pop()}" if len(folders) == 1 else ""
        files = Table(show_header=True)
        files.add_column(f"file written{where}", overflow="fold")
        files.add_column("size", justify="right")
        for path in self.files:
            files.add_row(path.name if where else str(path), _size(path.stat().st_size))
        self.console.print(steps)
        self.console.print(files)


def _size(count: float) -> str:
    """Bytes in binary units, named as such: the steps divide by 1024."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return str(count)


# --- the steps ---------------------------------------------------------------------------------------


def _read_classes(text: str) -> tuple[str, ...]:
    """--classes: a text file with one name per line, else comma-separated names."""
    path = Path(text)
    if path.is_file():
        names = read_lines(path, f"--classes {path}", "give a text file with one name per line")
    else:
        names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise SegError(f"--classes {text!r}: no class names given")
    return tuple(names)


def build_model_step(args: argparse.Namespace) -> Any:
    """MODEL and its flags -> a SegmentationModel."""
    import torch

    from segexport.models import build_model

    torch.manual_seed(args.seed)
    options: dict[str, Any] = {}
    if args.model == "unet":
        options = {"depth": args.unet_depth, "base": args.unet_base, "bilinear": not args.unet_transposed}
    if (":" in args.model or args.model == "unet") and args.input_size:
        options["input_size"] = args.input_size  # checked against the model before it is built
    model = build_model(
        args.model, weights=args.weights, num_classes=args.num_classes, checkpoint=args.checkpoint, **options
    )
    if args.input_size:
        model.input_size = args.input_size
        model.resize = "fixed" if len(args.input_size) == 2 else "shorter"
    if model.resize == "fixed" and any(v % model.size_divisor for v in model.input_size):
        raise SegError(
            f"--input-size {'x'.join(map(str, model.input_size))}: {model.name} needs multiples of {model.size_divisor}"
        )
    if args.classes:
        names = _read_classes(args.classes)
        if len(names) != len(model.classes):
            raise SegError(f"--classes names {len(names)} classes but {model.name} has {len(model.classes)}")
        model.classes = names
    return model


def export_step(args: argparse.Namespace, model: Any, out: Path, image: Any, report: Report) -> tuple[Path, Any]:
    """Export, check, simplify, parity-check and write model.onnx with its card."""
    import tempfile

    from segexport import onnx_export

    fused = not args.no_fuse
    opset = args.opset or onnx_export.DEFAULT_OPSET
    minimum = args.min_agreement if args.min_agreement is not None else 0.999
    with report.step(f"export {model.name} to ONNX (opset {opset}, {'fused' if fused else 'unfused'})") as detail:
        with tempfile.TemporaryDirectory(prefix=".segexport-", dir=out) as scratch:
            proto = onnx_export.export_onnx(model, Path(scratch) / "raw.onnx", sample=image, fused=fused, opset=opset)
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
        versions=onnx_export.package_versions(),
    )
    with report.step(f"parity: ONNX Runtime vs PyTorch on {args.image.name}") as detail:
        parity = onnx_export.check_parity(proto, model, image, card)
        diff = f"max |logit diff| {parity.max_abs_logit_diff:.2e}, " if parity.max_abs_logit_diff is not None else ""
        detail["text"] = f"{diff}label agreement {100 * parity.agreement:.3f} %"
    onnx_export.check_agreement(
        parity,
        minimum,
        f"{out / 'model.onnx'} was not written",
        "the export changed the model's answers; report it with the model, or lower --min-agreement if you accept it",
    )
    card = card.replace(checks={"parity": parity.record("PyTorch (eager, CPU)", args.image.name)})
    path = out / "model.onnx"
    with report.step("write model.onnx and its model card"):
        onnx_export.save_onnx(proto, path, card)
    report.add_file(path)
    report.add_file(path.with_name(path.name + ".json"))
    return path, card


def run(args: argparse.Namespace, console: Any) -> int:
    """The whole chain for one command line; returns the exit code."""
    from segrt.image import read_image
    from segrt.meta import prepare_output_folder, read_card

    check_precision_flags(args)
    check_engine_flags(args)
    report = Report(console)
    source = Path(args.model)
    card = None
    if source.suffix == ".onnx":
        if not source.is_file():
            raise SegError(f"{source}: no such ONNX file")
        card = read_card(source)
    args.image = args.image or parity_image(card.model if card else args.model)
    image = read_image(args.image)
    if card is not None:
        out = prepare_output_folder(args.out or source.parent, "--out")
        onnx_path = source
    else:
        with report.step(f"build {args.model}") as detail:
            model = build_model_step(args)
            size = "x".join(map(str, model.input_size))
            detail["text"] = f"{len(model.classes)} classes, input {size} ({model.resize})"
        out = prepare_output_folder(args.out or Path("build") / model.name, "--out")
        onnx_path, card = export_step(args, model, out, image, report)
    later_steps(args, onnx_path, card, image, out, report)
    report.print_summary()
    return 0


def later_steps(args: argparse.Namespace, onnx_path: Path, card: Any, image: Any, out: Path, report: Report) -> None:
    """The steps after the FP32 ONNX: precision graphs, then TensorRT engines."""
    graphs = precision_steps(args, onnx_path, card, image, out, report)
    engine_step(args, graphs, image, out, report)


def check_precision_flags(args: argparse.Namespace) -> None:
    """Refuse inconsistent precision flags before any work is done."""
    if args.int8 and args.calib is None:
        raise SegError(
            "--int8 needs --calib DIR: a folder of images like the ones the model will see (a few dozen "
            "frames of your camera will do), to measure the value ranges INT8 must cover"
        )
    if not (args.fp16 or args.int8) and (args.calib is not None or args.keep_fp32):
        raise SegError("--calib and --keep-fp32 only apply with --fp16 or --int8")
    if args.int8_target is not None and not args.int8:
        raise SegError(f"--int8-target {args.int8_target} only applies with --int8")
    if args.calib is not None and not (args.calib.is_dir() or (args.calib.suffix == ".txt" and args.calib.is_file())):
        raise SegError(f"{args.calib}: no such folder of calibration images, or .txt list of them (--calib)")
    if args.calib is not None:
        from segexport.precision import find_calibration_images

        find_calibration_images(args.calib, args.calib_count)  # a list that cannot be read fails before any work


def engine_wanted(args: argparse.Namespace) -> bool:
    """Whether this command line builds a TensorRT engine (--engine, --fp16, or --int8 with a TensorRT graph)."""
    int8 = bool(getattr(args, "int8", False)) and "int8" in int8_flavours(getattr(args, "int8_target", None))
    return not args.onnx_only and bool(args.engine or getattr(args, "fp16", False) or int8)


def check_engine_flags(args: argparse.Namespace) -> None:
    """Refuse a contradicting profile or an unreadable timing cache before any work is done."""
    if not engine_wanted(args):
        return
    from segexport import tensorrt_build as tb

    tb.shape_range(args.min_shape, args.opt_shape, args.max_shape)
    tb.read_timing_cache(args.timing_cache)


def engine_flags(args: argparse.Namespace) -> list[str]:
    """The engine flags given on this command line, for the command that builds the engine later."""
    flags: list[str] = []
    for flag, value in (
        ("--min-shape", args.min_shape),
        ("--opt-shape", args.opt_shape),
        ("--max-shape", args.max_shape),
        ("--workspace", args.workspace),
        ("--timing-cache", args.timing_cache),
        ("--builder-opt-level", args.builder_opt_level),
        ("--dla-core", args.dla_core),
        ("--min-agreement", None if args.min_agreement is None else f"{100 * args.min_agreement:g}"),
    ):
        if value is not None:
            flags += [flag, "x".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return flags


def precision_steps(
    args: argparse.Namespace, onnx_path: Path, card: Any, image: Any, out: Path, report: Report
) -> dict[str, Path]:
    """Write the FP16 / INT8 ONNX graphs asked for; returns {precision: ONNX path}, "fp32" included."""
    graphs = {"fp32": onnx_path}
    wanted = (["fp16"] if args.fp16 else []) + (int8_flavours(args.int8_target) if args.int8 else [])
    if not wanted:
        return graphs
    from segexport import precision

    calib_images: list[Any] = []
    if args.calib is not None:
        with report.step(f"read calibration images from {args.calib}") as detail:
            calib_images, unreadable = precision.read_calibration_images(args.calib, args.calib_count)
            sizes = {f"{im.shape[1]}x{im.shape[0]}" for im in calib_images}
            detail["text"] = f"{len(calib_images)} images, {len(sizes)} size(s)" + (
                f"; {len(unreadable)} unreadable skipped (first: {unreadable[0].name})" if unreadable else ""
            )
    titles = {
        "fp16": "FP16 mixed precision (ModelOpt AutoCast)",
        "int8": "INT8 Q/DQ for TensorRT (ModelOpt, entropy calibration)",
        "int8-cpu": "INT8 Q/DQ for ONNX Runtime CPU (quantize_static, MinMax)",
    }
    for name in wanted:
        with report.step(titles[name]) as detail:
            result = precision.make_precision_graph(
                name,
                onnx_path,
                image,
                calib_images=calib_images,
                keep_fp32=args.keep_fp32,
                min_agreement=args.min_agreement,
                out=out,
                verbose=args.verbose > 0,
            )
            detail["text"] = f"{result.summary}; label agreement with FP32 {100 * result.parity.agreement:.3f} %"
        graphs[name] = result.path
        report.add_file(result.path)
        report.add_file(result.path.with_name(result.path.name + ".json"))
    return graphs


def engine_step(args: argparse.Namespace, graphs: dict[str, Path], image: Any, out: Path, report: Report) -> None:
    """Build TensorRT engines from `graphs` where asked for, each checked against ONNX Runtime before it is kept.

    No flag: no engine (a plain `segexport` runs anywhere). --engine builds from the FP32 graph
    (or the .onnx MODEL as given), --fp16 / --int8 from those graphs. Without TensorRT or a CUDA
    GPU: MissingDependency (exit 3) after the ONNX summary, naming the command for later.
    """
    import tempfile

    from segexport import onnx_export
    from segexport import tensorrt_build as tb
    from segrt.errors import MissingDependency
    from segrt.meta import file_sha256, read_card, sidecar_path, write_sidecar

    fp16 = bool(getattr(args, "fp16", False))
    # --int8-target cpu writes no TensorRT graph, so it asks for no INT8 engine
    int8 = bool(getattr(args, "int8", False)) and "int8" in int8_flavours(getattr(args, "int8_target", None))
    if not engine_wanted(args):
        if graphs["fp32"] == Path(args.model) and len(graphs) == 1:
            raise SegError(f"{args.model}: nothing to do for an ONNX file without --fp16, --int8 or --engine")
        return
    sources = tb.engine_sources(graphs, fp16=fp16, int8=int8, engine=args.engine)
    shapes = tb.shape_range(args.min_shape, args.opt_shape, args.max_shape)
    builds = []  # (ONNX, its card, engine path): bad input is refused before TensorRT is looked for
    for source in sources:
        card = read_card(source)
        builds.append((source, card, tb.engine_path(source, card, out)))
    missing = tb.engine_prerequisites(sources, later_flags=engine_flags(args))
    if missing:
        if report.steps:
            report.print_summary()
        raise MissingDependency(missing)
    options = tb.BuildOptions(
        shapes=shapes,
        workspace_mib=args.workspace,
        timing_cache=args.timing_cache,
        builder_opt_level=args.builder_opt_level,
        dla_core=args.dla_core,
        verbosity=args.verbose,
    )
    for source, card, target in builds:
        minimum = args.min_agreement if args.min_agreement is not None else tb.DEFAULT_MIN_AGREEMENT[card.precision]
        report.console.print(f"building {target.name} from {source.name} with TensorRT ...", highlight=False)
        # Built and checked in a scratch folder: a failing engine never lands at `target`.
        with tempfile.TemporaryDirectory(prefix=".segexport-", dir=out) as scratch:
            scratch_engine = Path(scratch) / target.name
            engine, record = tb.build_engine(source, card, options, report.console)
            engine_card = tb.engine_card(card, record, file_sha256(source))
            tb.save_engine(scratch_engine, engine, engine_card)
            low, _, high = record.profile
            title = f"TensorRT {record.tensorrt_version} {card.precision} engine on {record.gpu.name}"
            detail = f"input {list(low)} .. {list(high)}, {len(engine) / 2**20:.1f} MiB"
            report.steps.append((title, record.build_seconds, detail))
            report.console.print(
                f"[green]✓[/] {title} [dim]({record.build_seconds:.1f} s)[/] {detail}", highlight=False
            )
            with report.step(f"parity: {target.name} vs ONNX Runtime (CPU) on {args.image.name}") as step:
                agreement = tb.engine_agreement(scratch_engine, source, card, image, options.shapes)
                step["text"] = f"label agreement {100 * agreement:.3f} %"
            onnx_export.check_agreement(
                onnx_export.Parity(agreement=agreement, max_abs_logit_diff=None),
                minimum,
                f"{target} was not written",
                "the engine's labels differ from its ONNX graph's; try another --builder-opt-level, or lower "
                "--min-agreement if you accept it",
            )
            checks = {
                "parity": {
                    "reference": f"{source.name} on ONNX Runtime CPU",
                    "image": args.image.name,
                    "label_agreement": round(agreement, 6),
                }
            }
            write_sidecar(scratch_engine, engine_card.replace(checks=checks))
            tb.publish_engine(scratch_engine, target)
        report.add_file(target)
        report.add_file(sidecar_path(target))


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console
    from rich.markup import escape  # messages name extras like segexport[tensorrt]

    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    interrupt_on_sigterm()
    try:
        return run(args, console)
    except SegError as exc:
        console.print(f"[bold red]segexport: error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("[bold red]segexport: interrupted[/]; no partial file was left at the output paths")
        return 130


if __name__ == "__main__":
    sys.exit(main())
