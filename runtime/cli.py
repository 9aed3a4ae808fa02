"""The `segrun` command: images, folders, videos, cameras or network streams through a model; label maps,
overlays and colour maps out (videos for a video or stream, files for images). The work is segrt.stream's
pipeline; this module only wires the options to it. The parser is segrt.cli_args.

Needs only segrt's own dependencies (numpy, Pillow, ONNX Runtime or TensorRT); videos and streams need PyAV,
cameras OpenCV (`pip install segexport[video]`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from segrt.class_stats import CSV_NAME, ClassStats
from segrt.cli_args import build_parser, check_numbers, parse_save
from segrt.errors import MissingDependency, SegError, run_command
from segrt.files import output_folder_lock, prepare_output_folder
from segrt.signals import interrupt_once
from segrt.sources import VIDEO_SUFFIXES, Listing, Source, list_sources, refuse_overwrites
from segrt.stream.names import is_bag
from segrt.stream.paint import Painter
from segrt.stream.pipeline import FileInput, Pipeline, PipelineResult
from segrt.stream.sinks import FrameFilesSink, PublishSink, Sink, StatsSink
from segrt.stream.sources import FrameSource, open_source
from segrt.timing import LatencyStats

if TYPE_CHECKING:
    from segrt.segmenter import Segmenter
    from segrt.view import ViewServer


def ignored_classes(names: Sequence[str], classes: Sequence[str]) -> frozenset[int]:
    """The class ids --ignore-class names; a name the model card lacks is refused, listing the card's names."""
    unknown = [name for name in names if name not in classes]
    if unknown:
        raise SegError(
            f"--ignore-class {unknown[0]}: the model has no class of that name; its classes are {', '.join(classes)}"
        )
    return frozenset(classes.index(name) for name in names)


def check_model_first(model: str, inputs: Sequence[str]) -> None:
    """An image or video given as MODEL (the arguments swapped) is one sentence with the command in its order."""
    from segrt import ENGINE_SUFFIXES
    from segrt.image import IMAGE_SUFFIXES

    suffix = Path(model).suffix.lower()
    if suffix not in IMAGE_SUFFIXES and suffix not in VIDEO_SUFFIXES:
        return
    kind = "a video" if suffix in VIDEO_SUFFIXES else "an image"
    models = [name for name in inputs if Path(name).is_dir() or Path(name).suffix in (".onnx", *ENGINE_SUFFIXES)]
    rest = [model, *(name for name in inputs if name not in models[:1])]
    order = f"`segrun {models[0]} {' '.join(rest)}`" if models else "`segrun MODEL INPUTS...`"
    raise SegError(f"{model}: {kind}, not a model; segrun takes the model first: {order}")


def run(args: argparse.Namespace) -> int:
    """Check every option, the inputs and where each output goes, take the output folder, open the live sources
    (a camera that is not there, a URL that does not answer: said now), then load the model and segment.
    Nothing that is read is written over: see segrt.sources."""
    import segrt

    check_model_first(args.model, args.inputs)
    kinds = parse_save(args.save)
    check_numbers(args)
    writes = bool(kinds or args.stats or any(is_bag(text) for text in args.inputs))  # a bag writes its copy
    listing = list_sources(args.inputs, args.out if writes else None)
    check_bag_topics(listing.sources, args.topic)
    if writes:
        refuse_overwrites(listing, args.inputs, args.out, kinds, args.stats, frames=args.frames)
    result = PipelineResult()
    with contextlib.ExitStack() as held:
        view = held.enter_context(open_view(args.view)) if args.view else None  # a port in use: said now
        if writes:
            prepare_output_folder(args.out, "-o")
            held.enter_context(output_folder_lock(args.out, "-o"))  # one writer: another segrun here is refused
        live = _open_live(listing.sources, args, result, held)
        if not live and all(s.kind in ("camera", "stream") for s in listing.sources):  # nothing left to run
            exit_code(result)
        seg = segrt.load(
            args.model,
            args.backend,
            device=args.device,
            precision=args.precision,
            threads=args.threads,
            cuda_graph=args.cuda_graph,
            spin=False,  # ONNX Runtime's idle threads sleep: decoding, colouring and writing share the cores
        )
        with seg:
            if "confidence" in kinds:
                seg.require_confidence()  # a graph without the map: one line, before any frame
            ignore = ignored_classes(args.ignore_class, seg.classes)
            stats = ClassStats(seg.classes, ignore, args.out / CSV_NAME) if args.stats else None
            print(f"segrun: {seg}", file=sys.stderr)
            _say_left_out(listing)
            start = time.perf_counter()
            try:
                result = segment_all(seg, listing.sources, live, args, kinds, ignore, stats, result, view)
            finally:  # after Ctrl-C too: every row written is a whole frame
                csv_path = stats.close() if stats is not None else None
    print_summary(result, time.perf_counter() - start, args.out, stats, csv_path)
    return exit_code(result, stats)


