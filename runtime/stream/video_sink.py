"""Videos out, through PyAV: the overlay or colour map as H.264 in MP4 (NVENC where the GPU has it, libx264
otherwise), the labels as FFV1 gray8 in MKV (lossless: class ids exact, read back frame by frame).

Each video keeps its source's frame rate and timestamps. It is written under a hidden temporary name and
renamed into place when closed; closing (also after Ctrl-C or SIGTERM) flushes the encoder and writes the
container's index, so what was written so far plays.
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from segrt.errors import SegError, first_line
from segrt.files import write_problem
from segrt.stream.ffmpeg_source import import_av, swscale_one_thread
from segrt.stream.frame import Frame

TIME_BASE = Fraction(1, 90000)  # the MPEG clock: fine enough for any source's timestamps
X264_OPTIONS = {"preset": "ultrafast", "crf": "23", "threads": "1"}  # cheapest preset, 1 thread: cores are the model's
_h264_encoder: str | None = None  # decided once per process: h264_nvenc when it opens, else libx264


def h264_encoder(av: Any) -> str:
    """h264_nvenc when FFmpeg has it and a GPU opens it, else libx264."""
    global _h264_encoder
    if _h264_encoder is None:
        _h264_encoder = "libx264"
        if "h264_nvenc" in av.codecs_available:
            try:
                context = av.CodecContext.create("h264_nvenc", "w")
                context.width, context.height, context.pix_fmt = 64, 64, "yuv420p"
                context.time_base = Fraction(1, 30)
                context.open()
                _h264_encoder = "h264_nvenc"
            except Exception:  # no NVIDIA GPU or driver: the CPU encoder
                pass
    return _h264_encoder


class VideoSink:
    """One video of one source: `kind` "overlay" or "color" (H.264), or "labels" or "confidence" (FFV1, exact).
    Opened at the first frame, whose size every later frame has (the source guarantees one size)."""

    def __init__(self, path: Path, kind: str, rate: float | Fraction | None, painter: Any = None) -> None:
        self.path, self.kind, self.painter = path, kind, painter
        self.rate = Fraction(rate).limit_denominator(1001) if rate else Fraction(30)
        self.needs_overlay = kind == "overlay"
        self.files = 0
        self._av = import_av(path)
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
        self._container: Any = None
        self._stream: Any = None
        self._last_pts = -1
        # one libswscale context for the video, on this thread: `VideoFrame.reformat` makes a context (and a pool
        # of threads) per frame, several times the conversion's own cost
        self._reformatter = self._av.video.reformatter.VideoReformatter()
        self._one_thread = swscale_one_thread(self._av)

    def _open(self, height: int, width: int) -> None:
        av = self._av
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self._tmp), "w")
        except OSError as exc:
            raise SegError(write_problem(exc, self.path, "another -o")) from None
        if self.kind in ("labels", "confidence"):
            stream = self._container.add_stream("ffv1", rate=self.rate)
            stream.pix_fmt = "gray"
        else:
            codec = h264_encoder(av)
            stream = self._container.add_stream(codec, rate=self.rate)
            stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                stream.options = dict(X264_OPTIONS)
        if self.kind == "labels":  # gray FFV1 takes any size: scaled, class ids would not be exact
            stream.width, stream.height = width, height
        else:
            stream.width, stream.height = width + width % 2, height + height % 2  # 4:2:0 takes even sizes
        stream.codec_context.time_base = TIME_BASE
        self._stream = stream

    def write(self, frame: Frame, labels: np.ndarray, overlay: np.ndarray | None) -> None:
        if self._container is None:
            self._open(*labels.shape[:2])
        av = self._av
        if self.kind in ("labels", "confidence"):
            gray = labels if self.kind == "labels" else frame.confidence
            video_frame = av.VideoFrame.from_ndarray(gray, format="gray")
        else:
            rgb = np.ascontiguousarray(overlay if self.kind == "overlay" else self.painter.colorize(labels))
            if rgb.shape[:2] == (self._stream.height, self._stream.width):  # wrapped, not copied: read at once
                video_frame = av.VideoFrame.from_numpy_buffer(rgb, format="rgb24")
            else:  # an odd size, scaled to the even one 4:2:0 takes: from a copy with aligned rows
                video_frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            video_frame = self._reformatter.reformat(
                video_frame, self._stream.width, self._stream.height, "yuv420p", **self._one_thread
            )
        video_frame.pts = self._pts(frame)
        video_frame.time_base = TIME_BASE
        try:
            self._container.mux(self._stream.encode(video_frame))
        except OSError as exc:
            raise SegError(write_problem(exc, self.path, "another -o")) from None
        except av.error.FFmpegError as exc:
            raise SegError(f"{self.path}: FFmpeg cannot encode this frame ({first_line(exc)})") from None

    def _pts(self, frame: Frame) -> int:
        """The source's time on the MPEG clock; strictly rising (a stream that repeats a time gets the next)."""
        if frame.time_s is not None:
            pts = round(frame.time_s / TIME_BASE)
        else:
            pts = round(frame.index / self.rate / TIME_BASE)
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        return pts

    def close(self) -> None:
        """Flush the encoder, write the index, rename into place. Safe to call twice."""
        container, self._container = self._container, None
        if container is None:
            return
        try:
            container.mux(self._stream.encode(None))
            container.close()
            os.replace(self._tmp, self.path)
            self.files = 1
        except (OSError, self._av.error.FFmpegError) as exc:
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            if isinstance(exc, OSError):
                raise SegError(write_problem(exc, self.path, "another -o")) from None
            raise SegError(f"{self.path}: FFmpeg cannot finish the video ({first_line(exc)})") from None
