"""Frames from FFmpeg through PyAV: video files, and network streams (rtsp://, http(s):// MJPEG or anything
FFmpeg reads, udp://, rtp://) with a time-out on every wait and reconnects with backoff when a stream stops.

PyAV's wheels bundle FFmpeg, so nothing here parses a container, a codec or a protocol.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from segrt.errors import MissingDependency, SegError, first_line
from segrt.stream.frame import Frame

INSTALL_AV = "install it with `pip install segexport[video]`"
BACKOFF_S = (0.5, 1.0, 2.0, 4.0)  # between reconnects; the last repeats


def import_av(location: object = None) -> Any:
    """PyAV, or one sentence naming `location` saying how to get it (exit 3)."""
    try:
        import av
    except ImportError:
        where = f"{location}: " if location is not None else ""
        raise MissingDependency(f"{where}videos and streams need PyAV; {INSTALL_AV}") from None
    return av


def rgb_converter(av: Any) -> Callable[[Any], np.ndarray]:
    """A decoded frame -> uint8 H x W x 3 RGB, through one libswscale context kept for the whole stream, on the
    calling thread.

    `frame.to_ndarray(format="rgb24")` makes a new context per frame, and with it (threads=0: one per core) a
    new pool of threads: ten times the conversion's own cost, on the cores the model needs.
    """
    reformatter = av.video.reformatter.VideoReformatter()
    one_thread = swscale_one_thread(av)

    def to_rgb(frame: Any) -> np.ndarray:
        return reformatter.reformat(frame, format="rgb24", **one_thread).to_ndarray()

    return to_rgb


def swscale_one_thread(av: Any) -> dict[str, int]:
    """`reformat`'s keywords for libswscale on the calling thread: PyAV 17 added `threads` (default 0: a thread
    per core); before it, reformatting had no threads and no such keyword."""
    major = av.__version__.split(".")[0]
    return {"threads": 1} if not major.isdigit() or int(major) >= 17 else {}


class FFmpegReader:
    """One video file or network stream, opened at once (a URL that does not answer fails here, after
    `timeout` seconds); iterating decodes its frames as uint8 RGB `Frame`s.

    A file ends at its last frame. A network stream that stops (an error, or its end) is opened again up to
    `reconnect` times, waiting 0.5, 1, 2, 4, 4 ... s between tries; then it ends and `failure` says why.
    """

    def __init__(self, location: str, *, out_stem: Path = Path(), timeout: float = 10.0, reconnect: int = 0,
                 live: bool = False, options: dict[str, str] | None = None) -> None:  # fmt: skip
        self.location = location
        self.out_stem = out_stem
        self.timeout = timeout
        self.reconnect = reconnect
        self.live = live
        self.options = dict(options or {})
        self.failure: str | None = None
        self.rate: Fraction | None = None
        self.time_base: Fraction | None = None
        self._av = import_av(location)
        self._container: Any = self._open()

    def _open(self) -> Any:
        av = self._av
        try:
            container = av.open(self.location, "r", options=self.options, timeout=(self.timeout, self.timeout))
        except av.error.ExitError:  # the interrupt callback: time-out
            raise SegError(self._timed_out()) from None
        except (av.error.FFmpegError, OSError) as exc:
            raise SegError(self._cannot_open(exc)) from None
        if not container.streams.video:
            found = self._streams_words(container)
            container.close()
            raise SegError(f"{self.location}: no video stream in it (FFmpeg finds {found})")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            codec = getattr(stream, "codec_tag", "") or "unknown"
            container.close()
            raise SegError(
                f"{self.location}: FFmpeg (PyAV) has no decoder for its video codec ({codec}); "
                f"re-encode it, e.g. `ffmpeg -i {self.location} -c:v libx264 out.mp4`"
            )
        self.rate = stream.average_rate or stream.guessed_rate or self.rate
        self.time_base = stream.time_base
        return container

    def _timed_out(self) -> str:
        return (
            f"{self.location}: no answer within {self.timeout:g} s; check the address and that the stream is "
            f"running, or wait longer with --timeout"
        )

    def _cannot_open(self, exc: BaseException) -> str:
        if "://" in self.location:
            return f"{self.location}: FFmpeg cannot open the stream ({first_line(exc)}); check the address"
        if not Path(self.location).exists():
            return f"{self.location}: no such file"
        return f"{self.location}: FFmpeg cannot open this video (not a video, or a codec it lacks: {first_line(exc)})"

    @staticmethod
    def _streams_words(container: Any) -> str:
        kinds = [s.type for s in container.streams]
        return ", ".join(kinds) + " stream(s)" if kinds else "no streams"

    def __iter__(self) -> Iterator[Frame]:
        index, tries, stopped = 0, 0, "ended"
        while True:
            if self._container is None:  # a live stream that stopped: try again, waiting longer each time
                if tries >= self.reconnect:
                    self.failure = self._gave_up(index, stopped)
                    return
                time.sleep(BACKOFF_S[min(tries, len(BACKOFF_S) - 1)])
                tries += 1
                try:
                    self._container = self._open()
                except SegError as exc:
                    stopped = str(exc)
                    continue
            try:
                for image, time_s in self._decode():
                    yield Frame(image, self.location, index, time_s, self.out_stem / f"{index:06d}")
                    index, tries = index + 1, 0
                stopped = "ended"
            except SegError as exc:
                stopped = str(exc)
            self.close()
            if not self.live:
                if stopped != "ended":
                    self.failure = stopped
                elif index == 0:
                    self.failure = f"{self.location}: the video has no frames (FFmpeg decodes none)"
                return

    def _gave_up(self, frames: int, why: str) -> str:
        what = "the stream ended" if why == "ended" else why.removeprefix(f"{self.location}: ")
        tries = f"after {self.reconnect} reconnect(s)" if self.reconnect else "with no reconnect (--reconnect 0)"
        return (
            f"{self.location}: the stream stopped after {frames} frame(s) ({what}) and did not come back {tries}; "
            f"check the sender, or allow more tries with --reconnect N"
        )

    def _decode(self) -> Iterator[tuple[np.ndarray, float | None]]:
        av = self._av
        to_rgb = rgb_converter(av)
        try:
            for frame in self._container.decode(video=0):
                yield to_rgb(frame), frame.time
        except av.error.ExitError:
            raise SegError(self._timed_out()) from None
        except av.error.EOFError:
            return
        except (av.error.FFmpegError, OSError) as exc:
            raise SegError(f"{self.location}: FFmpeg stopped reading it ({first_line(exc)})") from None

    def close(self) -> None:
        if self._container is not None:
            container, self._container = self._container, None
            container.close()
