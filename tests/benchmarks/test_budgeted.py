"""segbench runs chosen against an accuracy budget: the suite key, the export flags and cache folder, the check
that the budget is measured on other images than those scored, and the speed-beside-accuracy table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from segbench.cases import artifacts
from segbench.cases.artifacts import ExportCache
from segbench.cases.budgeted import check_budget_set
from segbench.cases.suite import ModelSpec, load_suite
from segbench.data import shapes
from segbench.report.trade import trade_lines
from segexport.request import ModelOptions
from segrt.errors import SegError

SUITES = Path(__file__).resolve().parents[2] / "benchmarks" / "suites"
SUITE = """
name = "t"
[[model]]
name = "unet_shapes"
budget_val = "tune"
runs = [{ backend = "ort-cpu", precision = "int8", max_miou_drop = 0.5 }, { backend = "ort-cpu", precision = "int8" }]
"""


def test_a_budgeted_run_is_its_own_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "suite.toml"
    path.write_text(SUITE)
    cases = [c for c in load_suite(path).cases if not c.is_baseline]
    assert [c.pipeline for c in cases] == ["ort-cpu int8 ≤0.5 mIoU pts fused", "ort-cpu int8 fused"]
    assert cases[0].max_miou_drop == 0.5 and cases[1].max_miou_drop is None
    assert cases[0].model.budget_val == Path("tune")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('budget_val = "tune"\n', ""), "max_miou_drop needs the model's budget_val"),
        (('precision = "int8", max_miou_drop', 'precision = "fp32", max_miou_drop'), "needs precision fp16 or int8"),
        (("max_miou_drop = 0.5", "max_miou_drop = -1"), "0..100 points"),
        (("max_miou_drop = 0.5", 'max_miou_drop = "0.5"'), "max_miou_drop must be int or float"),
    ],
)
def test_bad_budget_keys_are_one_line_naming_the_key(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.replace(*change))
    with pytest.raises(SegError, match="model\\[0\\]") as caught:
        load_suite(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_shipped_budget_suite_chooses_on_a_set_it_does_not_score() -> None:
    suite = load_suite(SUITES / "cpu-budget.toml")
    budgets = {(c.model.label, c.max_miou_drop) for c in suite.cases if c.max_miou_drop is not None}
    labels = {c.model.label for c in suite.cases}
    assert {budget for _, budget in budgets} >= {0.1, 0.5, 2.0} and len(labels) == 2
    for case in suite.cases:
        assert case.model.budget_val == Path("build/shapes-tune") and case.model.dataset == Path("build/shapes")
    assert {c.pipeline for c in suite.cases} >= {"ort-cpu fp32 fused", "ort-cpu int8 fused"}
    assert all(path.suffix == ".jpg" for path in (SUITES / "dim-frames").iterdir())
    # a fresh clone's first run needs no other step: both labelled sets are ones the suite makes
    made = {(g.out, g.train, g.val, g.seed) for g in suite.generate}
    assert made == {(Path("build/shapes"), 3200, 200, 0), (Path("build/shapes-tune"), 0, 100, 1)}


def test_budgeted_graphs_are_exported_with_the_budget_flags_into_their_own_folder(tmp_path: Path, monkeypatch) -> None:
    requests = []

    def fake_export(request, log: object = None) -> None:  # writes the file segexport.export would write
        requests.append(request)
        out = request.onnx.out
        out.mkdir(parents=True, exist_ok=True)
        (out / ("model.int8-cpu.onnx" if request.precision.graphs else "model.onnx")).write_bytes(b"graph")

    monkeypatch.setattr(artifacts, "run_export", fake_export)
    tune = shapes.generate(tmp_path / "tune", train=1, val=1, seed=1)
    calib = tune / "ImageSets" / "Segmentation" / "train.txt"
    model = ModelSpec(ModelOptions("unet"), calib=calib, budget_val=tune)
    cache = ExportCache(tmp_path / "cache")

    def int8(budget: float | None) -> Path:
        return cache.model_file(
            model, backend="ort-cpu", precision="int8", fused=True, shape=(1, 24, 32), max_miou_drop=budget
        )

    plain, half, two = int8(None), int8(0.5), int8(2)
    assert half.parent.parent == plain.parent and half.parent.name.startswith("budget-")
    assert len({plain, half, two}) == 3
    budget = requests[-2].budget  # the 0.5 budget's export
    assert (budget.max_miou_drop, budget.val) == (0.5, tune) and not requests[1].budget.wanted
    (tune / "ImageSets" / "Segmentation" / "val.txt").write_text("val_00000\nval_00000\n")
    assert int8(0.5) != half  # another budget set: another choice


def test_a_budget_set_sharing_an_image_with_the_scored_set_is_refused(tmp_path: Path) -> None:
    scored = shapes.generate(tmp_path / "scored", train=0, val=2, seed=3)
    tune = shapes.generate(tmp_path / "tune", train=0, val=2, seed=4)
    images = sorted((scored / "JPEGImages").iterdir())
    model = ModelSpec(ModelOptions("unet"), label="u", budget_val=tune)
    check_budget_set(model, images, "suite.toml")  # disjoint: fine
    shutil.copy(images[1], tune / "JPEGImages" / "val_00001.jpg")  # the same picture under the budget set's name
    shutil.copy(scored / "SegmentationClass" / "val_00001.png", tune / "SegmentationClass" / "val_00001.png")
    with pytest.raises(SegError, match=r"suite.toml: u: budget_val .* holds val_00001\.jpg, the image .* scores"):
        check_budget_set(model, images, "suite.toml")


def _case(precision: str, budget: float | None, p50: float, miou: float, kept: list[str] | None = None) -> dict:
    case = {
        "status": "ok", "label": "u", "backend": "ort-cpu", "fused": True, "batch": 1, "height": 8, "width": 8,
        "precision": precision, "max_miou_drop": budget, "timing": {"e2e": {"p50": p50, "min": p50 - 1}},
        "pipeline": f"ort-cpu {precision}{'' if budget is None else f' ≤{budget:g} mIoU pts'} fused",
        "accuracy": {"dataset": {"miou": miou}},
    }  # fmt: skip
    if kept is not None:
        case["accuracy_budget"] = {"kept": kept, "measured_on": "--val tune", "search_seconds": 12.3}
    return case


def test_speed_beside_accuracy_puts_fp32_all_int8_and_the_budgeted_graphs_in_one_table() -> None:
    record = {
        "cases": [
            _case("int8", 0.5, 6.0, 0.918, ["/stem/Conv"]),
            _case("fp32", None, 9.0, 0.92),
            _case("int8", None, 5.0, 0.88),
            _case("int8", 2, 5.0, 0.905, []),
        ]
    }
    lines = trade_lines(record)
    rows = [line for line in lines if line.startswith("| u |")]
    budgeted = ["ort-cpu int8 ≤2 mIoU pts fused", "ort-cpu int8 ≤0.5 mIoU pts fused"]
    assert [row.split(" | ")[1] for row in rows] == ["ort-cpu fp32 fused", "ort-cpu int8 fused", *budgeted]
    assert "| 6.00 | 5.00 | 1.50x | 91.80 % | +0.20 | 1: /stem/Conv | --val tune | 12 |" in rows[3]
    assert "| 5.00 | 4.00 | 1.80x | 88.00 % | +4.00 | — |" in rows[1] and "| none |" in rows[2]
    assert trade_lines({"cases": [_case("fp32", None, 9.0, 0.92)]}) == []


def test_a_real_suite_runs_budgeted_graphs_and_reports_them_beside_fp32_and_all_int8(tmp_path: Path) -> None:
    from segbench.cli import main

    scored = shapes.generate(tmp_path / "scored", train=2, val=2, seed=5)
    tune = shapes.generate(tmp_path / "tune", train=0, val=2, seed=6)
    suite = tmp_path / "suite.toml"
    suite.write_text(f"""
