"""Reading a labelled clip: every way a video or its labels can be wrong is one sentence naming the file."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from segbench.data.clip import generate_clip
from segbench.data.video import open_clip
from segrt.errors import MissingDependency, SegError
from segrt.image import write_labels_png

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def good_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_clip(tmp_path_factory.mktemp("clip") / "good", frames=4, seed=1, height=64, width=80, fps=12)


def own_clip(root: Path, frames: int = 3, size: tuple[int, int] = (48, 64), labels: int | None = None) -> Path:
    """A user's clip: any video file name, labels/NNNNNN.png, no clip.json."""
    (root / "labels").mkdir(parents=True)
    writer = cv2.VideoWriter(str(root / "drive.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (size[1], size[0]))
    for index in range(frames):
        writer.write(np.full((*size, 3), 30 * index, np.uint8))
    writer.release()
    for index in range(frames if labels is None else labels):
        write_labels_png(root / "labels" / f"{index:06d}.png", np.full(size, index % 2, np.uint8))
    return root


def test_a_generated_clip_and_a_users_own_clip_are_read_alike(good_clip: Path, tmp_path: Path) -> None:
    clip = open_clip(good_clip)
    assert clip.name == "good" and clip.video == good_clip / "clip.avi"
    assert clip.frames.shape == (4, 64, 80, 3) and clip.frames.dtype == np.uint8 and clip.fps == 12.0
    assert clip.describe() == {"folder": str(good_clip), "video": str(good_clip / "clip.avi"), "frames": 4,
                               "height": 64, "width": 80, "fps": 12.0}  # fmt: skip
    own = open_clip(own_clip(tmp_path / "drive"))
    assert own.video.name == "drive.avi" and own.labels.shape == (3, 48, 64) and own.fps == 5.0
    assert (own.labels[1] == 1).all() and abs(int(own.frames[2].mean()) - 60) <= 2


def test_a_missing_folder_or_video_is_named(tmp_path: Path) -> None:
    with pytest.raises(SegError, match=f"{tmp_path / 'nowhere'}: no such clip folder; a clip folder holds"):
        open_clip(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SegError, match=r"empty: a clip folder holds one video file .* \(found none\)"):
        open_clip(tmp_path / "empty")


def test_a_video_opencv_cannot_open_is_named(tmp_path: Path) -> None:
    root = own_clip(tmp_path / "broken")
    (root / "drive.avi").write_bytes(b"this is not a video" * 10)
    with pytest.raises(SegError, match=f"{root / 'drive.avi'}: OpenCV cannot open this video"):
        open_clip(root)


def test_a_video_without_frames_is_named(tmp_path: Path) -> None:
    root = own_clip(tmp_path / "none", frames=0, labels=1)
    with pytest.raises(SegError, match=f"{root / 'drive.avi'}: the video has no frames"):
        open_clip(root)


class SizeChangingCapture:
    """What a camera or a GStreamer source can do (OpenCV's FFmpeg backend rescales files to their first size)."""

    def __init__(self, location: str) -> None:
        self.index = 0
        self.sizes = [(48, 64), (48, 64), (40, 56), (48, 64)]

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.index == len(self.sizes):
            return False, None
        self.index += 1
        return True, np.zeros((*self.sizes[self.index - 1], 3), np.uint8)

    def get(self, prop: int) -> float:
        return 25.0

    def release(self) -> None:
        pass


def test_a_video_that_changes_size_mid_stream_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = own_clip(tmp_path / "sizes", frames=4)
    fake = types.SimpleNamespace(VideoCapture=SizeChangingCapture, CAP_PROP_FPS=5)
    monkeypatch.setitem(sys.modules, "cv2", fake)
    with pytest.raises(SegError, match=r"drive.avi: frame 2 is 56x40 but the video began at 64x48 \(width x height\)"):
        open_clip(root)


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        (2, r"labels/000002.png: missing \(1 of 3 label maps are\); drive.avi has 3 frames"),
        (5, r"labels/000003.png: 2 label map\(s\) beyond the 3 frames"),
    ],
)
def test_labels_that_do_not_match_the_frames_are_named(tmp_path: Path, labels: int, words: str) -> None:
    with pytest.raises(SegError, match=words):
        open_clip(own_clip(tmp_path / "c", labels=labels))


def test_a_label_map_of_another_size_is_named(tmp_path: Path) -> None:
    root = own_clip(tmp_path / "c")
    write_labels_png(root / "labels" / "000001.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(SegError, match=r"000001.png: label map is 10x10 but the video's frames are 64x48"):
        open_clip(root)


def test_without_opencv_reading_a_clip_says_what_to_install(good_clip: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(MissingDependency, match=r"needs OpenCV.*pip install 'segexport\[bench\]'"):
        open_clip(good_clip)
