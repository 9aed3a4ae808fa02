"""One-class models (issue 23, point 3): a network with one logit channel is exported as a binary segmenter, label
1 where sigmoid(logit) is above the threshold (0.5 unless --threshold), in the fused graph and on the host alike;
its card names background and the class and records the threshold; the gates, segrt, segrun and segbench's
PyTorch baseline work on it; the wrong flags are one line, exit 2, nothing written.

The test model is `oneclassnets:redness`: two convolutions whose logit says how much redder than green a pixel's
neighbourhood is, so the bundled photo gets a real mask (about 40 % of its pixels at 0.5), not the near-ties of
random weights; `unet --num-classes 1` is the zoo's one-class model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import segrt
from segexport.cli import main
from segexport.models.zoo import build
from segexport.onnx.fused import FusedSegmentation
from segexport.onnx.tensorrt_rules import uint8_io_problems
from segexport.request import ModelOptions
from segrt.errors import SegError
from segrt.image import postprocess
from segrt.meta import read_card, sidecar_path

ONE_CLASS_NETS = '''
import torch
from torch import nn


class Redness(nn.Module):
    """One logit channel: how much redder than green a pixel's 3x3 neighbourhood is."""

    def __init__(self, named=True):
        super().__init__()
        self.features = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 1, 1)
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.bias.zero_()
            for channel in range(3):
                self.features.weight[channel, channel] = 1 / 9
            self.head.weight.zero_()
            self.head.weight[0, 0, 0, 0] = 4.0
            self.head.weight[0, 1, 0, 0] = -4.0
            self.head.bias.fill_(-1.0)
        if named:
            self.classes = ("red",)

    def forward(self, x):
        return self.head(self.features(x))


