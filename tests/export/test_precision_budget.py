"""`segexport --int8 --max-miou-drop POINTS --val VOCDIR` end to end: the graph written loses at most the budget,
measured here independently of the search (segrt on the CPU graph, node by node for the TensorRT one), where
all-INT8 loses more; the card names the nodes kept and a rebuild with them gives the same graph; the
TensorRT graph builds with TensorRT-RTX; bad budget flags are one line, exit 2, nothing written."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import segrt
from segbench.data import shapes
from segexport.cli import build_parser, main, request_from_args
from segexport.parity import reference_outputs
from segexport.precision.budget import rebuild_flags
from segexport.precision.passes import match_nodes
from segexport.request import BuildOptions
from segrt.dataset import VocDataset
from segrt.image import read_image, write_image, write_labels_png
from segrt.meta import read_card
from segrt.scoring import confusion_matrix, mean_iou, score_dataset


@pytest.fixture(scope="module")
def shapes_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 labelled images of the generated shapes (a seed the bundled model never trained on)."""
    return shapes.generate(tmp_path_factory.mktemp("shapes") / "set", train=0, val=12, seed=515)


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundled")
    assert main(["--out", str(out)]) == 0
    return out / "model.onnx"


@pytest.fixture(scope="module")
def dark_calib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A poor calibration: one image at a third of its brightness, so INT8 ranges clip real images."""
    from segexport.defaults import parity_image

    folder = tmp_path_factory.mktemp("dark")
    write_image(folder / "dark.png", (read_image(parity_image("unet_shapes")) * 0.3).astype(np.uint8))
    return folder


def _budget_record(path: Path) -> dict:
    """The card's record of the search, after checking that the graph written scored as its read-out twin did:
    one reduced graph read with nodes kept is the graph the pass makes with them excluded."""
    record = json.loads(Path(f"{path}.json").read_text())["checks"]["accuracy_budget"]
    assert record["kept"], "every test here has the search keep nodes"
    final, *twins = [t for t in reversed(record["trials"]) if t["kept"] == len(record["kept"])]
    assert final["converted"] and twins and not twins[0]["converted"]
    assert {key: final[key] for key in ("miou", "disagreement")} == {k: twins[0][k] for k in ("miou", "disagreement")}
    return record


def _segrt_miou(path: Path, dataset: VocDataset) -> float:
    with segrt.load(path, backend="ort-cpu", precision=None) as seg:
        score = score_dataset(lambda image: seg(image), dataset, seg.classes)
    assert score.miou is not None
    return score.miou


def test_bundled_model_cpu_int8_keeps_nodes_within_budget_and_a_rebuild_reproduces_it(
    bundled: Path, shapes_val: Path, dim_calib: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mean and a class budget: all-INT8 meets the mean, so --max-miou-drop alone would write it and let one
    class fall by more than --max-class-iou-drop allows; with both, the search keeps nodes until both hold."""
    out = tmp_path / "out"
    calib = ["--calib", str(dim_calib)]
    budget = ["--max-miou-drop", "0.5", "--max-class-iou-drop", "1", "--val", str(shapes_val)]
    assert main([str(bundled), "--int8", "--int8-target", "cpu", *calib, *budget, "--out", str(out)]) == 0
    printed = " ".join(capsys.readouterr().err.split())
    written = out / "model.int8-cpu.onnx"
    record = _budget_record(written)
    all_int8 = record["all_reduced"]
    assert all_int8["miou_drop_points"] <= 0.5 and all_int8["worst_class_drop_points"] > 1  # the mean hides a class
    assert 0 < len(record["kept"]) < len(record["sensitivity"])  # the search kept some nodes, not all
    assert record["kept_in"] == "FP32" and record["budget"]["max_class_iou_drop_points"] == 1
    dataset = VocDataset(shapes_val, "val")
    drop = 100 * (_segrt_miou(bundled, dataset) - _segrt_miou(written, dataset))  # as a user runs the file
    assert drop <= 0.5
    assert drop == pytest.approx(record["miou_drop_points"], abs=0.01)
    measured = _class_drops(bundled, written, dataset)
    assert max(measured.values()) <= 1
    for name, figures in record["class_iou"].items():  # the card's per-class figures are the file's own
        assert figures["drop_points"] == pytest.approx(measured[name], abs=0.01)
    assert record["worst_class_drop_points"] == pytest.approx(max(measured.values()), abs=0.01)
    assert "IoU per class: FP32 and the graph written" in printed and "its worst class (" in printed
    # the card's flags rebuild the same graph with the plain pass (no search), calibrated the same way
    assert record["rebuild_flags"][-2:] == ["--calib-method", "minmax"]
    rebuilt = tmp_path / "rebuilt"
    again = ["--int8", "--int8-target", "cpu", *calib, *record["rebuild_flags"], "--min-agreement", "0"]
    assert main([str(bundled), *again, "--out", str(rebuilt)]) == 0
    _assert_same_labels(written, rebuilt / "model.int8-cpu.onnx", dataset)


