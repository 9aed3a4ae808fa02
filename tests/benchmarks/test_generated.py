"""The generated sets a suite names: made when missing or made with other settings, reused when they match."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segbench import shapes
from segbench.generated import ClipSet, ShapesSet, ensure, is_ready
from segrt.errors import SegError


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
