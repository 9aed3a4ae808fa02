"""The `segrun` command: images, folders, videos or a camera through a model, label maps and overlays out.

Needs only segrt's own dependencies (numpy, Pillow, ONNX Runtime or TensorRT);
videos and cameras need OpenCV (`pip install segexport[video]`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segrt.backends import BACKENDS
from segrt.class_stats import CSV_NAME, ClassStats
from segrt.errors import MissingDependency, SegError, run_command
from segrt.files import output_folder_lock, prepare_output_folder
from segrt.image import colorize, overlay, read_image, write_image, write_labels_png
from segrt.precisions import USER_PRECISIONS
from segrt.signals import interrupt_once
from segrt.sources import (
    OUTPUT_SUFFIXES,
    VIDEO_SUFFIXES,
    Listing,
    Source,
    list_sources,
    output_path,
    refuse_overwrites,
)
from segrt.timing import LatencyStats

if TYPE_CHECKING:
    from segrt.segmenter import Segmenter

SAVE_KINDS = tuple(OUTPUT_SUFFIXES)


@dataclass
class Frame:
    """One input frame: where it came from, where its outputs go, and its pixels (or why it has none)."""

    source: str
    out_stem: Path  # output path without suffix, relative to --out
    image: np.ndarray | None = None
    error: str | None = None
    missing_dependency: bool = False  # the error says what to install, not what is wrong with the input
    index: int | None = None  # the frame's index in its video or camera stream
    time_s: float | None = None  # its time in the video (a camera: since the stream's first frame)


@dataclass
class RunSummary:
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    missing_dependencies: list[str] = field(default_factory=list)  # the failures an install would fix
    written: int = 0

    def skip(self, failure: str, *, missing_dependency: bool = False) -> None:
        self.failures.append(failure)
        if missing_dependency:
            self.missing_dependencies.append(failure)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segrun",
        description="Segment images, folders, videos or a camera with a segexport model (ONNX or TensorRT engine).",
        epilog="Example: segrun build/unet_shapes photos/ -o out/ --save labels,overlay",
    )
    parser.add_argument(
        "model", help="model.onnx, model.engine, a segexport output folder, or a served model: http://HOST:8000/MODEL"
    )
    parser.add_argument("inputs", nargs="+", help="image files, folders of images, video files, or a camera index")
    parser.add_argument("-o", "--out", type=Path, default=Path("segrun-out"), help="output folder (default segrun-out)")
    parser.add_argument(
        "--save",
        default="labels,overlay",
        help="what to write, comma-separated: labels (palette PNG of class ids), overlay, color; "
        "or none (default labels,overlay)",
    )
    parser.add_argument(
        "--backend",
        choices=tuple(BACKENDS),
        help="default: TensorRT for engines, the best ONNX Runtime provider for ONNX",
    )
    parser.add_argument("--precision", choices=USER_PRECISIONS, help="pick that file in a model folder")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: all cores)")
    parser.add_argument("--cuda-graph", action="store_true", help="TensorRT: capture a CUDA graph per input shape")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity, 0..1 (default 0.5)")
    parser.add_argument("--max-frames", type=int, help="stop a video or camera after this many frames")
    parser.add_argument(
        "--stats",
        action="store_true",
        help=f"print the share of pixels per class at the end, and write each frame's shares to OUT/{CSV_NAME}",
    )
    parser.add_argument(
        "--ignore-class",
        action="append",
        default=[],
        metavar="NAME",
        help="leave this class (a name from the model card) out of overlays, colour maps and stats; repeat",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-frame lines, only the summary")
    return parser


def parse_save(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    if kinds == ("none",):
        return ()
    unknown = [k for k in kinds if k not in SAVE_KINDS]
    if unknown or not kinds:
        raise SegError(f"--save {text!r}: use labels, overlay, color (comma-separated) or none")
    return kinds


# --- inputs ------------------------------------------------------------------------------------------


def iter_frames(sources: Sequence[Source], max_frames: int | None) -> Iterator[Frame]:
    """Every frame of every source, decoded lazily; unreadable files become frames with an error."""
    for source in sources:
        if source.kind in ("empty", "unreadable"):
            yield Frame(str(source.location), source.out_stem, error=source.reason)
        elif source.kind == "video":
            yield from _video_frames(source.location, source.out_stem, max_frames)
        else:
            try:
                image = read_image(source.location)  # type: ignore[arg-type]
                yield Frame(str(source.location), source.out_stem, image=image)
            except SegError as exc:
                yield Frame(str(source.location), source.out_stem, error=str(exc))


def _video_frames(location: str | int, stem: Path, max_frames: int | None) -> Iterator[Frame]:
    """The frames of a video or camera; one frame keeps the stream's size, those of another size are one skip.

    OpenCV's FFmpeg backend scales every frame of a file to its first frame's size, so a file never
    changes size here; a camera, or a GStreamer source, can.
    """
    if isinstance(location, str):  # OpenCV says only "cannot open" for a file it may not read or that is not there
        try:
            open(location, "rb").close()
        except OSError as exc:
            words = "no such file" if isinstance(exc, FileNotFoundError) else f"cannot read the file ({exc.strerror})"
            yield Frame(location, stem, error=f"{location}: {words}")
            return
    try:
        import cv2
    except ImportError:  # a skip, not the end of the run: the images beside the video still get segmented
        reason = f"{location}: videos and cameras need OpenCV; install it with `pip install segexport[video]`"
        yield Frame(str(location), stem, error=reason, missing_dependency=True)
        return
    capture = cv2.VideoCapture(location)
    if not capture.isOpened():
        what = f"camera {location}" if isinstance(location, int) else "this video (not a video, or a codec it lacks)"
        yield Frame(str(location), stem, error=f"{location}: OpenCV cannot open {what}")
        return
    try:
        yield from _stream_frames(cv2, capture, location, stem, max_frames)
    finally:
        capture.release()


def _stream_frames(cv2: Any, capture: Any, location: str | int, stem: Path, max_frames: int | None) -> Iterator[Frame]:
    index, started = 0, 0.0
    size: tuple[int, ...] | None = None
    other_sizes: list[tuple[int, tuple[int, ...]]] = []
    while max_frames is None or index < max_frames:
        ok, bgr = capture.read()
        if not ok:
            break
        # a file's frame carries its time stamp; a camera's, the time since the stream's first frame
        if isinstance(location, int):
            started = started if index else time.monotonic()
            time_s = time.monotonic() - started
        else:
            time_s = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
        size = size or bgr.shape[:2]
        if bgr.shape[:2] == size:
            image = np.ascontiguousarray(bgr[..., ::-1])
            yield Frame(f"{location}#{index}", stem / f"{index:06d}", image=image, index=index, time_s=time_s)
        else:
            other_sizes.append((index, bgr.shape[:2]))
        index += 1
    if index == 0:
        yield Frame(str(location), stem, error=f"{location}: the video has no frames (OpenCV decodes none)")
    elif other_sizes:
        first, (height, width) = other_sizes[0]
        yield Frame(
            str(location),
            stem,
            error=f"{location}: {len(other_sizes)} frame(s) from #{first} on are {height}x{width}, not "
            f"{size[0]}x{size[1]} like the stream's first frame; they were skipped, the others written",
        )


# --- the run -----------------------------------------------------------------------------------------


def save_outputs(
    frame: Frame,
    labels: np.ndarray,
    out: Path,
    kinds: Sequence[str],
    palette: Sequence[Sequence[int]],
    alpha: float,
    ignore: Collection[int] = (),
) -> int:
    """Write the asked kinds of output for one frame; returns how many files were written.

    The label PNG keeps every class (it is the data); the overlay and colour map leave the `ignore`d ones out.
    """
    written = 0
    if "labels" in kinds:
        write_labels_png(output_path(out, frame.out_stem, "labels"), labels, palette)
        written += 1
    if "overlay" in kinds:
        assert frame.image is not None
        blend = overlay(frame.image, labels, alpha, palette=palette, ignore=ignore)
        write_image(output_path(out, frame.out_stem, "overlay"), blend)
        written += 1
    if "color" in kinds:
        write_image(output_path(out, frame.out_stem, "color"), colorize(labels, palette, ignore=ignore))
        written += 1
    return written


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
    """Check every option, the inputs and where each output goes, take the output folder, then load the model and
    segment. Nothing that is read is written over: see segrt.sources."""
    import segrt

    check_model_first(args.model, args.inputs)
    kinds = parse_save(args.save)
    if not 0.0 <= args.alpha <= 1.0:
        raise SegError(f"--alpha {args.alpha}: must be within 0..1")
    writes = bool(kinds or args.stats)
    listing = list_sources(args.inputs, args.out if writes else None)
    if writes:
        refuse_overwrites(listing, args.inputs, args.out, kinds, args.stats)
    with contextlib.ExitStack() as held:
        if writes:
            prepare_output_folder(args.out, "-o")
            held.enter_context(output_folder_lock(args.out, "-o"))  # one writer: another segrun here is refused
        seg = segrt.load(
            args.model,
            args.backend,
            device=args.device,
            precision=args.precision,
            threads=args.threads,
            cuda_graph=args.cuda_graph,
        )
        with seg:
            ignore = ignored_classes(args.ignore_class, seg.classes)
            stats = ClassStats(seg.classes, ignore, args.out / CSV_NAME) if args.stats else None
            print(f"segrun: {seg}", file=sys.stderr)
            _say_left_out(listing)
            start = time.perf_counter()
            try:
                summary = segment_all(seg, listing.sources, args, kinds, ignore, stats)
            finally:  # after Ctrl-C too: every row written is a whole frame
                csv_path = stats.close() if stats is not None else None
    print_summary(summary, time.perf_counter() - start, args.out, stats, csv_path)
    return exit_code(summary, stats)


def _say_left_out(listing: Listing) -> None:
    for out, folder in listing.left_out:
        print(f"segrun: {out} is the output folder (-o): its files are not read as inputs of {folder}", file=sys.stderr)


def segment_all(
    seg: Segmenter,
    sources: Sequence[Source],
    args: argparse.Namespace,
    kinds: Sequence[str],
    ignore: Collection[int] = frozenset(),
    stats: ClassStats | None = None,
) -> RunSummary:
    """Every frame of every source through `seg`; a frame that fails is skipped with its reason."""
    log = sys.stderr
    summary = RunSummary()
    total = len(sources) if all(s.kind != "video" for s in sources) else None  # a camera never ends
    for index, frame in enumerate(iter_frames(sources, args.max_frames), 1):
        counter = _progress(index, total)
        if frame.error is not None or frame.image is None:
            summary.skip(frame.error or f"{frame.source}: no image", missing_dependency=frame.missing_dependency)
            if not args.quiet:
                print(f"{counter} skipped: {frame.error}", file=log)
            continue
        try:
            began = time.perf_counter_ns()
            labels = seg(frame.image)
            elapsed_ms = (time.perf_counter_ns() - began) / 1e6
            summary.written += save_outputs(frame, labels, args.out, kinds, seg.palette, args.alpha, ignore)
        except SegError as exc:
            failure = _naming(frame.source, str(exc))
            summary.skip(failure, missing_dependency=isinstance(exc, MissingDependency))
            if not args.quiet:
                print(f"{counter} skipped: {failure}", file=log)
            continue
        summary.latencies_ms.append(elapsed_ms)
        if stats is not None:
            stats.add(frame.source, labels, frame.index, frame.time_s)
        if not args.quiet:
            height, width = frame.image.shape[:2]
            print(f"{counter} {frame.source}  {height}x{width}  {elapsed_ms:.1f} ms", file=log)
    return summary


def _naming(source: str, message: str) -> str:
    """`message` led by the input it is about (seg() speaks of "image", not of the file it came from)."""
    return message if message.startswith(source) else f"{source}: {message}"


def exit_code(summary: RunSummary, stats: ClassStats | None = None) -> int:
    """0 all segmented, 1 some skipped; nothing segmented raises: exit 3 if an install would help, else 2.

    A --stats CSV that could not be written is an error (exit 2) once every frame's other outputs are written.
    """
    if summary.latencies_ms:
        if stats is not None and stats.error:
            raise SegError(stats.error)
        return 1 if summary.failures else 0
    if summary.missing_dependencies:
        raise MissingDependency("no input could be segmented: " + summary.missing_dependencies[0])
    raise SegError("no input could be segmented: " + (summary.failures[0] if summary.failures else "no inputs"))


def _progress(index: int, total: int | None, width: int = 20) -> str:
    """`[ 12/340 ███░░░░░░░  4%]` for a known count, `[12]` for a stream."""
    if not total:
        return f"[{index}]"
    filled = round(width * index / total)
    return f"[{index:>{len(str(total))}}/{total} {'█' * filled}{'░' * (width - filled)} {100 * index // total:3d}%]"


def print_summary(
    summary: RunSummary, wall_s: float, out: Path, stats: ClassStats | None = None, csv_path: Path | None = None
) -> None:
    log = sys.stderr
    done = len(summary.latencies_ms)
    written = f"{summary.written} file(s) written to {out}/" if summary.written else "no files written"
    print(f"segrun: {done} frame(s) segmented, {len(summary.failures)} skipped, {written} in {wall_s:.1f} s", file=log)
    if done:
        latency = LatencyStats.from_samples(summary.latencies_ms)
        print(
            f"segrun: latency (array in -> labels out) p50 {latency.p50:.1f} ms, p90 {latency.p90:.1f} ms, "
            f"p99 {latency.p99:.1f} ms, mean {latency.mean:.1f} ms = {latency.fps:.1f} FPS",
            file=log,
        )
    if stats is not None:
        left_out = [stats.classes[i] for i in sorted(stats.ignore)]
        if stats.total_pixels:
            print("segrun: share of all pixels per class" + (f" ({', '.join(left_out)} left out)" if left_out else ""),
                  file=log)  # fmt: skip
        for name, share in stats.summary():
            print(f"segrun:   {name:<20} {100 * share:6.2f} %", file=log)
        if csv_path is not None:
            print(f"segrun: each frame's shares per class: {csv_path} ({stats.rows} rows)", file=log)
    for failure in summary.failures:
        print(f"segrun: skipped {failure}", file=log)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with interrupt_once():
        return run_command("segrun", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