name = "tiny-budget"
shapes = ["1x48x64"]
warmup = 1
iterations = 3
baseline = false
[[model]]
name = "unet"
input_size = "32x32"
unet_base = 4
unet_depth = 2
num_classes = 7
dataset = "{scored}"
budget_val = "{tune}"
calib = "{scored}/ImageSets/Segmentation/train.txt"
runs = [
  {{ backend = "ort-cpu" }},
  {{ backend = "ort-cpu", precision = "int8", max_miou_drop = 100 }},
  {{ backend = "ort-cpu", precision = "int8", max_miou_drop = 0 }},
]
""")
    (scored / "dataset.json").unlink()  # the random U-Net's classes are class0..class6, not the shapes' names
    (tune / "dataset.json").unlink()
    out = tmp_path / "run"
    assert main([str(suite), "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    cases = json.loads((out / "results.json").read_text())["cases"]
    budgeted = [case for case in cases if case["max_miou_drop"] is not None]
    assert [case["status"] for case in cases] == ["ok"] * 3 and len(budgeted) == 2
    for case in budgeted:
        details = case["accuracy_budget"]
        assert details["measured_on"].startswith(f"--val {tune}") and isinstance(details["kept"], list)
        assert details["budget"]["max_miou_drop_points"] == case["max_miou_drop"]
        assert "absent" in case["network"]
    assert budgeted[0]["accuracy_budget"]["kept"] == []  # a budget of 100 points keeps nothing
    report = (out / "report.md").read_text()
    assert "## Speed beside accuracy" in report and "ort-cpu int8 ≤0 mIoU pts fused" in report