def check_bag_topics(sources: Sequence[Source], topics: Sequence[str]) -> None:
    """A bag needs --topic, and --topic a bag; each bag is opened now, so a topic it lacks (or one that is not
    images) is said before the model loads, listing the image topics it has."""
    bags = [source for source in sources if source.kind == "bag"]
    if topics and not bags:
        raise SegError(f"--topic {topics[0]}: no input is a bag (a .mcap or .db3 file, or a rosbag2 folder)")
    for source in bags:
        from segrt.ros.bag_source import BagImages

        BagImages(source.location, topics).close()  # type: ignore[arg-type]


def open_view(address: str) -> ViewServer:
    """The live view, bound now (a port in use or not allowed is one line before the model loads) and serving."""
    from segrt.view import ViewServer

    view = ViewServer(address)
    view.start()
    print(f"segrun: live view at {view.url}", file=sys.stderr)
    return view


def _open_live(
    sources: Sequence[Source], args: argparse.Namespace, result: PipelineResult, held: contextlib.ExitStack
) -> list[FrameSource]:
    """Open every camera and stream now, before the model loads; one that cannot be opened is a failure."""
    live = []
    for source in sources:
        if source.kind not in ("camera", "stream"):
            continue
        try:
            opened = open_source(source.location, timeout=args.timeout, reconnect=args.reconnect,
                                 out_stem=source.out_stem)  # fmt: skip
        except SegError as exc:
            result.fail(str(exc), missing=isinstance(exc, MissingDependency))
            continue
        live.append(held.enter_context(opened))
    return live


def _say_left_out(listing: Listing) -> None:
    for out, folder in listing.left_out:
        print(f"segrun: {out} is the output folder (-o): its files are not read as inputs of {folder}", file=sys.stderr)


def segment_all(
    seg: Segmenter,
    sources: Sequence[Source],
    live: Sequence[FrameSource],
    args: argparse.Namespace,
    kinds: Sequence[str],
    ignore: frozenset[int] = frozenset(),
    stats: ClassStats | None = None,
    result: PipelineResult | None = None,
    view: ViewServer | None = None,
) -> PipelineResult:
    """Every frame of every source through `seg`, overlapped (segrt.stream.pipeline); a source or frame that
    fails is skipped with its reason. `result` may hold the failures found before (live sources not opened)."""
    painter = Painter(seg.palette, args.alpha, ignore)
    result = result or PipelineResult()
    total = len(sources) if all(s.kind in ("image", "empty", "unreadable") for s in sources) else None
    result.log = None if args.quiet else _progress_log(total)
    for failure in result.failures:  # the live sources that could not be opened
        result.log and result.log(f"skipped: {failure}")
    files = []
    for source in sources:
        if source.kind in ("empty", "unreadable"):
            result.fail(source.reason)
        elif source.kind in ("image", "video", "bag"):
            files.append(FileInput(str(source.location), _opener(source, args)))

    def make_sinks(source: FrameSource) -> list[Sink]:
        from segrt.stream.names import video_path
        from segrt.stream.video_sink import VideoSink

        sinks: list[Sink] = []
        stream = source.kind != "image"
        if source.kind == "bag":  # its masks go into its segmented copy, whatever --save says
            from segrt.ros.bag_stream import BagFileSink

            sinks.append(BagFileSink(source, args.out, args.topic, seg.palette, ignore))
        elif stream and not args.frames:
            sinks += [VideoSink(video_path(args.out, source.out_stem, kind), kind, source.rate, painter)
                      for kind in kinds]  # fmt: skip
        elif kinds:
            sinks.append(FrameFilesSink(args.out, tuple(kinds), painter, seg.palette))
        if stats is not None:
            sinks.append(StatsSink(stats, stream))
        if view is not None:
            sinks.append(PublishSink(view, source.name, seg.classes, lambda: source.dropped))
        return sinks

    pipeline = Pipeline(seg, make_sinks, painter, files=files, live=live, batch=not args.no_batch,
                        max_frames=args.max_frames, log=result.log,
                        write_in_thread=bool(live or view) or any(s.kind != "image" for s in sources),
                        confidence="confidence" in kinds)  # fmt: skip
    pipeline.result = result
    return pipeline.run()


