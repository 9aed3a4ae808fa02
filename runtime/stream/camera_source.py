"""Frames from a camera (an index or /dev/videoN) or a GStreamer pipeline, through OpenCV.

A GStreamer pipeline needs an OpenCV built with GStreamer: a Jetson's system OpenCV (JetPack's python3-opencv)
has it, the opencv-python wheels do not. Its last element must be an `appsink` giving BGR frames.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from segrt.errors import MissingDependency, SegError
from segrt.stream.frame import Frame

NO_GSTREAMER = (
    "this OpenCV has no GStreamer; use a system OpenCV built with it (on a Jetson: JetPack's python3-opencv, "
    "in a venv made with --system-site-packages) or give the camera or URL itself"
)


def import_cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise MissingDependency("cameras need OpenCV; install it with `pip install segexport[video]`") from None
    return cv2


def has_gstreamer(cv2: Any) -> bool:
    info = cv2.getBuildInformation() if hasattr(cv2, "getBuildInformation") else ""
    return any(line.strip().startswith("GStreamer:") and "YES" in line for line in info.splitlines())


class CameraReader:
    """One camera or GStreamer pipeline, opened at once (a camera that is not there fails here).

    `time_s` is the time since the first frame.
    """

    def __init__(self, location: int | str, *, out_stem: Path = Path(), gstreamer: bool = False) -> None:
        self.location = location
        self.name = str(location)
        self.out_stem = out_stem
        self.failure: str | None = None
        self.rate = None
        cv2 = import_cv2()
        if gstreamer and not has_gstreamer(cv2):
            raise MissingDependency(f"{location}: a GStreamer pipeline, but {NO_GSTREAMER}")
        self._cv2 = cv2
        self._capture = cv2.VideoCapture(location, cv2.CAP_GSTREAMER) if gstreamer else cv2.VideoCapture(location)
        if not self._capture.isOpened():
            self._capture.release()
            if gstreamer:
                raise SegError(f"{location}: OpenCV's GStreamer cannot start this pipeline; try it with gst-launch-1.0")
            raise SegError(f"camera {location}: OpenCV cannot open it (no such camera, or it is busy); list the "
                           f"cameras with `v4l2-ctl --list-devices` and give its index or /dev/videoN")  # fmt: skip
        fps = self._capture.get(cv2.CAP_PROP_FPS) if hasattr(cv2, "CAP_PROP_FPS") else 0
        self.rate = fps if fps and fps > 0 else None

    def __iter__(self) -> Iterator[Frame]:
        index, started = 0, None
        while self._capture is not None:
            ok, bgr = self._capture.read()
            if not ok:
                break
            started = started if started is not None else time.monotonic()
            image = np.ascontiguousarray(bgr[..., ::-1])
            yield Frame(image, self.name, index, time.monotonic() - started, self.out_stem / f"{index:06d}")
            index += 1
        self.close()
        if index == 0:
            self.failure = f"{self.name}: the camera gave no frame"

    def close(self) -> None:
        if self._capture is not None:
            capture, self._capture = self._capture, None
            capture.release()
