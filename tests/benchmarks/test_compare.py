"""`segbench compare A B` on two real one-case runs (the `segbench --model ...` path), and its errors."""

from __future__ import annotations

import json
import re
from itertools import takewhile
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


def run_record(cpu: str, cases: list[dict]) -> dict:
    """A results.json record with only what compare reads."""
    env = {"cpu": cpu, "cores_usable": 2, "gpu": {}, "git": {"commit": "c" * 40, "dirty": False}, "versions": {}}
    return {"suite": {"name": "cpu-full"}, "started": "2025-01-01T00:00:00", "environment": env, "cases": cases}


def measured(case_id: str, p50: float, speedup: float, agreement: float) -> dict:
    return {
        "id": case_id,
        "status": "ok",
        "timing": {"e2e": {"p50": p50}},
        "speedup": {"p50": speedup},
        "accuracy": {"pixel_agreement": agreement},
    }


def write_run(folder: Path, record: dict) -> Path:
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(record))
    return folder


PLAIN_HEADER = "| case | A e2e p50 ms | B e2e p50 ms | B/A | A speed-up | B speed-up | A agreement | B agreement |"


def markdown_table(lines: list[str], first: str) -> list[dict[str, str]]:
    """The rows of the Markdown table whose header starts with `| first |`, each by column name."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first} |"))

    def cells(line: str) -> list[str]:
        return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)[1:-1]]

    body = takewhile(lambda line: line.startswith("|"), lines[start + 2 :])
    return [dict(zip(cells(lines[start]), cells(line), strict=True)) for line in body]


FUSED, INT8, FP16 = (f"fcn | ort-cpu {p} fused | 1x612x640" for p in ("fp32", "int8", "fp16"))


def test_compare_puts_matching_cases_side_by_side_with_their_ratios(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = run_record(
        "AMD EPYC",
        [measured(FUSED, 100.0, 1.2, 0.9973), measured(INT8, 8.0, 5.0, 0.99), measured(FP16, 90.0, 1.3, 0.9999)],
    )
    failed = {"id": FP16, "status": "failed", "reason": "export: parity"}
    b = run_record("Intel Xeon", [measured(FUSED, 50.0, 2.4, 0.995), measured(INT8, 10.0, 4.0, 1.0), failed])
    out = tmp_path / "compare.md"
    assert main(["compare", str(write_run(tmp_path / "a", a)), str(write_run(tmp_path / "b", b)), "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert PLAIN_HEADER in lines  # no tail figures, no mIoU, no clip in either run: no optional columns
    assert (
        r"| fcn \| ort-cpu fp32 fused \| 1x612x640 | 100.0 | 50.0 | 0.50 | 1.20x | 2.40x | 99.73 % | 99.50 % |" in lines
    )
    assert (
        r"| fcn \| ort-cpu int8 fused \| 1x612x640 | 8.00 | 10.0 | 1.25 | 5.00x | 4.00x | 99.00 % | 100.00 % |" in lines
    )
    assert r"| fcn \| ort-cpu fp16 fused \| 1x612x640 | 90.0 | failed | — | 1.30x | — | 99.99 % | — |" in lines
    assert "- cpu: A AMD EPYC / B Intel Xeon" in lines
    printed = capsys.readouterr().out
    assert "0.50" in printed and "1.25" in printed and "differs: cpu: A AMD EPYC / B Intel Xeon" in printed


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


def test_runs_over_a_clip_are_compared_with_their_flicker(tmp_path: Path) -> None:
    clip_id = "unet | ort-cpu fp16 fused | clip shapes-clip-60"

    def over_clip(flicker: float) -> dict:
        case = measured(clip_id, 7.0, 30.0, 1.0)
        case["clip"] = "build/shapes-clip-60"
        case["accuracy"]["clip"] = {"flicker": flicker}
        return case

    a = run_record("AMD EPYC", [measured(FUSED, 100.0, 1.2, 0.9973), over_clip(0.0108)])
    b = run_record("AMD EPYC", [measured(FUSED, 100.0, 1.2, 0.9973), over_clip(0.0125)])
    out = tmp_path / "compare.md"
    assert main(["compare", str(write_run(tmp_path / "a", a)), str(write_run(tmp_path / "b", b)), "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert any(
        line.startswith("| case |") and line.endswith("| A agreement | B agreement | A flicker | B flicker |")
        for line in lines
    )
    row = r"| unet \| ort-cpu fp16 fused \| clip shapes-clip-60 | 7.00 | 7.00 | 1.00 | 30.00x | 30.00x | 100.00 % "
    assert row + "| 100.00 % | 1.08 % | 1.25 % |" in lines
    assert any(line.startswith(r"| fcn \| ort-cpu fp32 fused") and line.endswith("| — | — |") for line in lines)


def test_tail_columns_show_what_each_runs_report_shows(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    """A: the same run as recorded before the tail figures (no "tail"); B: the real run, whose fused case and
    pytorch-eager baseline both carry tail figures."""
    a, _ = two_runs
    record = json.loads((a / "results.json").read_text())
    older = json.loads(json.dumps(record))
    for case in older["cases"]:
        del case["tail"]
    out = tmp_path / "compare.md"
    assert main(["compare", str(write_run(tmp_path / "older", older)), str(a), "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert next(line for line in lines if line.startswith("| case |")) == PLAIN_HEADER + (
        " A tail | B tail | A tail MiB @1080p | B tail MiB @1080p |"
    )
    compared = {row["case"]: row for row in markdown_table(lines, "case")}
    reported = {
        (r["model"], r["pipeline"]): r for r in markdown_table((a / "report.md").read_text().splitlines(), "model")
    }
    assert [c["pipeline"] for c in record["cases"]] == ["pytorch-eager cpu", "ort-cpu fp32 fused"]
    for case in record["cases"]:
        row, report_row = compared[case["id"]], reported[(case["label"], case["pipeline"])]
        assert row["A tail"] == row["A tail MiB @1080p"] == "—"
        assert report_row["tail"] != "—" and report_row["tail MiB @1080p"] != "—"
        assert (row["B tail"], row["B tail MiB @1080p"]) == (report_row["tail"], report_row["tail MiB @1080p"])


def test_no_tail_columns_where_no_case_has_tail_figures(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    _, b = two_runs  # the unfused graph alone: its tail is {"absent": why}
    assert "absent" in json.loads((b / "results.json").read_text())["cases"][0]["tail"]
    out = tmp_path / "compare.md"
    assert main(["compare", str(b), str(b), "-o", str(out)]) == 0
    assert PLAIN_HEADER in out.read_text().splitlines()


def test_runs_scored_on_a_labelled_set_are_compared_with_their_miou(tmp_path: Path) -> None:
    def scored(case_id: str, dataset: dict) -> dict:
        case = measured(case_id, 100.0, 1.2, 0.9973)
        case["accuracy"]["dataset"] = dataset
        return case

    unlabelled = {"absent": "no labelled set (--dataset DIR, or dataset = in the suite)"}
    a = run_record("AMD EPYC", [scored(FUSED, {"miou": 0.92514}), scored(INT8, {"miou": 0.9043})])
    failed = {"id": FP16, "status": "failed", "reason": "export: parity"}
    b = run_record("AMD EPYC", [scored(FUSED, unlabelled), scored(INT8, {"miou": 0.8977}), failed])
    out = tmp_path / "compare.md"
    assert main(["compare", str(write_run(tmp_path / "a", a)), str(write_run(tmp_path / "b", b)), "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert PLAIN_HEADER + " A mIoU | B mIoU |" in lines  # and no tail columns: neither run has tail figures
    rows = {row["case"]: row for row in markdown_table(lines, "case")}
    assert (rows[FUSED]["A mIoU"], rows[FUSED]["B mIoU"]) == ("92.5 %", "—")
    assert (rows[INT8]["A mIoU"], rows[INT8]["B mIoU"]) == ("90.4 %", "89.8 %")
    assert (rows[FP16]["A mIoU"], rows[FP16]["B mIoU"]) == ("—", "—")
