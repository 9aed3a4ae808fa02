"""The generated sets a suite names: made when missing or made with other settings, reused when they match."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from segbench.cli import main
from segbench.data import shapes
from segbench.data.generated import ClipSet, ShapesSet, ensure, is_ready, require_modules
from segrt.errors import MissingDependency, SegError

SHAPES_AND_CLIP_SUITE = """
name = "t"
shapes = ["1x48x64"]
[generate]
shapes = {{ out = "{root}/shapes", train = 2, val = 1 }}
clip = {{ out = "{root}/clip", frames = 3, size = "64x80" }}
[[model]]
name = "unet"
unet_base = 4
unet_depth = 2
dataset = "{root}/shapes"
video = "{root}/clip"
runs = [{{ backend = "ort-cpu" }}]
"""


def test_a_missing_set_is_made_then_reused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wanted = ShapesSet(tmp_path / "shapes", train=3, val=1, seed=2)
    assert not is_ready(wanted)
    assert ensure(wanted) is True
    assert "making the labelled shapes set" in capsys.readouterr().err  # the progress bar's line
    assert is_ready(wanted) and len(list((tmp_path / "shapes" / "JPEGImages").iterdir())) == 4
    stamp = (tmp_path / "shapes" / "dataset.json").stat().st_mtime_ns
    assert ensure(wanted) is False and (tmp_path / "shapes" / "dataset.json").stat().st_mtime_ns == stamp


def test_other_settings_or_an_unfinished_set_are_made_again(tmp_path: Path, monkeypatch) -> None:
    ensure(ShapesSet(tmp_path / "s", train=2, val=1, seed=0))
    assert not is_ready(ShapesSet(tmp_path / "s", train=2, val=1, seed=1))
    assert ensure(ShapesSet(tmp_path / "s", train=2, val=1, seed=1)) is True
    assert json.loads((tmp_path / "s" / "dataset.json").read_text())["seed"] == 1
    (tmp_path / "s" / "dataset.json").write_text("{ half written")  # the record is written last: this set stopped
    made = []
    monkeypatch.setattr(shapes, "generate", lambda *a, **k: made.append(k))
    assert ensure(ShapesSet(tmp_path / "s", train=2, val=1, seed=1)) is True and made


def test_a_clip_is_made_and_reused_by_its_settings(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    clip = ClipSet(tmp_path / "clip", frames=3, height=64, width=64, fps=10.0)
    assert ensure(clip) is True and is_ready(clip)
    assert not is_ready(ClipSet(tmp_path / "clip", frames=4, height=64, width=64, fps=10.0))
    assert ensure(clip) is False


def test_a_file_where_the_set_goes_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "shapes").write_text("")
    with pytest.raises(SegError, match="shapes: exists and is not a folder; move it, or point"):
        ensure(ShapesSet(tmp_path / "shapes", train=1, val=1))


def test_without_opencv_the_clip_is_refused_before_the_shapes_set_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # as on an install without OpenCV
    monkeypatch.setattr(shapes, "generate", lambda *a, **k: pytest.fail("the shapes set was made before the check"))
    suite = tmp_path / "suite.toml"
    suite.write_text(SHAPES_AND_CLIP_SUITE.format(root=tmp_path))
    assert main([str(suite), "--out", str(tmp_path / "run")]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"making the labelled clip {tmp_path / 'clip'} (3 frames" in err
    assert "needs OpenCV (cv2), which is not installed; install the benchmark extra: " in err
    assert err.endswith("pip install 'segexport[bench]'")  # the README's install, as segbench's other errors say
    assert not (tmp_path / "shapes").exists() and not (tmp_path / "run").exists()


def test_a_set_already_made_needs_no_generator_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = ShapesSet(tmp_path / "shapes", train=1, val=1)
    ensure(made)
    monkeypatch.setitem(sys.modules, "PIL", None)
    require_modules([made])  # reused as it is: nothing to import
    with pytest.raises(MissingDependency, match=r"needs Pillow \(PIL\), which is not installed"):
        require_modules([made, ShapesSet(tmp_path / "other", train=1, val=1)])