@pytest.fixture(scope="module")
def dim_calib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Calibrated at 60 % exposure: all-INT8 keeps the mean (0.09 points lost) but not every class (star: 1.49)."""
    from segexport.defaults import parity_image

    folder = tmp_path_factory.mktemp("dim")
    write_image(folder / "dim.png", (read_image(parity_image("unet_shapes")) * 0.6).astype(np.uint8))
    return folder


def _class_drops(fp32: Path, graph: Path, dataset: VocDataset) -> dict[str, float]:
    """Each class's IoU drop in points, as a user running both files with segrt measures it."""
    scores = []
    for path in (fp32, graph):
        with segrt.load(path, backend="ort-cpu", precision=None) as seg:
            scores.append(score_dataset(lambda image: seg(image), dataset, seg.classes).per_class)
    return {name: 100 * (scores[0][name] - scores[1][name]) for name in scores[0]}  # type: ignore[operator]


def _assert_same_labels(first: Path, second: Path, dataset: VocDataset) -> None:
    with segrt.load(first, backend="ort-cpu") as one, segrt.load(second, backend="ort-cpu") as other:
        for sample in dataset:
            np.testing.assert_array_equal(one(sample.image), other(sample.image))


def test_the_cards_rebuild_flags_keep_the_users_own_keep_fp32(
    bundled: Path, shapes_val: Path, dark_calib: Path, tmp_path: Path
) -> None:
    calib = ["--int8", "--int8-target", "cpu", "--calib", str(dark_calib), "--keep-fp32", "/head/Conv$"]
    budget = ["--max-miou-drop", "0.5", "--val", str(shapes_val), "--val-count", "4"]
    assert main([str(bundled), *calib, *budget, "--out", str(tmp_path / "out")]) == 0
    written = tmp_path / "out" / "model.int8-cpu.onnx"
    record = json.loads(Path(f"{written}.json").read_text())["checks"]["accuracy_budget"]
    assert record["rebuild_flags"][:2] == ["--keep-fp32", "/head/Conv$"]
    assert "/network/head/Conv" not in [item["node"] for item in record["sensitivity"]]  # the user's, not searched
    again = [*calib[:5], *record["rebuild_flags"], "--min-agreement", "0", "--out", str(tmp_path / "rebuilt")]
    assert main([str(bundled), *again]) == 0
    _assert_same_labels(written, tmp_path / "rebuilt" / "model.int8-cpu.onnx", VocDataset(shapes_val, "val"))


def test_rebuild_flags_keep_the_users_own_nodes_and_those_the_search_kept() -> None:
    """The search's conversions exclude the user's --keep-fp32 nodes and its own: the card's flags must too."""
    from onnx import helper

    names = ["/stem/Conv", "/body.1/Conv", "/head/Conv"]
    nodes = [helper.make_node("Identity", [f"t{i}"], [f"t{i + 1}"], name=name) for i, name in enumerate(names)]
    graph = helper.make_model(helper.make_graph(nodes, "g", [], []))
    flags = rebuild_flags(["^/stem"], ["/body.1/Conv"])
    request = request_from_args(build_parser().parse_args(["model.onnx", "--int8", "--calib", "frames", *flags]))
    assert match_nodes(graph, request.precision.keep_fp32) == ["/stem/Conv", "/body.1/Conv"]


def _self_labelled(fp32: Path, images: Path, root: Path) -> Path:
    """A harder labelled set: the FP32 graph's own labels on real images. A random U-Net's logits are near
    ties, so every label INT8 flips is an error: FP32 scores 100 % and INT8 loses points."""
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    names = VocDataset(images, "val").names
    with segrt.load(fp32, backend="ort-cpu") as seg:
        for name in names:
            shutil.copy(images / "JPEGImages" / f"{name}.jpg", root / "JPEGImages")
            labels = seg(read_image(root / "JPEGImages" / f"{name}.jpg"))
            write_labels_png(root / "SegmentationClass" / f"{name}.png", labels, seg.palette)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("".join(f"{name}\n" for name in names))
    return root


def _node_by_node_miou(path: Path, dataset: VocDataset) -> float:
    """mIoU of a graph on ONNX Runtime as its precision is trusted there (the engine gate's reference)."""
    card = read_card(path)
    confusion = sum(
        confusion_matrix(reference_outputs(path, s.image, card)[0], s.labels, card.num_classes) for s in dataset
    )
    miou = mean_iou(confusion)
    assert miou is not None
    return miou


