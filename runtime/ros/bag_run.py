"""Segment a recorded drive from Python: a bag's image frames through segrun's pipeline (segrt.stream.pipeline,
with the bag's source and sink of segrt.ros.bag_stream) into its segmented copy, with --stats' per-frame CSV at
the bag's times, and what happened as a `BagRun`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from segrt.class_stats import CSV_NAME, ClassStats
from segrt.files import output_folder_lock, prepare_output_folder
from segrt.ros.bag_sink import segmented_name
from segrt.ros.bag_source import BagImages
from segrt.ros.bag_stream import BagFileSink, BagReader, open_bag
from segrt.stream.frame import Frame
from segrt.stream.paint import Painter
from segrt.stream.pipeline import FileInput, Pipeline
from segrt.stream.sinks import Sink, StatsSink
from segrt.stream.sources import FrameSource

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

    failures: list[str] = field(default_factory=list)  # frames the model refused, the copy's own problems

    @property
    def exit_code(self) -> int:
        """0, or 1 when a message was skipped or not written or the bag broke off (what could be written was)."""
        return 1 if self.broken or self.skipped or self.failures else 0


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
    """Segment every image message of `topics` in the bag at `bag_path` into `out_dir/NAME.segmented.mcap`,
    through segrun's pipeline (what `segrun MODEL BAG --topic T` runs), for use from Python.

    Topics and the output folder are checked before any frame runs (SegError, exit 2). Ctrl-C (KeyboardInterrupt)
    and a bag that breaks off leave the bag written so far, readable; `on_frame` sees each frame after its masks
    are written (progress). `stats` writes `out_dir/stats.csv`: a row per frame, its time the header stamp.
    """
    started = time.perf_counter()
    BagImages(bag_path, topics).close()  # a topic the bag lacks: said before anything is written
    out_dir = prepare_output_folder(out_dir, "-o")
    with output_folder_lock(out_dir, "-o"):
        run = BagRun(out_path=out_dir / segmented_name(bag_path))
        class_stats = ClassStats(seg.classes, ignore, out_dir / CSV_NAME) if stats else None
        opened: list[FrameSource] = []
        bag_sinks: list[BagFileSink] = []

        def open_it() -> FrameSource:
            opened.append(open_bag(bag_path, topics, Path(segmented_name(bag_path))))
            return opened[-1]

        def make_sinks(source: FrameSource) -> list[Sink]:
            bag_sinks.append(BagFileSink(source, out_dir, topics, seg.palette, ignore))
            sinks: list[Sink] = [bag_sinks[-1]]
            if class_stats is not None:
                sinks.append(StatsSink(class_stats, stream=True))
            if on_frame is not None:
                sinks.append(_Notify(on_frame))
            return sinks

        files = [FileInput(str(bag_path), open_it)]
        pipeline = Pipeline(seg, make_sinks, Painter(seg.palette, 0.5, ignore), files=files, write_in_thread=False)
        try:
            result = pipeline.run()
        finally:
            run.stats_path = class_stats.close() if class_stats is not None else None
        reader = opened[0].reader if opened else None
        if isinstance(reader, BagReader):
            run.skipped.update(reader.images.skipped)
            run.problems.update(reader.images.problems)
            run.broken = reader.broken
        if bag_sinks:
            run.frames, run.copied = bag_sinks[0].sink.masks, bag_sinks[0].sink.copied
        known = {reader.failure, reader.broken} if isinstance(reader, BagReader) else set()
        run.failures = [failure for failure in result.failures if failure not in known]  # frames the model refused,
        # the copy's own problems (its last messages, the disk)
        run.seconds = time.perf_counter() - started
        return run


class _Notify:
    """A sink that tells `on_frame` of each frame written (after the bag's sink, in the pipeline's order)."""

    needs_overlay = False
    files = 0

    def __init__(self, on_frame: Callable[[Frame], None]) -> None:
        self.on_frame = on_frame

    def write(self, frame: Frame, labels: np.ndarray, overlay: np.ndarray | None) -> None:
        self.on_frame(frame)

    def close(self) -> None:
        pass
