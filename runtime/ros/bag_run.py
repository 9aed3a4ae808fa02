"""Segment a recorded drive: the image frames of a bag (`BagImages`) through a Segmenter into its segmented copy
(`BagSink`), with --stats' per-frame CSV at the bag's times. Written as source -> seg -> sink over `Frame`s, so
segrun's frame pipeline can run the same pieces.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from segrt.class_stats import CSV_NAME, ClassStats
from segrt.errors import SegError
from segrt.files import output_folder_lock, prepare_output_folder
from segrt.ros.bag_sink import BagSink, segmented_name
from segrt.ros.bag_source import BagBroken, BagImages
from segrt.signals import interrupt, signals_caught
from segrt.stream.frame import Frame

if TYPE_CHECKING:
    from segrt.segmenter import Segmenter


@dataclass
class BagRun:
    """What a bag run did: the segmented bag, how much went in and out, what was skipped and why."""

    out_path: Path
    frames: int = 0
    copied: int = 0  # the input's messages written to the copy
    skipped: Counter[str] = field(default_factory=Counter)  # unreadable image messages and refused frames, by kind
    problems: dict[str, str] = field(default_factory=dict)  # the first of each kind
    broken: str = ""  # why the bag could not be read to its end
    stats_path: Path | None = None
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0, or 1 when a message was skipped or the bag broke off (what could be written was)."""
        return 1 if self.broken or self.skipped else 0


def segment_bag(
    seg: Segmenter,
    bag_path: str | Path,
    topics: Sequence[str],
    out_dir: str | Path,
    *,
    ignore: Collection[int] = (),
    stats: bool = False,
    on_frame: Callable[[Frame], None] | None = None,
) -> BagRun:
    """Segment every image message of `topics` in the bag at `bag_path` into `out_dir/NAME.segmented.mcap`.

    Topics and the output folder are checked before any frame runs (SegError, exit 2). Ctrl-C (KeyboardInterrupt)
    and a bag that breaks off leave the bag written so far, readable; `on_frame` sees each frame after its masks
    are written (progress). `stats` writes `out_dir/stats.csv`: a row per frame, its time the header stamp.
    """
    started = time.perf_counter()
    out_dir = prepare_output_folder(out_dir, "-o")
    with output_folder_lock(out_dir, "-o"), BagImages(bag_path, topics) as source:
        run = BagRun(out_path=out_dir / segmented_name(bag_path))
        sink = BagSink(bag_path, run.out_path, source.topics, palette=seg.palette, ignore=ignore)
        try:
            class_stats = ClassStats(seg.classes, ignore, out_dir / CSV_NAME if stats else None)
        except BaseException:
            sink.discard()
            raise
        try:
            _segment_frames(seg, source, sink, class_stats, run, on_frame)
        except BagBroken as exc:
            run.broken = str(exc)
        except KeyboardInterrupt:
            _finish(source, sink, class_stats, run, complete=False)
            raise
        except BaseException:
            sink.discard()
            class_stats.close()
            raise
        _finish(source, sink, class_stats, run, complete=not run.broken)
        run.copied = sink.copied
        run.seconds = time.perf_counter() - started
        return run


def _segment_frames(
    seg: Segmenter,
    source: BagImages,
    sink: BagSink,
    class_stats: ClassStats,
    run: BagRun,
    on_frame: Callable[[Frame], None] | None,
) -> None:
    """source -> seg -> sink, frame by frame; a frame the model refuses is skipped and counted."""
    for frame in source.frames():
        try:
            labels = seg(frame.image)
        except SegError as exc:  # an image the model refuses (larger than an engine's profile)
            run.skipped["model"] += 1
            run.problems.setdefault("model", f"{frame.source} frame {frame.index}: {exc}")
            continue
        with signals_caught(lambda signum: None) as received:  # a frame's records go into the chunk whole
            sink.write(frame, labels)
            class_stats.add(frame.source, labels, frame.index, frame.time_s)
        if received:
            interrupt(received[0])
        run.frames += 1
        if on_frame is not None:
            on_frame(frame)


def _finish(source: BagImages, sink: BagSink, class_stats: ClassStats, run: BagRun, *, complete: bool) -> None:
    """Close the bag and the CSV with SIGINT/SIGTERM held, so the bag gets its index and footer whole; a signal
    that came meanwhile is raised after."""
    run.skipped.update(source.skipped)
    for kind, problem in source.problems.items():
        run.problems.setdefault(kind, problem)
    with signals_caught(lambda signum: None) as received:
        try:
            sink.finish(complete=complete)
        except BagBroken as exc:
            run.broken = run.broken or str(exc)
        run.stats_path = class_stats.close()
    if received:
        interrupt(received[0])