def test_small_unet_tensorrt_int8_within_budget_on_a_harder_set_and_builds_with_tensorrt_rtx(
    exported, shapes_val: Path, calib_dir: Path, tmp_path: Path
) -> None:
    fp32 = exported("unet")
    harder = _self_labelled(fp32, shapes_val, tmp_path / "harder")
    out = tmp_path / "out"
    flags = ["--int8", "--int8-target", "tensorrt", "--onnx-only", "--calib", str(calib_dir), "--calib-count", "4"]
    assert main([str(fp32), *flags, "--max-miou-drop", "2", "--val", str(harder), "--out", str(out)]) == 0
    written = out / "model.int8.onnx"
    record = _budget_record(written)
    assert record["all_reduced"]["miou_drop_points"] > 2 and record["kept"] and record["kept_in"] == "FP16"
    dataset = VocDataset(harder, "val")
    assert _node_by_node_miou(fp32, dataset) == pytest.approx(1.0)
    drop = 100 * (1.0 - _node_by_node_miou(written, dataset))
    assert drop <= 2
    assert drop == pytest.approx(record["miou_drop_points"], abs=0.01)
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX builds the graph: pip install segexport[rtx]")
    from rich.console import Console

    from segexport.engine import build as tensorrt_build
    from segexport.engine import profile as tensorrt_profile
    from segrt.backends import tensorrt_library

    shapes_range = tensorrt_profile.shape_range((1, 32, 32), (1, 240, 320), (1, 480, 640))
    options = BuildOptions(shapes=shapes_range, library=tensorrt_library.TENSORRT_RTX)
    engine, _ = tensorrt_build.build_engine(written, read_card(written), options, Console(file=io.StringIO()))
    assert len(engine) > 10_000


def test_disagreement_budget_without_labels_is_measured_on_the_calibration_images(
    exported, calib_dir: Path, tmp_path: Path
) -> None:
    fp32 = exported("unet")
    out = tmp_path / "out"
    flags = ["--int8", "--int8-target", "cpu", "--calib", str(calib_dir), "--calib-count", "4"]
    assert main([str(fp32), *flags, "--max-disagreement", "0.1", "--out", str(out)]) == 0
    written = out / "model.int8-cpu.onnx"
    record = _budget_record(written)
    assert record["measured_on"] == "the 4 --calib images" and record["miou"] is None
    assert record["all_reduced"]["disagreement"] > 0.001 and record["kept"]
    changed = pixels = 0
    with segrt.load(fp32, backend="ort-cpu") as reference, segrt.load(written, backend="ort-cpu") as chosen:
        for path in sorted(calib_dir.iterdir()):
            image = read_image(path)
            changed += int(np.count_nonzero(reference(image) != chosen(image)))
            pixels += image.shape[0] * image.shape[1]
    assert changed / pixels <= 0.001


def test_fp16_within_a_zero_pixel_budget_keeps_nodes_in_fp32(exported, calib_dir: Path, tmp_path: Path) -> None:
    fp32 = exported("unet")
    out = tmp_path / "out"
    flags = ["--fp16", "--onnx-only", "--calib", str(calib_dir), "--calib-count", "1", "--max-disagreement", "0"]
    assert main([str(fp32), *flags, "--out", str(out)]) == 0
    record = _budget_record(out / "model.fp16.onnx")
    assert record["all_reduced"]["disagreement"] > 0 and record["kept"] and record["kept_in"] == "FP32"
    assert record["disagreement"] == 0


