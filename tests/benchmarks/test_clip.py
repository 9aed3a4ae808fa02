"""The generated labelled clip: deterministic, smooth motion, per-frame noise and light, a video OpenCV reads back."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from segbench.data import clip
from segbench.data.clip import generate_clip, plan_clip
from segbench.data.scenes import CLASSES
from segbench.data.video import open_clip
from segrt.errors import SegError

pytest.importorskip("cv2")  # the clip is an MJPEG video written and read with OpenCV (the bench and video extras)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_clip(tmp_path_factory.mktemp("clip") / "a", frames=6, seed=3, height=96, width=128, fps=10)


def test_the_same_arguments_give_byte_identical_files(small_clip: Path, tmp_path: Path) -> None:
    again = _files(generate_clip(tmp_path / "b", frames=6, seed=3, height=96, width=128, fps=10))
    first = _files(small_clip)
    assert sorted(first) == ["clip.avi", "clip.json", *(f"labels/{i:06d}.png" for i in range(6))]
    assert [name for name in first if name != "clip.json" and first[name] != again[name]] == []
    other = _files(generate_clip(tmp_path / "c", frames=6, seed=4, height=96, width=128, fps=10))
    assert first["clip.avi"] != other["clip.avi"] and first["labels/000000.png"] != other["labels/000000.png"]


def test_the_record_says_how_to_make_it_again(small_clip: Path) -> None:
    info = json.loads((small_clip / "clip.json").read_text())
    assert {k: info[k] for k in ("frames", "seed", "height", "width", "fps")} == {
        "frames": 6, "seed": 3, "height": 96, "width": 128, "fps": 10.0,
    }  # fmt: skip
    assert info["command"].endswith("--frames 6 --seed 3 --size 96x128 --fps 10")
    assert info["classes"] == list(CLASSES) and info["video"] == "clip.avi"


def test_the_video_decodes_to_the_rendered_frames_with_their_labels(small_clip: Path) -> None:
    read = open_clip(small_clip)
    plan = plan_clip(3, 96, 128, 10)
    assert read.frames.shape == (6, 96, 128, 3) and read.labels.shape == (6, 96, 128) and read.fps == 10.0
    for index in range(6):
        image, labels = plan.frame(index)
        assert (read.labels[index] == labels).all()
        # MJPEG smooths the sensor noise away and keeps the picture: the colours (in RGB order) stay
        decoded = read.frames[index].astype(float)
        assert np.abs(decoded - image).mean() < 10
        np.testing.assert_allclose(decoded.mean(axis=(0, 1)), image.mean(axis=(0, 1)), atol=3)


def test_shapes_move_smoothly_and_the_labels_follow_them() -> None:
    plan = plan_clip(0, 240, 320, 30)
    labels = [plan.frame(index)[1] for index in range(0, 90, 3)]
    assert set(np.unique(labels[0])) == set(range(len(CLASSES)))  # every class is in the first frame
    moved = [float(np.mean(a != b)) for a, b in itertools.pairwise(labels)]
    assert all(share < 0.08 for share in moved)  # 3 frames apart, a small part of the frame changes class
    assert sum(share > 0 for share in moved) == len(moved)  # and something moves between every pair
    assert float(np.mean(labels[0] != labels[-1])) > max(moved)  # over 3 s they have gone further


def test_every_frame_has_its_own_noise_and_the_light_changes_over_the_clip() -> None:
    plan = plan_clip(0, 240, 320, 30)
    assert plan.scene(0).noise_seed != plan.scene(1).noise_seed
    first, second = (plan.frame(index)[0].astype(int) for index in (0, 1))
    assert 0 < np.abs(first - second).mean() < 20  # noise and a little motion, not a different picture
    gains = [plan.scene(index).light[0] for index in range(0, 300, 10)]
    assert max(gains) / min(gains) > 1.2  # the light rises and falls by more than a fifth
    means = [plan.frame(index)[0].mean() for index in (0, 75, 150)]
    assert max(means) - min(means) > 3


def test_a_shorter_clip_is_the_start_of_a_longer_one(tmp_path: Path) -> None:
    short = open_clip(generate_clip(tmp_path / "short", frames=3, seed=3, height=96, width=128, fps=10))
    long = open_clip(generate_clip(tmp_path / "long", frames=6, seed=3, height=96, width=128, fps=10))
    assert (short.labels == long.labels[:3]).all()


def test_remaking_a_clip_shorter_leaves_no_stale_labels(tmp_path: Path) -> None:
    generate_clip(tmp_path / "c", frames=5, seed=1, height=64, width=64)
    generate_clip(tmp_path / "c", frames=3, seed=1, height=64, width=64)
    assert sorted(p.name for p in (tmp_path / "c" / "labels").iterdir()) == [f"{i:06d}.png" for i in range(3)]
    assert open_clip(tmp_path / "c").labels.shape == (3, 64, 64)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--frames", "1"], "--frames 1: a clip needs at least 2 frames"),
        (["--size", "32x32"], "--size 32x32: give a height and width from 64 to 4096"),
        (["--size", "big"], "--size 'big': give HEIGHTxWIDTH"),
        (["--fps", "0"], "--fps 0: must be positive"),
    ],
)
def test_bad_arguments_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv, words) -> None:
    assert clip.main([str(tmp_path / "c"), *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("segbench.data.clip: error:") == 1 and "Traceback" not in err
    assert not (tmp_path / "c" / "clip.json").exists()


def test_an_unwritable_folder_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SegError, match="cannot create the clip folder"):
        generate_clip(tmp_path / "file" / "clip", frames=2, height=64, width=64)
