"""segrt.stream.video_sink: what a video holds after writing, for even sizes (the frame wrapped for libswscale)
and odd ones (scaled to the even size 4:2:0 takes), read back with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from segrt.stream.frame import Frame  # noqa: E402
from segrt.stream.paint import Painter  # noqa: E402
from segrt.stream.video_sink import VideoSink  # noqa: E402

PAINTER = Painter([(0, 0, 0), (250, 20, 20), (20, 250, 20)])


def _write(path: Path, kind: str, height: int, width: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    sink = VideoSink(path, kind, Fraction(25), PAINTER)
    rng = np.random.default_rng(3)
    images, labels = [], []
    for index in range(4):
        image = np.full((height, width, 3), 40 * index + 30, np.uint8)
        label = np.zeros((height, width), np.uint8)
        label[: height // 2, : width // 3] = 1
        label[height // 2 :, width // 2 :] = rng.integers(1, 3)
        overlay = PAINTER.overlay(image, label) if kind == "overlay" else None
        sink.write(Frame(image, "cam", index, 0.5 + index * 0.04, Path("cam")), label, overlay)
        images.append(overlay if overlay is not None else image)
        labels.append(label)
    sink.close()
    return images, labels


@pytest.mark.parametrize(("height", "width"), [(48, 64), (45, 61)])
def test_overlay_video_holds_every_frame_at_the_sources_times(tmp_path: Path, height: int, width: int) -> None:
    overlays, _ = _write(tmp_path / "cam.overlay.mp4", "overlay", height, width)
    with av.open(str(tmp_path / "cam.overlay.mp4")) as container:
        frames = list(container.decode(video=0))
    assert [(f.width, f.height) for f in frames] == [(width + width % 2, height + height % 2)] * 4
    assert [round(f.time, 3) for f in frames] == [0.5, 0.54, 0.58, 0.62]
    for frame, overlay in zip(frames, overlays, strict=True):
        decoded = frame.to_ndarray(format="rgb24")[:height, :width].astype(int)
        assert np.abs(decoded - overlay).mean() < 6  # H.264 and 4:2:0: close, not exact


def test_label_video_of_an_odd_size_is_exact(tmp_path: Path) -> None:
    _, labels = _write(tmp_path / "cam.labels.mkv", "labels", 45, 61)
    with av.open(str(tmp_path / "cam.labels.mkv")) as container:
        decoded = [f.to_ndarray() for f in container.decode(video=0)]
    assert [d.shape for d in decoded] == [(45, 61)] * 4  # its own size: not scaled to an even one as H.264 is
    assert all((d == label).all() for d, label in zip(decoded, labels, strict=True))