def test_a_budget_no_graph_meets_exits_2_naming_the_closest_and_writes_nothing(
    exported, calib_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fp32 = exported("unet")
    out = tmp_path / "out"
    out.mkdir()
    # TensorRT's INT8 graph keeps its other nodes in FP16, which alone changes some of a random U-Net's labels
    flags = ["--int8", "--int8-target", "tensorrt", "--onnx-only", "--calib", str(calib_dir), "--calib-count", "2"]
    assert main([str(fp32), *flags, "--max-disagreement", "0", "--out", str(out)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no int8 graph is within the budget (at most 0 % of pixels changed)" in err
    assert "even with all" in err and "kept in FP16; the closest keeps" in err and "Traceback" not in err
    assert list(out.iterdir()) == []


# --- bad input: one line, exit 2, nothing written ----------------------------------------------------------


def _no_classes(root: Path) -> None:
    (root / "dataset.json").unlink()


def _empty_split(root: Path) -> None:
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n")


def _mismatched(root: Path) -> None:
    path = root / "SegmentationClass" / "val_00003.png"
    write_labels_png(path, np.zeros((10, 12), np.uint8), shapes.PALETTE)


BUDGET_ROWS: list[tuple[str, list[str], str, Callable[[Path], None] | None]] = [
    ("budget not a number", ["--max-miou-drop", "half", "--val", "{val}"], "--max-miou-drop half: not a number", None),
    ("negative budget", ["--max-miou-drop", "-1", "--val", "{val}"], "--max-miou-drop -1: outside 0..100", None),
    ("budget nan", ["--max-miou-drop", "nan", "--val", "{val}"], "--max-miou-drop nan: not a finite number", None),
    ("disagreement over 100", ["--max-disagreement", "150"], "--max-disagreement 150: outside 0..100", None),
    ("mIoU budget without a labelled set", ["--max-miou-drop", "0.5"], "--max-miou-drop needs --val VOCDIR", None),
    (
        "missing --val folder",
        ["--max-miou-drop", "0.5", "--val", "{tmp}/nowhere"],
        "--val {tmp}/nowhere: no such dataset folder",
        None,
    ),
    (
        "empty --val split",
        ["--max-miou-drop", "0.5", "--val", "{val}"],
        "val.txt: the split file lists no ids",
        _empty_split,
    ),
    (
        "--val label map of another size",
        ["--max-miou-drop", "0.5", "--val", "{val}"],
        "val_00003.png: label map is 12x10",
        _mismatched,
    ),
    (
        "model classes differ from the set's",
        ["--max-miou-drop", "0.5", "--val", "{val}", "--num-classes", "7"],
        "its classes (background, ellipse, rectangle, triangle, star, ring, band) differ from the model's",
        None,
    ),
    (
        "set labels beyond the model's classes",
        ["--max-miou-drop", "0.5", "--val", "{val}", "--num-classes", "3"],
        "but the model has 3 classes (class0, class1, class2)",
        _no_classes,
    ),
    ("--val without a budget", ["--val", "{val}"], "--val and --val-count only apply with --max-miou-drop", None),
    (
        "class budget without a labelled set",
        ["--max-class-iou-drop", "2"],
        "--max-class-iou-drop needs --val VOCDIR",
        None,
    ),
    (
        "class budget not a number",
        ["--max-class-iou-drop", "two", "--val", "{val}"],
        "--max-class-iou-drop two: not a number",
        None,
    ),
    ("negative class budget", ["--max-class-iou-drop", "-2", "--val", "{val}"], "-2: outside 0..100", None),
    (
        "class budget on a set lacking a class",
        ["--max-class-iou-drop", "2", "--val", "{val}", "--num-classes", "7"],
        "class 'class4' has no pixels in its val split, so its IoU cannot be measured for --max-class-iou-drop",
        lambda root: _without_class(root, 4),
    ),
]


def _without_class(root: Path, label: int) -> None:
    """No pixel of class `label` left in the set (relabelled background), and no class names to compare."""
    from segrt.image import read_labels_png

    _no_classes(root)
    for path in (root / "SegmentationClass").glob("*.png"):
        labels = read_labels_png(path)
        write_labels_png(path, np.where(labels == label, 0, labels).astype(np.uint8), shapes.PALETTE)


@pytest.mark.parametrize(("name", "flags", "words", "spoil"), BUDGET_ROWS, ids=[row[0] for row in BUDGET_ROWS])
def test_bad_budget_flags_are_one_line_exit_2_nothing_written(
    name, flags, words, spoil, shapes_val: Path, calib_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    val = Path(shutil.copytree(shapes_val, tmp_path / "val"))
    if spoil is not None:
        spoil(val)
    before = set(tmp_path.rglob("*"))
    small = ["unet", "--unet-base", "4", "--unet-depth", "2", "--input-size", "32x32", "--out", str(tmp_path / "out")]
    precision = ["--int8", "--calib", str(calib_dir)]
    code = main([*small, *precision, *(flag.format(val=val, tmp=tmp_path) for flag in flags)])
    err = capsys.readouterr().err
    assert code == 2, err
    message = " ".join(err.split())
    assert words.format(tmp=tmp_path) in message, (words, err)
    assert "Traceback" not in err and err.count("error:") == 1, err
    assert [p for p in tmp_path.rglob("*") if p not in before and not p.is_dir()] == []


def test_a_budget_without_a_reduced_precision_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = ["unet", "--unet-base", "4", "--unet-depth", "2", "--input-size", "32x32", "--out", str(tmp_path / "o")]
    assert main([*small, "--max-disagreement", "1"]) == 2
    assert "add --int8 --calib DIR or --fp16" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "o").exists()