def _progress_log(total: int | None) -> Callable[[str], None]:
    """Each line led by `[ 12/340 ███░░░░░░░  4%]` for a known count of images, `[12]` otherwise."""
    count = 0

    def log(line: str) -> None:
        nonlocal count
        count += 1
        print(f"{_progress(count, total)} {line}", file=sys.stderr)

    return log


def _progress(index: int, total: int | None, width: int = 20) -> str:
    if not total:
        return f"[{index}]"
    filled = round(width * index / total)
    return f"[{index:>{len(str(total))}}/{total} {'█' * filled}{'░' * (width - filled)} {100 * index // total:3d}%]"


def _opener(source: Source, args: argparse.Namespace) -> Callable[[], FrameSource]:
    def open_it() -> FrameSource:
        if source.kind == "bag":
            from segrt.ros.bag_stream import open_bag

            return open_bag(source.location, args.topic, source.out_stem)  # type: ignore[arg-type]
        return open_source(source.location, timeout=args.timeout, out_stem=source.out_stem)

    return open_it


def exit_code(summary: PipelineResult, stats: ClassStats | None = None) -> int:
    """0 all segmented, 1 some skipped; nothing segmented raises: exit 3 if an install would help, else 2.

    A --stats CSV that could not be written is an error (exit 2) once every frame's other outputs are written.
    """
    if summary.segmented:
        if stats is not None and stats.error:
            raise SegError(stats.error)
        return 1 if summary.failures else 0
    if summary.missing_dependencies:
        raise MissingDependency("no input could be segmented: " + summary.missing_dependencies[0])
    raise SegError("no input could be segmented: " + (summary.failures[0] if summary.failures else "no inputs"))


def print_summary(
    result: PipelineResult, wall_s: float, out: Path, stats: ClassStats | None = None, csv_path: Path | None = None
) -> None:
    log = sys.stderr
    done = result.segmented
    written = f"{result.files} file(s) written to {out}/" if result.files else "no files written"
    rate = f" = {done / wall_s:.1f} frames/s" if done and wall_s > 0 else ""
    print(f"segrun: {done} frame(s) segmented, {len(result.failures)} skipped, {written} in {wall_s:.1f} s{rate}",
          file=log)  # fmt: skip
    if done:
        latency = LatencyStats.from_samples(result.infer_ms)
        print(
            f"segrun: latency (array in -> labels out) p50 {latency.p50:.1f} ms, p90 {latency.p90:.1f} ms, "
            f"p99 {latency.p99:.1f} ms, mean {latency.mean:.1f} ms = {latency.fps:.1f} FPS",
            file=log,
        )
    if result.written_ms:
        written_latency = LatencyStats.from_samples(result.written_ms)
        print(f"segrun: capture to written p50 {written_latency.p50:.1f} ms, p99 {written_latency.p99:.1f} ms; "
              f"{result.calls} model call(s)", file=log)  # fmt: skip
    for name, dropped in result.dropped.items():
        print(f"segrun: {name}: {dropped} frame(s) dropped (newest frame wins while the model is busy)", file=log)
    if stats is not None:
        left_out = [stats.classes[i] for i in sorted(stats.ignore)]
        if stats.total_pixels:
            print("segrun: share of all pixels per class" + (f" ({', '.join(left_out)} left out)" if left_out else ""),
                  file=log)  # fmt: skip
        for name, share in stats.summary():
            print(f"segrun:   {name:<20} {100 * share:6.2f} %", file=log)
        if csv_path is not None:
            print(f"segrun: each frame's shares per class: {csv_path} ({stats.rows} rows)", file=log)
    for failure in result.failures:
        print(f"segrun: skipped {failure}", file=log)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with interrupt_once():
        return run_command("segrun", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
