"""A recorded drive in segrun's pipeline: a bag's image messages as a `FrameSource` (in log order, every frame
kept, each topic at its own size) and its segmented copy as a `Sink`, so `segrun MODEL drive.mcap --topic T`
runs through segrt.stream.pipeline like any video.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

import numpy as np

from segrt.ros.bag_sink import BagSink, segmented_name
from segrt.ros.bag_source import BagImages
from segrt.signals import interrupt, signals_caught
from segrt.stream.frame import Frame
from segrt.stream.sources import FrameSource


class BagReader:
    """Iterates a bag's frames; `done` once its last message was read, `failure` what was skipped or broke."""

    def __init__(self, images: BagImages) -> None:
        self.images = images
        self.done = False
        self.broken = ""

    def __iter__(self) -> Iterator[Frame]:
        try:
            yield from self.images.frames()
        except Exception as exc:  # BagBroken: what was read is written
            self.broken = str(exc)
            raise
        self.done = True

    @property
    def failure(self) -> str | None:
        """The first problem of each kind, as one line (the pipeline reports it and the run exits 1)."""
        parts = [self.broken] if self.broken else []
        for kind, count in sorted(self.images.skipped.items()):
            parts.append(f"{count} message(s) skipped ({kind}), the first: {self.images.problems[kind]}")
        return "; ".join(parts) or None


def open_bag(path: str | Path, topics: Sequence[str], out_stem: Path) -> FrameSource:
    """The bag at `path` (a .mcap file or a rosbag2 folder) as a file source of its `topics`' images. A topic
    the bag lacks, or one that is not images, is a SegError listing the image topics it has."""
    images = BagImages(path, topics)
    return FrameSource(
        BagReader(images), name=str(path), out_stem=out_stem, live=False, kind="bag", closer=images.close,
        one_size=False,
    )  # fmt: skip


class BagFileSink:
    """The segmented copy of a bag (`OUT/NAME.segmented.mcap`) as a pipeline sink: each frame's label map and
    colour mask under its topic, every input message copied in log order. Closed after the source's last frame,
    the rest of the input is copied; closed early (Ctrl-C, a broken bag), the copy ends where the frames did.
    Either way the bag gets its index and footer, with SIGINT and SIGTERM held meanwhile."""

    needs_overlay = False

    def __init__(self, source: FrameSource, out: Path, topics: Sequence[str], palette: object,
                 ignore: Collection[int]) -> None:  # fmt: skip
        self.source = source
        self.sink = BagSink(source.name, out / segmented_name(source.name), topics, palette=palette, ignore=ignore)
        self.files = 0

    def write(self, frame: Frame, labels: np.ndarray, overlay: np.ndarray | None) -> None:
        with signals_caught(lambda signum: None) as received:  # a frame's records go into the chunk whole
            self.sink.write(frame, labels)
        if received:
            interrupt(received[0])

    def close(self) -> None:
        reader = self.source.reader
        complete = isinstance(reader, BagReader) and reader.done
        with signals_caught(lambda signum: None) as received:
            try:
                self.sink.finish(complete=complete)
            finally:
                self.files = 1
        if received:
            interrupt(received[0])
