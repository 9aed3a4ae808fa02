"""segexport --fp16 / --int8: the precision passes end to end on real small models, checked against FP32."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

import segrt
from segexport import parity
from segexport.cli import main
from segexport.parity import onnx_labels
from segexport.precision import calibration
from segexport.precision import passes as precision
from segrt.errors import SegError
from segrt.image import write_image
from segrt.meta import CARD_KEY, file_sha256, read_card
from segrt.precisions import PRECISIONS

GRAPH_FILES = {"fp16": "model.fp16.onnx", "int8": "model.int8.onnx", "int8-cpu": "model.int8-cpu.onnx"}


def _labels(path: Path, precision_name: str, image: np.ndarray) -> np.ndarray:
    """Labels as the precision pass checks them: node by node for the TensorRT Q/DQ graph (see qdq_labels)."""
    card = read_card(path)
    if precision_name == "int8":
        return parity.qdq_labels(path.read_bytes(), image, card)
    return onnx_labels(path, image, card)[0]


def _check_graphs(folder: Path, fp32: Path, photo: np.ndarray, gate: float | None = None) -> dict[str, float]:
    """Every graph: agreement with FP32 at or above its gate (`gate`, else the precision's default), card,
    uint8 I/O, the precision it claims."""
    reference = onnx_labels(fp32, photo, read_card(fp32))[0]
    agreements = {}
    for name, filename in GRAPH_FILES.items():
        path = folder / filename
        agreements[name] = float((_labels(path, name, photo) == reference).mean())
        assert agreements[name] >= (gate or PRECISIONS[name].min_agreement), (name, agreements[name])

        card = read_card(path)  # the sidecar, checked against the file's sha256
        assert card.precision == name
        assert card.source_sha256 == file_sha256(fp32)
        assert card.checks["parity"]["label_agreement"] == pytest.approx(agreements[name], abs=1e-6)
        assert card.classes == read_card(fp32).classes
        model = onnx.load(str(path))
        embedded = json.loads({p.key: p.value for p in model.metadata_props}[CARD_KEY])
        assert embedded["precision"] == name and embedded["source_sha256"] == card.source_sha256
        assert embedded["opset"] == precision.graph_opset(model)

        (inp,), (out,) = model.graph.input, model.graph.output
        assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
        assert out.type.tensor_type.elem_type == onnx.TensorProto.UINT8
        types = {init.data_type for init in model.graph.initializer}
        ops = {node.op_type for node in model.graph.node}
        if name == "fp16":
            assert onnx.TensorProto.FLOAT16 in types and "QuantizeLinear" not in ops
        else:
            assert {"QuantizeLinear", "DequantizeLinear"} <= ops and onnx.TensorProto.INT8 in types
    return agreements


def test_unet_fp16_and_int8_graphs_agree_with_fp32(unet_graphs, exported, photo, random_unet_gate):
    agreements = _check_graphs(unet_graphs, exported("unet"), photo, random_unet_gate)
    # The random-weight U-Net's logits are near ties, so reduced precision flips some pixels:
    # the gates are doing real work here, not passing a copy of FP32.
    assert min(agreements.values()) < 1.0


@pytest.mark.slow
def test_fcn50_fp16_and_int8_graphs_agree_with_fp32(fcn50_graphs, exported, photo):
    _check_graphs(fcn50_graphs, exported("fcn50"), photo)
    sizes = {name: (fcn50_graphs / f).stat().st_size for name, f in GRAPH_FILES.items()}
    fp32_size = exported("fcn50").stat().st_size
    assert sizes["fp16"] < 0.6 * fp32_size and sizes["int8-cpu"] < 0.35 * fp32_size, (sizes, fp32_size)


def test_segrt_load_int8_picks_the_cpu_graph_on_onnx_runtime_cpu(unet_graphs, exported, photo, random_unet_gate):
    reference = onnx_labels(exported("unet"), photo, read_card(exported("unet")))[0]
    seg = segrt.load(unet_graphs, backend="ort-cpu", precision="int8")
    assert seg.path.name == "model.int8-cpu.onnx" and seg.card.precision == "int8-cpu"
    assert (seg(photo) == reference).mean() >= random_unet_gate
    seg = segrt.load(unet_graphs, backend="ort-cpu", precision="fp16")
    assert seg.path.name == "model.fp16.onnx" and seg.card.precision == "fp16"
    labels = seg([photo, photo[:300, :200]])
    assert labels[0].shape == photo.shape[:2] and labels[1].shape == (300, 200)
    assert (labels[0] == reference).mean() >= PRECISIONS["fp16"].min_agreement


def _last_conv(path: Path) -> str:
    return [node.name for node in onnx.load(str(path)).graph.node if node.op_type == "Conv"][-1]


def _fp16_inputs(path: Path, node_name: str) -> set[int]:
    """Element types of a node's inputs (activations and weights) in a graph."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.input)}
    types.update({init.name: init.data_type for init in model.graph.initializer})
    node = next(n for n in model.graph.node if n.name == node_name)
    return {types[name] for name in node.input}


def _quantized_convs(path: Path) -> set[str]:
    model = onnx.load(str(path))
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return {n.name for n in model.graph.node if n.op_type == "Conv" and set(n.input) & dequantized}


def test_keep_fp32_keeps_the_named_node_out_of_fp16_and_int8(
    unet_graphs, exported, calib_dir, photo, tmp_path, random_unet_gate
):
    fp32 = exported("unet")
    head = _last_conv(fp32)  # the classifier: the node a user pins first
    # Without --keep-fp32 every pass lowered it:
    assert _fp16_inputs(unet_graphs / "model.fp16.onnx", head) == {onnx.TensorProto.FLOAT16}
    assert all(head in _quantized_convs(unet_graphs / GRAPH_FILES[name]) for name in ("int8", "int8-cpu"))

    calib, _ = calibration.read_calibration_images(calib_dir, 2)
    options = {"calib_images": calib, "keep_fp32": ["head/Conv$"], "min_agreement": random_unet_gate, "out": tmp_path}
    kept = {name: precision.make_precision_graph(name, fp32, photo, **options) for name in ("fp16", "int8", "int8-cpu")}
    assert _fp16_inputs(kept["fp16"].path, head) == {onnx.TensorProto.FLOAT}
    fp16_before = onnx.load(str(unet_graphs / "model.fp16.onnx"))
    others = [n.name for n in fp16_before.graph.node if n.op_type == "Conv" and n.name != head]
    assert all(_fp16_inputs(kept["fp16"].path, name) == {onnx.TensorProto.FLOAT16} for name in others)
    for name in ("int8", "int8-cpu"):
        before, after = _quantized_convs(unet_graphs / GRAPH_FILES[name]), _quantized_convs(kept[name].path)
        assert after == before - {head}, name


def test_keep_fp32_that_matches_nothing_or_is_not_a_regex_is_refused(exported):
    model = onnx.load(str(exported("unet")))
    head = _last_conv(exported("unet"))
    assert precision.match_nodes(model, ["head/Conv"]) == [head]
    listed = rf"--keep-fp32 'nosuchnode': matches no node of the graph \(its last layers: .*{re.escape(head)}\)"
    with pytest.raises(SegError, match=listed):
        precision.match_nodes(model, ["nosuchnode"])
    with pytest.raises(SegError, match=r"--keep-fp32 '\(': not a regular expression"):
        precision.match_nodes(model, ["("])


def test_below_min_agreement_the_cli_fails_naming_keep_fp32_and_writes_nothing(
    unet_graphs, exported, photo, tmp_path, capsys
):
    """Ask for just more agreement than the FP16 graph has: the same pass that passed at 99.5 % must fail."""
    fp32 = exported("unet")
    reference = onnx_labels(fp32, photo, read_card(fp32))[0]
    achieved = float((_labels(unet_graphs / "model.fp16.onnx", "fp16", photo) == reference).mean())
    assert achieved < 1.0  # otherwise no minimum could fail
    required = f"{min(100.0, 100 * achieved + 0.01):.3f}"
    capsys.readouterr()

    code = main([str(fp32), "--fp16", "--min-agreement", required, "--onnx-only", "--out", str(tmp_path)])

    message = capsys.readouterr().err
    assert code == 2
    assert "model.fp16.onnx was not written" in message and "--keep-fp32" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no file, no sidecar, no scratch folder


def test_int8_needs_calib_and_calib_needs_a_precision(exported, tmp_path, capsys):
    code = main([str(exported("unet")), "--int8", "--onnx-only", "--out", str(tmp_path)])
    assert code == 2 and "--int8 needs --calib DIR" in capsys.readouterr().err
    code = main([str(exported("unet")), "--calib", str(tmp_path), "--out", str(tmp_path)])
    assert code == 2 and "--calib and --keep-fp32 only apply with --fp16 or --int8" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_int8_target_cpu_writes_only_the_cpu_graph_and_asks_for_no_engine(
    exported, calib_dir, tmp_path, capsys, random_unet_gate
):
    calib = ["--calib", str(calib_dir), "--calib-count", "2", "--min-agreement", f"{100 * random_unet_gate:g}"]
    # no --onnx-only: the CPU graph is not a TensorRT input, so TensorRT is never looked for (exit 0, not 3)
    assert main([str(exported("unet")), "--int8", "--int8-target", "cpu", *calib, "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.int8-cpu.onnx", "model.int8-cpu.onnx.json"]
    assert read_card(tmp_path / "model.int8-cpu.onnx").precision == "int8-cpu"
    assert "TensorRT" not in capsys.readouterr().err


def test_int8_target_without_int8_is_refused(exported, tmp_path, capsys):
    code = main([str(exported("unet")), "--int8-target", "cpu", "--out", str(tmp_path)])
    assert code == 2 and "--int8-target cpu only applies with --int8" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_calibration_folder_errors_name_the_folder(tmp_path, exported, capsys):
    missing = tmp_path / "missing"
    with pytest.raises(SegError, match=rf"--calib {re.escape(str(missing))}: no such folder"):
        calibration.read_calibration_images(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    with pytest.raises(SegError, match=rf"--calib {re.escape(str(empty))}: no image files"):
        calibration.read_calibration_images(empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (broken / "b.png").write_bytes(b"")
    with pytest.raises(SegError, match=rf"--calib {re.escape(str(broken))}: none of its 2 image files could be read"):
        calibration.read_calibration_images(broken)
    a_file = broken / "a.jpg"
    with pytest.raises(SegError, match=rf"--calib {re.escape(str(a_file))}: is not a folder"):
        calibration.read_calibration_images(a_file)

    out = tmp_path / "out"
    code = main([str(exported("unet")), "--int8", "--calib", str(empty), "--onnx-only", "--out", str(out)])
    assert code == 2 and f"--calib {empty}: no image files" in capsys.readouterr().err
    assert not (out / "model.int8.onnx").exists() and not (out / "model.int8-cpu.onnx").exists()


def test_calibration_reads_a_spread_of_the_folder_and_skips_unreadable_files(tmp_path, photo):
    for index in range(10):
        strip = np.ascontiguousarray(photo[index * 10 : index * 10 + 50])
        write_image(tmp_path / "clip" / f"frame{index:02d}.png", strip)
    (tmp_path / "clip" / "frame05.png").write_bytes(b"truncated")
    picked = calibration.find_calibration_images(tmp_path, 4)
    assert [p.name for p in picked] == ["frame00.png", "frame03.png", "frame06.png", "frame09.png"]
    images, unreadable = calibration.read_calibration_images(tmp_path, 20)
    assert len(images) == 9 and [p.name for p in unreadable] == ["frame05.png"]
    assert all(im.dtype == np.uint8 and im.shape == (50, 640, 3) for im in images)


def test_unfused_graph_is_calibrated_on_preprocessed_images(exported, calib_dir, photo, tmp_path, random_unet_gate):
    """An unfused graph gets segrt.image.preprocess's float NCHW: the CPU INT8 pass must use it too."""
    fp32 = exported("unet-unfused")
    card = read_card(fp32)
    calib, _ = calibration.read_calibration_images(calib_dir)
    batch = parity.graph_input(calib[0], card)
    assert batch.dtype == np.float32 and batch.shape == (1, 3, *card.network_size(*calib[0].shape[:2]))

    result = precision.make_precision_graph(
        "int8-cpu", fp32, photo, calib_images=calib, min_agreement=random_unet_gate, out=tmp_path
    )
    model = onnx.load(str(result.path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    reference = onnx_labels(fp32, photo, card)[0]
    agreement = (onnx_labels(result.path, photo, read_card(result.path))[0] == reference).mean()
    assert agreement == pytest.approx(result.parity.agreement) and agreement >= random_unet_gate
    assert result.parity.max_abs_logit_diff is not None and result.parity.max_abs_logit_diff > 0


def test_a_reduced_precision_graph_is_not_converted_again(unet_graphs, photo):
    with pytest.raises(SegError, match=r"is a fp16 graph; convert the FP32 model\.onnx instead"):
        precision.make_precision_graph("int8-cpu", unet_graphs / "model.fp16.onnx", photo, calib_images=[photo])


def test_calibration_images_from_a_voc_split_file(tmp_path):
    """`--calib .../ImageSets/Segmentation/train.txt` takes the train images and nothing else."""
    from PIL import Image

    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for name in ("t1", "t2", "v1"):
        Image.new("RGB", (8, 8)).save(root / "JPEGImages" / f"{name}.jpg")
    split = root / "ImageSets" / "Segmentation" / "train.txt"
    split.write_text("t1\nt2\n")
    assert [p.name for p in calibration.find_calibration_images(split, 10)] == ["t1.jpg", "t2.jpg"]
    split.write_text("t1\nt3\n")
    with pytest.raises(SegError, match="names 1 missing image"):
        calibration.find_calibration_images(split, 10)


def test_engine_gate_checks_the_qdq_graph_against_its_node_by_node_labels(unet_graphs, photo, monkeypatch):
    """An engine computing the Q/DQ graph's own arithmetic (what TensorRT implements) passes the engine gate."""
    from segexport import parity
    from segexport.engine import profile as tensorrt_profile

    source = unet_graphs / "model.int8.onnx"
    card = read_card(source)

    class QdqArithmeticEngine:  # stands in for the INT8 engine: no TensorRT here
        def __init__(self, path, backend=None):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def __call__(self, batch):
            return np.stack([parity.qdq_labels(source, image, card) for image in batch])

    monkeypatch.setattr(segrt, "load", QdqArithmeticEngine)
    shapes = tensorrt_profile.shape_range(high=(1, 320, 320))
    # Against optimized ONNX Runtime (the gate's old reference) this engine agreed 0.0 % (onnxruntime 1.32).
    assert parity.engine_agreement(Path("model.int8.engine"), source, card, photo, shapes) == 1.0