class Three(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.conv(x)


def redness():
    return Redness()


def unnamed():
    return Redness(named=False)


def build(num_classes=1):  # a one-class factory that takes num_classes and ignores it
    return Redness()


def three():
    return Three()
'''

REDNESS = ["oneclassnets:redness", "--input-size", "64x64"]
ONE_CLASS_UNET = ["unet", "--num-classes", "1", "--unet-base", "8", "--unet-depth", "3", "--input-size", "64x64"]


@pytest.fixture(scope="module")
def nets(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("oneclasspkg")
    (folder / "oneclassnets.py").write_text(ONE_CLASS_NETS)
    sys.path.insert(0, str(folder))
    sys.modules.pop("oneclassnets", None)
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop("oneclassnets", None)


def _export(folder: Path, *args: str) -> Path:
    assert main([*args, "--out", str(folder)]) == 0
    return folder / "model.onnx"


@pytest.fixture(scope="module")
def redness(nets, tmp_path_factory) -> dict[str, Path]:
    """The redness model at threshold 0.7, fused and unfused, and fused at the default 0.5."""
    return {
        "fused": _export(tmp_path_factory.mktemp("red-fused"), *REDNESS, "--threshold", "0.7"),
        "unfused": _export(tmp_path_factory.mktemp("red-unfused"), *REDNESS, "--threshold", "0.7", "--no-fuse"),
        "default": _export(tmp_path_factory.mktemp("red-default"), *REDNESS),
    }


def _pytorch_mask(threshold: float, photo: np.ndarray) -> np.ndarray:
    """sigmoid(logit) > threshold, the logit as PyTorch computes it at the photo's size."""
    model = build(ModelOptions("oneclassnets:redness", input_size=(64, 64)))
    with torch.no_grad():
        logits = FusedSegmentation(model).logits(torch.from_numpy(np.array(photo))[None])[0, 0]
    return (torch.sigmoid(logits) > threshold).numpy()


def test_a_one_channel_unet_is_a_binary_segmenter_in_the_fused_graph(tmp_path):
    path = _export(tmp_path, *ONE_CLASS_UNET)
    card = read_card(path)
    assert card.classes == ("background", "unet") and card.threshold == 0.5 and len(card.palette) == 2
    graph = onnx.load(str(path)).graph
    ops = [node.op_type for node in graph.node]
    assert "ArgMax" not in ops and ops[-4:] == ["Resize", "Greater", "Gather", "Cast"]
    assert uint8_io_problems(onnx.load(str(path))) == []  # TensorRT's rule: the uint8 labels come from a Cast
    assert card.checks["parity"]["label_agreement"] == 1.0


def test_fused_labels_are_pytorchs_sigmoid_above_the_threshold(redness, photo):
    with segrt.load(redness["fused"]) as seg:
        labels = seg(photo)
    with segrt.load(redness["default"]) as seg:
        labels_at_half = seg(photo)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 1}
    assert np.mean(labels == _pytorch_mask(0.7, photo)) > 0.9999
    assert np.mean(labels_at_half == _pytorch_mask(0.5, photo)) > 0.9999
    share, share_at_half = labels.mean(), labels_at_half.mean()
    assert 0.05 < share < share_at_half < 0.95  # a real mask, and a higher threshold keeps fewer pixels


def test_the_card_names_background_and_the_class_and_records_the_threshold(redness, nets, tmp_path):
    card = read_card(redness["fused"])
    assert card.classes == ("background", "red") and card.threshold == 0.7
    assert read_card(redness["unfused"]).threshold == 0.7
    unnamed = read_card(_export(tmp_path / "unnamed", "oneclassnets:unnamed", "--input-size", "64x64"))
    assert unnamed.classes == ("background", "unnamed")  # the model's name where it names no class
    named = read_card(_export(tmp_path / "named", *REDNESS, "--classes", "sky,rover"))
    assert named.classes == ("sky", "rover")


def test_unfused_graph_and_host_post_processing_give_the_fused_labels(redness, photo):
    with segrt.load(redness["fused"]) as fused, segrt.load(redness["unfused"]) as unfused:
        assert np.mean(fused(photo) == unfused(photo)) > 0.9999
    assert read_card(redness["unfused"]).checks["parity"]["label_agreement"] > 0.9999


def test_a_card_that_drops_the_threshold_is_refused(redness, tmp_path):
    for kind in ("fused", "unfused"):
        copy = tmp_path / kind / "model.onnx"
        copy.parent.mkdir()
        copy.write_bytes(redness[kind].read_bytes())
        record = json.loads(sidecar_path(redness[kind]).read_text())
        record["threshold"] = None
        sidecar_path(copy).write_text(json.dumps(record))
        with pytest.raises(SegError, match="threshold None in the card"):
            read_card(copy)


def test_segrun_writes_the_two_label_mask(redness, photo_path, photo, tmp_path):
    from segrt.cli import main as segrun

    out = tmp_path / "out"
    assert segrun([str(redness["fused"]), str(photo_path), "-o", str(out), "--save", "labels", "-q", "--stats"]) == 0
    with Image.open(next(out.glob("*.png"))) as png:
        saved = np.asarray(png)
    with segrt.load(redness["fused"]) as seg:
        assert np.array_equal(saved, seg(photo))
    assert (out / "stats.csv").is_file()


def test_fp16_and_int8_graphs_pass_their_gates(redness, calib_dir, tmp_path, photo):
    out = tmp_path / "reduced"
    calib = ["--calib", str(calib_dir), "--calib-count", "2", "--int8-target", "cpu"]
    assert main([str(redness["fused"]), "--fp16", "--int8", *calib, "--onnx-only", "--out", str(out)]) == 0
    figures = {}
    with segrt.load(redness["fused"]) as seg:
        reference = seg(photo)
    for name, precision in (("model.fp16.onnx", "fp16"), ("model.int8-cpu.onnx", "int8-cpu")):
        card = read_card(out / name)
        assert card.threshold == 0.7 and card.classes == ("background", "red") and card.precision == precision
        with segrt.load(out / name, backend="ort-cpu") as seg:
            figures[precision] = float(np.mean(seg(photo) == reference))
    assert figures["fp16"] > 0.995 and figures["int8-cpu"] > 0.98, figures


def test_segbench_baseline_thresholds_as_the_graph_does(nets, redness, photo):
    from segbench.cases.baseline import EagerPipeline, build_reference
    from segbench.cases.suite import ModelSpec

    spec = ModelSpec(ModelOptions("oneclassnets:redness", input_size=(64, 64), threshold=0.7))
    reference = build_reference(spec)
    labels = EagerPipeline(reference)(photo[None])[0]
    assert set(np.unique(labels)) == {0, 1}
    assert np.mean(reference.labels_for(photo[None])[0] == _pytorch_mask(0.7, photo)) > 0.9999
    with segrt.load(redness["fused"]) as seg:
        assert np.mean(labels == seg(photo)) > 0.95  # the eager pipeline resizes with antialiasing, the graph not


def test_host_post_processing_thresholds_one_logit_channel_only():
    logits = np.array([[[[-1.0, 0.5], [0.9, 2.0]]]], np.float32)  # 1 x 1 x 2 x 2
    labels = postprocess(logits, 2, 2, threshold=0.7)  # logit(0.7) = 0.847
    assert labels.tolist() == [[[0, 0], [1, 1]]]
    assert postprocess(logits, 2, 2, threshold=0.5).tolist() == [[[0, 1], [1, 1]]]
    with pytest.raises(SegError, match="one logit channel, and these logits have 3"):
        postprocess(np.zeros((1, 3, 2, 2), np.float32), 2, 2, threshold=0.5)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (
            ["oneclassnets:build", "--num-classes", "5", "--input-size", "64x64"],
            ("--num-classes 5", "returns 1 logit channel", "drop --num-classes"),
        ),
        ([*REDNESS, "--threshold", "1.5"], ("--threshold 1.5", "between 0 and 1")),
        ([*REDNESS, "--threshold", "0"], ("--threshold 0:", "between 0 and 1")),
        (["unet", "--threshold", "0.7"], ("--threshold 0.7", "one-class models", "argmax")),
        (["unet", "--num-classes", "3", "--threshold", "0.7"], ("--num-classes 3", "give --num-classes 1")),
        (["oneclassnets:three", "--threshold", "0.7", "--input-size", "64x64"], ("has 3 classes", "drop --threshold")),
        ([*REDNESS, "--classes", "a,b,c"], ("--classes names 3", "background and its class")),
    ],
)
def test_bad_one_class_flags_are_one_line_exit_2_nothing_written(nets, argv, words, tmp_path, capfd):
    out = tmp_path / "out"
    code = main([*argv, "--out", str(out)])
    err = " ".join(capfd.readouterr().err.split())
    assert code == 2, err
    assert err.count("error:") == 1 and "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_one_class_checkpoint_given_num_classes_5_names_the_fix(tmp_path, capfd):
    from segexport.models.unet import UNet

    checkpoint = tmp_path / "lane.pt"
    torch.save(UNet(1, depth=3, base=8).state_dict(), checkpoint)
    small = ["unet", "--unet-base", "8", "--unet-depth", "3", "--input-size", "64x64", "--checkpoint", str(checkpoint)]
    code = main([*small, "--num-classes", "5", "--out", str(tmp_path / "out")])
    err = " ".join(capfd.readouterr().err.split())
    assert code == 2 and err.count("error:") == 1, err
    assert "checkpoint (1,), model (5,)" in err and "one-class model: give --num-classes 1" in err
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["lane.pt"]


def test_segbench_cuts_and_measures_the_one_class_tail(redness, photo):
    """The tail segbench times: the logit resized, compared, its channel taken as 1-byte booleans, cast to uint8."""
    import onnxruntime as ort

    from segbench.measure.tail import FRAME_1080P, measure_tail

    def session(data: bytes) -> ort.InferenceSession:
        return ort.InferenceSession(data, providers=["CPUExecutionProvider"])

    whole = session(redness["fused"].read_bytes())
    batch = np.ascontiguousarray(photo[None])
    tail = measure_tail(
        redness["fused"],
        batch,
        lambda: whole.run(None, {"image": batch}),
        session,
        iterations=3,
        min_seconds=0.2,
        seconds=2,
    )
    assert tail["nodes"] == ["Resize", "Greater", "Gather", "Cast"]
    pixels = FRAME_1080P[1] * FRAME_1080P[2]
    written = {name.split()[0]: size for name, size in tail["bytes_1080p_by_node"].items()}
    assert written == {"Resize": 4 * pixels, "Greater": pixels, "Gather": pixels, "Cast": pixels}
