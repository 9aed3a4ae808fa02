"""`open_source`: one call that turns what a user names (an image, a folder, a video, a camera, a URL, a
GStreamer pipeline) into an iterable, closeable source of `Frame`s. The kinds are `segrt.stream.names.kind_of`.

A file keeps every frame, in order. A live source (a camera, a network stream) is read by its own thread into
a `NewestSlot`: a taker slower than the source gets the newest frame, and the ones it missed are counted.
Frames of another size than a stream's first are skipped and counted (an encoder and a batch take one size).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from segrt.errors import SegError
from segrt.stream.frame import Frame
from segrt.stream.names import URL_SCHEMES, kind_of, stem_of
from segrt.stream.slots import Closed, NewestSlot, OrderedQueue

FILE_QUEUE = 2  # decoded frames of a file waiting for the model: enough to overlap; more only adds latency


class FrameSource:
    """What `open_source` returns: iterate it for `Frame`s, close it when done (or use it in a `with`).

    `live` sources are read by a thread into a NewestSlot (`dropped` counts the frames replaced before they
    were taken); files are decoded as they are taken. After the end, `failure` says why a source stopped early
    (iterating raises it as a SegError; the pipeline reports it instead).
    """

    def __init__(self, reader: Iterable[Frame], *, name: str, out_stem: Path, live: bool, kind: str = "video",
                 rate: float | Fraction | None = None, closer: Any = None, one_size: bool = True) -> None:  # fmt: skip
        self.name = name
        self.one_size = one_size  # a video's frames keep its first frame's size (a bag's topics each have theirs)
        self.kind = kind  # see kind_of
        self.out_stem = out_stem
        self.live = live
        self.rate = rate
        self.frames = 0
        self.other_sizes: list[tuple[int, tuple[int, ...]]] = []
        self._reader = reader
        self._closer = closer
        self._slot: NewestSlot[Frame] | OrderedQueue[Frame] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._size: tuple[int, ...] | None = None
        self._error: str | None = None

    @property
    def reader(self) -> Iterable[Frame]:
        """What the frames come from (a sink may ask it how its source ended: a bag's segmented copy does)."""
        return self._reader

    @property
    def dropped(self) -> int:
        return self._slot.dropped if isinstance(self._slot, NewestSlot) else 0

    @property
    def failure(self) -> str | None:
        if self._error:
            return self._error
        reader_failure = getattr(self._reader, "failure", None)
        if reader_failure:
            return reader_failure
        if self.other_sizes:
            first, (height, width) = self.other_sizes[0]
            size = self._size or (0, 0)
            return (
                f"{self.name}: {len(self.other_sizes)} frame(s) from #{first} on are {height}x{width}, not "
                f"{size[0]}x{size[1]} like the stream's first frame; they were skipped, the others written"
            )
        return None

    def frames_in_order(self) -> Iterator[Frame]:
        """Every frame, read in the calling thread (no slot, nothing dropped); frames of another size skipped."""
        for frame in self._reader:
            if self._stop.is_set():
                return
            self._size = self._size or frame.image.shape[:2]
            if self.one_size and frame.image.shape[:2] != self._size:
                self.other_sizes.append((frame.index, frame.image.shape[:2]))
                continue
            self.frames += 1
            yield frame

    def start(self, notify: threading.Event | None = None) -> NewestSlot[Frame] | OrderedQueue[Frame]:
        """Start reading in a thread; returns the slot (live) or bounded queue (file) to take frames from.
        `notify` is set at every frame and at the end, so one taker can wait on several sources."""
        if self._slot is not None:
            return self._slot
        self._slot = NewestSlot(notify) if self.live else OrderedQueue(FILE_QUEUE, notify)
        self._thread = threading.Thread(target=self._read_into, args=(self._slot,), name=f"read {self.name}")
        self._thread.daemon = True  # a camera that blocks in read() must not keep the process alive
        self._thread.start()
        return self._slot

    def _read_into(self, slot: NewestSlot[Frame] | OrderedQueue[Frame]) -> None:
        try:
            for frame in self.frames_in_order():
                slot.put(frame)
        except Closed:  # the taker has gone
            pass
        except SegError as exc:
            self._error = str(exc)
        except Exception as exc:  # a reader's bug must end its source, not hang the run
            self._error = f"{self.name}: reading stopped ({type(exc).__name__}: {exc})"
        finally:
            slot.close()
            self._close_reader()

    def __iter__(self) -> Iterator[Frame]:
        if self.live:
            slot = self.start()
            while True:
                try:
                    yield slot.take()
                except Closed:
                    break
        else:
            yield from self.frames_in_order()
        if self.failure:
            raise SegError(self.failure)

    def close(self, wait_s: float = 2.0) -> None:
        """Stop reading and free the stream or camera. A live reader blocked in a read is given `wait_s` to see it."""
        self._stop.set()
        if self._slot is not None:
            self._slot.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(wait_s)
        if self._thread is None or not self._thread.is_alive():
            self._close_reader()

    def _close_reader(self) -> None:
        closer, self._closer = self._closer, None
        if closer is not None:
            closer()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(
    location: str | int,
    *,
    timeout: float = 10.0,
    reconnect: int = 3,
    out_stem: Path | None = None,
    options: dict[str, str] | None = None,
) -> FrameSource:
    """Open what `location` names (see `kind_of`) as a `FrameSource`; fails here, in one sentence naming it,
    when it cannot be opened: a missing file, a URL that does not answer within `timeout` seconds, a camera
    that is not there, a codec FFmpeg lacks, PyAV or OpenCV not installed (`MissingDependency`).

    A network stream that stops is opened again up to `reconnect` times with backoff. `options` go to FFmpeg
    (e.g. {"rtsp_transport": "tcp"}).
    """
    kind = kind_of(location)
    stem = out_stem if out_stem is not None else stem_of(location)
    name = str(location)
    if kind in ("camera", "gstreamer"):
        from segrt.stream.camera_source import CameraReader

        device: int | str = int(name) if name.isdigit() else name
        camera = CameraReader(device, out_stem=stem, gstreamer=kind == "gstreamer")
        return FrameSource(camera, name=name, out_stem=stem, live=True, kind=kind, rate=camera.rate,
                           closer=camera.close)  # fmt: skip
    if kind in ("url", "video"):
        from segrt.stream.ffmpeg_source import FFmpegReader

        live = kind == "url"
        video = FFmpegReader(name, out_stem=stem, timeout=timeout, reconnect=reconnect if live else 0, live=live,
                             options=options)  # fmt: skip
        return FrameSource(video, name=name, out_stem=stem, live=live, kind=kind, rate=video.rate, closer=video.close)
    if kind == "folder":
        from segrt.image import IMAGE_SUFFIXES

        files = sorted(p for p in Path(name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise SegError(f"{name}: no images in this folder")
        return FrameSource(_images(files, Path(name), stem), name=name, out_stem=stem, live=False, kind=kind)
    if not Path(name).is_file():
        raise SegError(f"{name}: no such file, and not a camera index or a URL ({', '.join(URL_SCHEMES[:6])} ...)")
    return FrameSource(_images([Path(name)], None, stem), name=name, out_stem=stem, live=False, kind=kind)


def _images(files: list[Path], folder: Path | None, stem: Path) -> Iterator[Frame]:
    from segrt.image import read_image

    for index, file in enumerate(files):
        out = stem / file.relative_to(folder).with_suffix("") if folder is not None else stem
        yield Frame(read_image(file), str(file), index, None, out)
