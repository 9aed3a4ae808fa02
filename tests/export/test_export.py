"""segexport: real exports of small models, the fused graph's contract, parity, cards and bad input."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from segexport import parity
from segexport.cli import main
from segexport.models.fcn import fcn_resnet18
from segexport.models.zoo import build_model
from segexport.onnx import export as onnx_export
from segexport.onnx.fused import FusedSegmentation
from segrt.meta import CARD_KEY, file_sha256, read_card


def _ort_run(path: Path, array: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: array})[0]


def test_fused_graph_takes_uint8_nhwc_with_dynamic_dims_and_returns_uint8_labels(exported):
    model = onnx.load(str(exported("unet")))
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert out.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    in_dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert in_dims[3] == 3 and all(isinstance(d, str) for d in in_dims[:3]), in_dims
    assert len(out.type.tensor_type.shape.dim) == 3


@pytest.mark.parametrize("name", ["unet", "fcn50"])
def test_fused_onnx_matches_pytorch_at_two_shapes(exported, model_args, name, photo):
    """The graph is dynamic in N, H and W: batch 2 at an odd size and batch 1 at the photo's size."""
    from segexport.cli import build_parser, request_from_args
    from segexport.models.zoo import build

    request = request_from_args(build_parser().parse_args(model_args[name]))
    module = FusedSegmentation(build(request.model)).eval()
    odd = np.stack([photo[:97, :131], photo[200:297, 300:431]])
    for batch in (photo[None], odd):
        labels = _ort_run(exported(name), np.ascontiguousarray(batch))
        with torch.no_grad():
            expected = module(torch.from_numpy(np.array(batch))).numpy()
        assert labels.shape == batch.shape[:3] and labels.dtype == np.uint8
        assert (labels == expected).mean() >= 0.999


def test_card_is_embedded_and_in_the_sidecar_with_the_file_sha(exported):
    path = exported("fcn50")
    embedded = {p.key: p.value for p in onnx.load(str(path)).metadata_props}[CARD_KEY]
    sidecar = json.loads(path.with_name("model.onnx.json").read_text())
    assert sidecar.pop("sha256") == file_sha256(path)
    assert json.loads(embedded) == sidecar
    card = read_card(path)
    assert card.model == "fcn_resnet50" and card.fused and card.opset == 17
    assert card.classes[15] == "person" and len(card.palette) == 21
    assert card.mean == pytest.approx((0.485, 0.456, 0.406)) and card.input_size == (96, 96)
    assert {"torch", "onnx", "onnxruntime"} <= set(card.versions)
    parity = card.checks["parity"]
    assert parity["label_agreement"] >= 0.999 and parity["max_abs_logit_diff"] < 1e-3
    assert parity["reference"] == "PyTorch (eager, CPU)" and parity["image"] == "astronaut.jpg"


def test_unfused_export_is_the_plain_network(exported):
    model = onnx.load(str(exported("unet-unfused")))
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert inp.type.tensor_type.shape.dim[1].dim_value == 3
    assert not read_card(exported("unet-unfused")).fused


