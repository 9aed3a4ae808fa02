"""segrun's stages, overlapped: reading (a thread per live source, one for the files in turn), the model (the
calling thread, so Ctrl-C lands there), and writing (one thread: overlay, encoders, files), joined by bounded
queues. Files keep every frame in order; live sources give their newest frame, and the frames of live sources
that share a size run as one N x H x W x 3 call.

Whatever stops the run (the end, an error, Ctrl-C or SIGTERM), every sink is closed: videos finalized.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from segrt.errors import SegError
from segrt.stream.frame import Frame
from segrt.stream.paint import Painter
from segrt.stream.sinks import Sink
from segrt.stream.slots import Closed, OrderedQueue
from segrt.stream.sources import FILE_QUEUE, FrameSource

if TYPE_CHECKING:
    from segrt.segmenter import Segmenter

KEPT_TIMES = 100_000
WRITE_QUEUE = 2  # results waiting for the writer: enough to overlap; more only adds latency


@dataclass
class PipelineResult:
    """What a run did: per-frame model time (ms) and capture-to-written time (ms) of its last KEPT_TIMES frames,
    how many frames it segmented, failures, drops, files."""

    # the last KEPT_TIMES frames' times (a camera runs for hours; 100,000 is 55 minutes at 30 FPS)
    infer_ms: deque[float] = field(default_factory=lambda: deque(maxlen=KEPT_TIMES))
    written_ms: deque[float] = field(default_factory=lambda: deque(maxlen=KEPT_TIMES))
    segmented: int = 0  # frames through the model, all of them
    failures: list[str] = field(default_factory=list)
    missing_dependencies: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    files: int = 0
    frames: int = 0
    calls: int = 0

    def fail(self, message: str, *, missing: bool = False) -> None:
        self.failures.append(message)
        if missing:
            self.missing_dependencies.append(message)
        if self.log is not None:
            self.log(f"skipped: {message}")

    log: Callable[[str], None] | None = None  # a line per frame written and per skip


@dataclass
class FileInput:
    """A file (image or video) opened only when its turn comes: `open()` returns its FrameSource."""

    name: str
    open: Callable[[], FrameSource]


@dataclass
class _SourceEnd:
    """Handed to the writer after a source's last frame: it closes that source's sinks then."""

    source: FrameSource | None
    failure: str | None = None
    missing: bool = False


class Pipeline:
    """One run of `seg` over `files` (in turn, every frame in order) and `live` sources (all at once, newest
    wins), each frame's results to the sinks `make_sinks(source)` gives at that source's first frame."""

    def __init__(
        self,
        seg: Segmenter,
        make_sinks: Callable[[FrameSource], list[Sink]],
        painter: Painter,
        *,
        files: Sequence[FileInput] = (),
        live: Sequence[FrameSource] = (),
        batch: bool = True,
        max_frames: int | None = None,
        log: Callable[[str], None] | None = None,
        write_in_thread: bool = True,
        confidence: bool = False,
    ) -> None:
        self.seg, self.make_sinks, self.painter = seg, make_sinks, painter
        self.files, self.live, self.batch, self.max_frames = list(files), list(live), batch, max_frames
        self.log = log
        self.confidence = confidence  # ask the model for its confidence maps too (Frame.confidence)
        # images only: writing in the calling thread keeps a signal able to cut a write (its temporary removed)
        self.write_in_thread = write_in_thread
        self.result = PipelineResult(log=log)
        self._arrived = threading.Event()
        self._file_queue: OrderedQueue[tuple[Frame, FrameSource] | _SourceEnd] = OrderedQueue(FILE_QUEUE, self._arrived)
        self._write_queue: OrderedQueue[list[tuple[Frame, np.ndarray, FrameSource]] | _SourceEnd] = OrderedQueue(
            WRITE_QUEUE
        )
        self._sinks: dict[int, list[Sink]] = {}
        self._stop = threading.Event()

    def run(self) -> PipelineResult:
        """Until every source has ended (or max_frames each); returns what happened. Ctrl-C propagates, after
        every sink is closed."""
        feeder = threading.Thread(target=self._feed_files, name="read files", daemon=True)
        writer = threading.Thread(target=self._write, name="write", daemon=True) if self.write_in_thread else None
        slots = [source.start(self._arrived) for source in self.live]
        taken = [0] * len(self.live)
        feeder.start()
        if writer is not None:
            writer.start()
        try:
            files_done = not self.files
            while True:
                self._arrived.clear()
                round_: list[tuple[Frame, FrameSource]] = []
                files_done = files_done or self._take_file(round_)
                ended: list[FrameSource] = []
                for i, (source, slot) in enumerate(zip(self.live, slots, strict=True)):
                    if slot is None:
                        continue
                    frame = slot.poll()
                    if frame is not None:
                        round_.append((frame, source))
                        taken[i] += 1
                    if slot.finished or (self.max_frames is not None and taken[i] >= self.max_frames):
                        ended.append(source)
                        slots[i] = None  # type: ignore[call-overload]
                if round_:
                    self._infer(round_)
                for source in ended:  # after its last frame went to the writer
                    source.close()
                    self._hand_on(_SourceEnd(source, source.failure))
                if not round_ and files_done and all(slot is None for slot in slots):
                    break
                if not round_:
                    self._arrived.wait(0.5)
        finally:
            self._stop.set()
            self._file_queue.close()
            for source in self.live:
                source.close()
            self._write_queue.close()
            if writer is not None:
                writer.join()
            else:
                self._close_all()
            feeder.join(2.0)
            for source in self.live:
                self.result.dropped[source.name] = source.dropped
        return self.result

    def _take_file(self, round_: list[tuple[Frame, FrameSource]]) -> bool:
        """Add the next file frame to the round; pass source ends on to the writer. True once files are done."""
        while True:
            item = self._file_queue.poll()
            if item is None:
                return self._file_queue.finished
            if isinstance(item, _SourceEnd):
                self._hand_on(item)
                continue
            round_.append(item)
            return False

    def _feed_files(self) -> None:
        """Open each file in turn and queue its frames (blocking while the queue is full)."""
        try:
            for file in self.files:
                try:
                    source = file.open()
                except SegError as exc:
                    self._file_queue.put(_SourceEnd(None, str(exc), getattr(exc, "exit_code", 2) == 3))
                    continue
                try:
                    for count, frame in enumerate(source.frames_in_order(), 1):
                        self._file_queue.put((frame, source))
                        if self.max_frames is not None and count >= self.max_frames:
                            break
                    failure = source.failure
                except SegError as exc:
                    failure = str(exc)
                except (Closed, KeyboardInterrupt):
                    raise
                except Exception as exc:  # a reader's bug ends its file, not the run
                    failure = f"{file.name}: reading stopped ({type(exc).__name__}: {exc})"
                finally:
                    source.close()
                self._file_queue.put(_SourceEnd(source, failure))
        except Closed:  # the run stopped
            pass
        finally:
            self._file_queue.close()

    def _infer(self, round_: list[tuple[Frame, FrameSource]]) -> None:
        """One call per size (several live frames of one size as one batch), or one per frame with batch off."""
        groups: dict[tuple[int, ...], list[tuple[Frame, FrameSource]]] = {}
        for frame, source in round_:
            key = frame.image.shape if self.batch else (id(frame),)
            groups.setdefault(key, []).append((frame, source))
        for group in groups.values():
            began = time.perf_counter_ns()
            try:
                batch = group[0][0].image[None] if len(group) == 1 else np.stack([frame.image for frame, _ in group])
                if self.confidence:
                    labels, maps = self.seg(batch, confidence=True)
                    for i, (frame, _) in enumerate(group):
                        frame.confidence = maps[i]
                else:
                    labels = self.seg(batch)
            except SegError as exc:
                for frame, _ in group:
                    message = str(exc) if str(exc).startswith(frame.source) else f"{frame.source}: {exc}"
                    self.result.fail(message)
                continue
            per_frame_ms = (time.perf_counter_ns() - began) / 1e6 / len(group)
            self.result.infer_ms.extend([per_frame_ms] * len(group))
            self.result.segmented += len(group)
            self.result.calls += 1
            self._hand_on([(frame, labels[i], source) for i, (frame, source) in enumerate(group)])

    def _hand_on(self, item: list[tuple[Frame, np.ndarray, FrameSource]] | _SourceEnd) -> None:
        if self.write_in_thread:
            self._write_queue.put(item)
        else:
            self._write_item(item)

    def _write(self) -> None:
        """The writer stage: overlay once per frame when a sink wants it, then every sink of its source."""
        try:
            while True:
                try:
                    self._write_item(self._write_queue.take())
                except Closed:
                    break
        finally:
            self._close_all()

    def _write_item(self, item: list[tuple[Frame, np.ndarray, FrameSource]] | _SourceEnd) -> None:
        if isinstance(item, _SourceEnd):
            if item.failure:
                self.result.fail(item.failure, missing=item.missing)
            if item.source is not None:
                self._close_sinks(item.source)
            return
        for frame, labels, source in item:
            try:
                self._write_frame(frame, labels, source)
            except Exception as exc:  # never leave the model blocked on a full queue: report, go on
                self.result.fail(f"{frame.source}#{frame.index}: not written ({type(exc).__name__}: {exc})")

    def _close_all(self) -> None:
        for key in list(self._sinks):
            self._close_key(key)

    def _write_frame(self, frame: Frame, labels: np.ndarray, source: FrameSource) -> None:
        sinks = self._sinks.get(id(source))
        if sinks is None:
            sinks = self._sinks[id(source)] = self.make_sinks(source)
        overlay = self.painter.overlay(frame.image, labels) if any(s.needs_overlay for s in sinks) else None
        for sink in list(sinks):
            try:
                sink.write(frame, labels, overlay)
            except SegError as exc:
                self.result.fail(str(exc))
                sinks.remove(sink)
                self._close_one(sink)
        self.result.frames += 1
        written_ms = (time.monotonic_ns() - frame.read_ns) / 1e6
        self.result.written_ms.append(written_ms)
        if self.log is not None:
            height, width = labels.shape
            name = frame.source if frame.out_stem == source.out_stem else f"{frame.source}#{frame.index}"
            self.log(f"{name}  {height}x{width}  {written_ms:.1f} ms read to written")

    def _close_sinks(self, source: FrameSource) -> None:
        self._close_key(id(source))

    def _close_key(self, key: int) -> None:
        for sink in self._sinks.pop(key, []):
            self._close_one(sink)

    def _close_one(self, sink: Sink) -> None:
        try:
            sink.close()
        except SegError as exc:
            self.result.fail(str(exc))
        self.result.files += sink.files
