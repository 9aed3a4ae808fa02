"""A labelled clip read into memory once per run: the frames as OpenCV decodes the video, one label map per frame.

A clip folder holds a video file and labels/000000.png, 000001.png, ... (palette or
grayscale PNGs of class ids, 255 void), one per frame -- what `python -m segbench.data.clip`
writes, and what a user's own labelled drive needs to be. Everything is checked when the
clip is opened, before any benchmark time is spent: a video that cannot be opened, has
no frames or changes size mid-stream, and label maps that are missing or of another size
are each one sentence naming the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segrt.errors import MissingDependency, SegError
from segrt.image import read_labels_png

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v")
LABELS_DIR = "labels"
LAYOUT = "a clip folder holds one video file and labels/000000.png, ... one per frame (python -m segbench.data.clip)"


@dataclass(frozen=True)
class LabelledClip:
    """Frames (N x H x W x 3 uint8 RGB, as decoded) and their ground truth (N x H x W uint8), in order."""

    folder: Path
    video: Path
    frames: np.ndarray
    labels: np.ndarray
    fps: float

    @property
    def name(self) -> str:
        return self.folder.name

    def describe(self) -> dict[str, Any]:
        count, height, width = self.labels.shape
        return {"folder": str(self.folder), "video": str(self.video), "frames": count, "height": height,
                "width": width, "fps": self.fps}  # fmt: skip


def open_clip(folder: str | os.PathLike[str]) -> LabelledClip:
    """Read and check a clip folder; raises SegError naming the file (MissingDependency without OpenCV)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SegError(f"{folder}: no such clip folder; {LAYOUT}")
    video = _video_file(folder)
    frames, fps = read_video(video)
    labels = _read_labels(folder / LABELS_DIR, video, frames.shape[:3])
    return LabelledClip(folder, video, frames, labels, fps)


def _video_file(folder: Path) -> Path:
    """clip.json's video where there is one, else the one video file in the folder."""
    info = folder / "clip.json"
    if info.is_file():
        try:
            return folder / str(json.loads(info.read_text())["video"])
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SegError(f"{info}: not a readable clip.json ({exc}); delete it or the clip folder") from None
    videos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if len(videos) != 1:
        found = f"found {', '.join(p.name for p in videos)}" if videos else "found none"
        raise SegError(f"{folder}: {LAYOUT} ({found})")
    return videos[0]


def read_video(path: Path) -> tuple[np.ndarray, float]:
    """Every frame of a video (N x H x W x 3 RGB) and its frame rate; refuses one it cannot use, naming it."""
    try:
        import cv2
    except ImportError:
        raise MissingDependency(
            f"{path}: reading a video needs OpenCV, which is not installed; install the benchmark extra: "
            "pip install 'segexport[bench]'"
        ) from None
    if not path.is_file():
        raise SegError(f"{path}: no such video file; {LAYOUT}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SegError(f"{path}: OpenCV cannot open this video; re-encode it (MJPEG or H.264) or check the file")
    frames: list[np.ndarray] = []
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if frames and bgr.shape != frames[0].shape:
                raise SegError(
                    f"{path}: frame {len(frames)} is {bgr.shape[1]}x{bgr.shape[0]} but the video began at "
                    f"{frames[0].shape[1]}x{frames[0].shape[0]} (width x height); a clip keeps one frame size"
                )
            frames.append(bgr[..., ::-1])
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        capture.release()
    if not frames:
        raise SegError(f"{path}: the video has no frames (OpenCV decodes none); check the file")
    return np.ascontiguousarray(np.stack(frames)), fps if fps > 0 else 30.0


def _read_labels(folder: Path, video: Path, shape: tuple[int, ...]) -> np.ndarray:
    """labels/000000.png ... for every frame, each the frame's size."""
    count, height, width = shape
    if not folder.is_dir():
        raise SegError(f"{folder}: no label folder beside {video.name}; {LAYOUT}")
    present = sorted(p.name for p in folder.glob("*.png"))
    expected = [f"{index:06d}.png" for index in range(count)]
    missing = sorted(set(expected) - set(present))
    if missing:
        raise SegError(
            f"{folder / missing[0]}: missing ({len(missing)} of {count} label maps are); {video.name} has {count} "
            f"frames and each needs labels/NNNNNN.png"
        )
    extra = sorted(set(present) - set(expected))
    if extra:
        raise SegError(
            f"{folder / extra[0]}: {len(extra)} label map(s) beyond the {count} frames OpenCV decodes from "
            f"{video.name}; the video and labels/ must hold the same frames"
        )
    labels = np.empty((count, height, width), np.uint8)
    for index, name in enumerate(expected):
        frame_labels = read_labels_png(folder / name)
        if frame_labels.shape != (height, width):
            raise SegError(
                f"{folder / name}: label map is {frame_labels.shape[1]}x{frame_labels.shape[0]} but the video's "
                f"frames are {width}x{height} (width x height); each label map must match its frame"
            )
        labels[index] = frame_labels
    return labels