def test_parity_line_and_summary_are_printed(tmp_path, capsys):
    code = main(["unet", "--unet-base", "4", "--unet-depth", "2", "--input-size", "32x32", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 0
    assert "label agreement 100.000 %" in err and "max |logit diff|" in err
    assert "segexport summary" in err and "model.onnx.json" in err


def test_shorter_side_resize_keeps_aspect_and_matches_pytorch(tmp_path, photo):
    code = main(["fcn_resnet50", "--weights", "none", "--input-size", "72", "--out", str(tmp_path)])
    assert code == 0
    card = read_card(tmp_path / "model.onnx")
    assert card.resize == "shorter" and card.network_size(612, 640) == (72, 75)
    torch.manual_seed(0)
    model = build_model("fcn_resnet50", weights="none")
    model.input_size, model.resize = (72,), "shorter"
    module = FusedSegmentation(model).eval()
    for image in (photo[:300, :150], photo[:150, :400]):  # tall, then wide
        labels = _ort_run(tmp_path / "model.onnx", np.ascontiguousarray(image)[None])
        with torch.no_grad():
            expected = module(torch.from_numpy(np.array(image))[None]).numpy()
        assert (labels == expected).mean() >= 0.999


def test_aux_head_is_dropped_and_the_saving_reported(tmp_path):
    from torchvision.models.segmentation import fcn_resnet50

    torch.manual_seed(0)
    net = fcn_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    torch.save(net.state_dict(), tmp_path / "fcn.pt")
    model = build_model("fcn_resnet50", checkpoint=tmp_path / "fcn.pt")
    assert model.network.network.aux_classifier is None
    assert any(note.startswith("dropped the aux head: 2.37 M of 35.32 M") for note in model.notes), model.notes


def test_fcn_resnet18_has_output_stride_8():
    model = fcn_resnet18(weights=None)
    features = model.network.network.backbone(torch.zeros(1, 3, 64, 96))["out"]
    assert tuple(features.shape) == (1, 512, 8, 12)
    # the network hands over the classifier's 1/8-scale logits; the fused graph resizes them once (Logits)
    assert tuple(model.network(torch.zeros(1, 3, 64, 96)).shape) == (1, 21, 8, 12)


def test_user_model_from_module_and_factory(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(
        textwrap.dedent("""
        import torch
        from torch import nn

        class Tiny(nn.Module):
            classes = ("sky", "road", "car")
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 3, 3, padding=1)
            def forward(self, x):
                return {"out": self.conv(x)}

        def build():
            return Tiny()

        def not_a_module():
            return 42
    """)
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "mynets", raising=False)
    assert main(["mynets:build", "--input-size", "32x48", "--out", "out"]) == 0
    card = read_card(tmp_path / "out" / "model.onnx")
    assert card.classes == ("sky", "road", "car") and card.model == "build" and card.input_size == (32, 48)


def test_default_output_folder_is_build_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["unet", "--unet-base", "4", "--unet-depth", "2", "--input-size", "32x32"]) == 0
    assert (tmp_path / "build" / "unet" / "model.onnx").is_file()


# Bad input to segexport (point 7 of the export issue) is covered row by row in tests/reliability/.


def test_failed_parity_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(parity, "check_parity", lambda *a, **k: parity.Parity(0.97, 0.5))
    code = main(["unet", "--unet-base", "4", "--unet-depth", "2", "--input-size", "32x32", "--out", str(tmp_path)])
    assert code == 2
    assert "only 97.000 % of pixels agree" in " ".join(capsys.readouterr().err.split())
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert main(["unet", "--unet-base", "4", "--unet-depth", "2", "--input-size", "32x32", "--out", str(out)]) == 0
    before = (out / "model.onnx").read_bytes()

    def interrupted(model_proto, path, card):
        from segrt.files import atomic_write

        def half_write(tmp: Path) -> None:
            tmp.write_bytes(model_proto.SerializeToString()[:100])
            raise KeyboardInterrupt

        atomic_write(path, half_write)

    monkeypatch.setattr(onnx_export, "save_onnx", interrupted)
    code = main(
        ["unet", "--unet-base", "4", "--unet-depth", "2", "--input-size", "32x32", "--seed", "1", "--out", str(out)]
    )
    assert code == 130
    assert (out / "model.onnx").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.onnx.json"]


def test_parity_runs_on_the_models_own_sample_where_it_ships_one():
    from segexport.defaults import parity_image

    assert parity_image("unet_shapes").name == "unet_shapes_sample.jpg"  # in-distribution for the shapes model
    assert parity_image("fcn_resnet50").name == parity_image("mynets:build").name == "astronaut.jpg"


# --- flags, each on a small real export ----------------------------------------------------------------


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_unet_flags_transposed_class_count_names_and_opset(exported, tmp_path, photo):
    argv = ["unet", "--unet-base", "4", "--unet-depth", "2", "--input-size", "32x32", "--unet-transposed"]
    argv += ["--num-classes", "3", "--classes", "sky, road,car", "--opset", "18", "--out", str(tmp_path)]
    assert main(argv) == 0
    path = tmp_path / "model.onnx"
    card = read_card(path)
    assert card.classes == ("sky", "road", "car") and len(card.palette) == 3 and card.opset == 18
    assert {entry.version for entry in onnx.load(str(path)).opset_import if entry.domain in ("", "ai.onnx")} == {18}
    assert "ConvTranspose" in _ops(path) and "ConvTranspose" not in _ops(exported("unet"))  # bilinear by default
    labels = _ort_run(path, photo[None])
    assert labels.max() < 3 and card.checks["parity"]["label_agreement"] >= 0.999


def test_fcn_resnet18_with_a_class_count_and_a_classes_file(tmp_path, photo):
    names = tmp_path / "classes.txt"
    names.write_text("background\nlane\n\ncurb\nsign\n")  # blank lines are skipped
    argv = ["fcn_resnet18", "--num-classes", "4", "--classes", str(names), "--input-size", "64x64"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    card = read_card(tmp_path / "out" / "model.onnx")
    assert card.model == "fcn_resnet18" and card.classes == ("background", "lane", "curb", "sign")
    assert card.input_size == (64, 64) and card.checks["parity"]["label_agreement"] >= 0.999
    assert _ort_run(tmp_path / "out" / "model.onnx", photo[None]).max() < 4


def test_a_classes_list_of_the_wrong_length_is_refused(tmp_path, capsys):
    argv = ["unet", "--unet-base", "4", "--unet-depth", "2", "--input-size", "32x32", "--num-classes", "3"]
    assert main([*argv, "--classes", "a,b", "--out", str(tmp_path)]) == 2
    assert "--classes names 2 classes but unet has 3" in capsys.readouterr().err


def test_user_model_with_a_checkpoint_exports_the_checkpoints_weights(tmp_path, monkeypatch, photo):
    """Weights chosen so every pixel is class 1: the random weights the factory makes would not do that."""
    (tmp_path / "ckptnets.py").write_text(
        textwrap.dedent("""
        from torch import nn

        def build():
            return nn.Conv2d(3, 3, 1)
    """)
    )
    state = {"weight": torch.zeros(3, 3, 1, 1), "bias": torch.tensor([0.0, 5.0, 0.0])}
    torch.save(state, tmp_path / "weights.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "ckptnets", raising=False)
    assert main(["ckptnets:build", "--checkpoint", "weights.pt", "--input-size", "32x32", "--out", "out"]) == 0
    assert (_ort_run(tmp_path / "out" / "model.onnx", photo[None]) == 1).all()
    assert main(["ckptnets:build", "--input-size", "32x32", "--out", "random"]) == 0
    assert not (_ort_run(tmp_path / "random" / "model.onnx", photo[None]) == 1).all()


def test_min_agreement_sets_the_fp32_export_gate(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(parity, "check_parity", lambda *a, **k: parity.Parity(0.97, 0.5))
    argv = ["unet", "--unet-base", "4", "--unet-depth", "2", "--input-size", "32x32"]
    assert main([*argv, "--min-agreement", "96", "--out", str(tmp_path / "low")]) == 0
    assert read_card(tmp_path / "low" / "model.onnx").checks["parity"]["label_agreement"] == 0.97
    assert main([*argv, "--min-agreement", "98", "--out", str(tmp_path / "high")]) == 2
    assert "minimum 98.00 %" in " ".join(capsys.readouterr().err.split())
    assert list((tmp_path / "high").iterdir()) == []


def test_a_graph_failing_onnx_checker_never_reaches_its_path(exported, tmp_path):
    from segrt.errors import SegError

    good = onnx.load(str(exported("unet")))
    card = read_card(exported("unet"))
    target = onnx_export.save_onnx(good, tmp_path / "model.onnx", card)
    before = target.read_bytes()
    bad = onnx.ModelProto()
    bad.CopyFrom(good)
    bad.graph.node[0].input[0] = "no_such_tensor"
    with pytest.raises(SegError, match=r"model\.onnx was not written: the graph fails onnx\.checker"):
        onnx_export.save_onnx(bad, target, card)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json"]


def test_the_typed_api_exports_without_a_command_line(tmp_path):
    from segexport import ExportRequest, ModelOptions, OnnxOptions, PrecisionOptions, export
    from segrt.errors import SegError
    from segrt.meta import read_card, sidecar_path

    model = ModelOptions("unet", unet_base=4, unet_depth=2, input_size=(32, 32), classes=tuple("abcdefghijklmnopqrstu"))
    result = export(ExportRequest(model=model, onnx=OnnxOptions(out=tmp_path / "out")))
    onnx_path = tmp_path / "out" / "model.onnx"
    assert result.graphs == {"fp32": onnx_path} and result.files == [onnx_path, sidecar_path(onnx_path)]
    card = read_card(onnx_path)
    assert card.input_size == (32, 32) and card.classes[:2] == ("a", "b") and card.checks["parity"]["label_agreement"]
    refused = ExportRequest(
        model=model, onnx=OnnxOptions(out=tmp_path / "refused"), precision=PrecisionOptions(("int8",))
    )
    with pytest.raises(SegError, match="--int8 needs --calib"):
        export(refused)
    assert not (tmp_path / "refused").exists()  # refused before any work
