"""The reference model's data step: a damaged shapes set is refused in one sentence naming the file and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from segbench.data import train_reference
from segbench.data.train_reference import ensure_data
from segrt.errors import SegError


@pytest.mark.parametrize("content", ["{ not json", "[1, 2]"])
def test_a_damaged_dataset_json_names_the_file_and_says_to_regenerate(tmp_path: Path, content: str) -> None:
    info = tmp_path / "shapes" / "dataset.json"
    info.parent.mkdir()
    info.write_text(content)
    with pytest.raises(SegError) as caught:
        ensure_data(info.parent, train=2, val=1, seed=0)
    message = str(caught.value)
    assert message.startswith(f"{info}: not a") and f"delete {info.parent}" in message and "\n" not in message


def test_the_cli_prints_it_on_one_line_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dataset.json").write_text("{ truncated")
    pytest.importorskip("torch")
    assert train_reference.main(["--data", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "dataset.json: not a readable dataset.json" in err


def test_a_matching_set_is_reused_without_regenerating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dataset.json").write_text('{"train": 2, "val": 1, "seed": 0}')
    monkeypatch.setattr(train_reference.shapes, "generate", lambda *a, **k: pytest.fail("regenerated"))
    assert ensure_data(tmp_path, train=2, val=1, seed=0) == tmp_path
