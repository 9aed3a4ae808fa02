"""`segbench compare A B` on two real one-case runs (the `segbench --model ...` path), and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segbench.cli import main

ONE_CASE = [
    "--model",
    "unet",
    "--input-size",
    "32x32",
    "--export-arg=--unet-base",
    "--export-arg=4",
    "--export-arg=--unet-depth",
    "--export-arg=2",
    "--shape",
    "1x48x64",
    "--warmup",
    "0",
    "--iterations",
    "3",
]


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A: the fused graph with its baseline; B: the unfused graph without one. Exports shared with test_suite_run."""
    cache = tmp_path_factory.getbasetemp() / "segbench-cache"
    folder = tmp_path_factory.mktemp("compare")
    a, b = folder / "a", folder / "b"
    assert main([*ONE_CASE, "--out", str(a), "--cache", str(cache)]) == 0
    assert main([*ONE_CASE, "--no-fuse", "--no-baseline", "--out", str(b), "--cache", str(cache)]) == 0
    return a, b


def test_one_case_runs_the_case_and_its_baseline(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    cases_a = json.loads((a / "results.json").read_text())["cases"]
    cases_b = json.loads((b / "results.json").read_text())["cases"]
    assert [c["pipeline"] for c in cases_a] == ["pytorch-eager cpu", "ort-cpu fp32 fused"]
    assert [c["pipeline"] for c in cases_b] == ["ort-cpu fp32 unfused"]
    assert cases_a[1]["speedup"]["over"] == cases_a[0]["id"]
    assert "absent" in cases_b[0]["speedup"]
    assert "| ort-cpu fp32 unfused | 1x48x64 |" in (b / "report.md").read_text()


def test_compare_puts_matching_cases_side_by_side(
    two_runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = two_runs
    out = tmp_path / "compare.md"
    assert main(["compare", str(a), str(a / "results.json"), "-o", str(out)]) == 0
    text = out.read_text()
    cases = json.loads((a / "results.json").read_text())["cases"]
    for case in cases:
        p50 = case["timing"]["e2e"]["p50"]
        shown = f"{p50:,.{2 if p50 < 10 else 1}f}"
        assert f"| {case['id'].replace('|', chr(92) + '|')} | {shown} | {shown} | 1.00 |" in text
    assert "Differences in the environment" not in text  # a run compared with itself
    assert "B/A" in capsys.readouterr().out


def test_compare_shows_cases_only_one_run_has(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two_runs
    out = tmp_path / "compare.md"
    assert main(["compare", str(a), str(b), "-o", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| unet")]
    assert len(rows) == 3
    assert all(("not in run" in row) for row in rows)  # no case id is in both runs


def test_compare_refuses_what_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(tmp_path), str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "results.json"
    bad.write_text("{ not json")
    assert main(["compare", str(bad), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a readable segbench results.json" in err and len(err.splitlines()) == 1
