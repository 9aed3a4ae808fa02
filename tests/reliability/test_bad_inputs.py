"""Every entry point fed what users really have: one row per bad input, its exit code and the words it must say.

The CLIs are called in-process (`main(argv)`), so any uncaught exception -- the
traceback a user would see -- fails the row. A few rows run as real subprocesses
to prove the installed commands print no traceback either.
"""

from __future__ import annotations

import importlib.util
import io
import shutil
import struct
import subprocess
import sys
import types
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import segrt
from segbench.cli import main as segbench_main
from segexport.cli import main as segexport_main
from segrt.backends import tensorrt as trt_backend
from segrt.cli import main as segrun_main
from segrt.errors import MissingDependency, SegError
from segrt.meta import ModelCard, read_card, sidecar_path, write_sidecar

SMALL_UNET = ["unet", "--unet-base", "4", "--unet-depth", "2", "--input-size", "32x32"]
# segbench's one-case flags for the same small U-Net, one quick sample, no PyTorch baseline
SMALL_BENCH = [
    "--model", "unet", "--input-size", "32x32", "--export-arg=--unet-base", "--export-arg=4",
    "--export-arg=--unet-depth", "--export-arg=2", "--shape", "1x48x64", "--no-baseline",
    "--iterations", "1", "--warmup", "0", "--min-seconds", "0.01", "--cache", "{tmp}/cache",
]  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One bad input: how to make it, the command line (or API call), the exit code and the words."""

    name: str
    argv: list[str]
    code: int
    words: tuple[str, ...]
    make: Callable[[Path, Callable[[str], Path]], None] = lambda tmp, exported: None


# --- inputs made on demand -----------------------------------------------------------------------------


def _image(path: Path, array: np.ndarray, **kwargs: object) -> None:
    Image.fromarray(array).save(path, **kwargs)


def _images(tmp: Path, exported: Callable[[str], Path]) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    _image(tmp / "gray.png", rgb[..., 0])
    _image(tmp / "rgba.png", np.dstack([rgb, rgb[..., :1]]))
    _image(tmp / "one.png", rgb[:1, :1])
    Image.fromarray(rgb).convert("CMYK").save(tmp / "cmyk.jpg")
    rotated = Image.fromarray(rgb)
    exif = rotated.getexif()
    exif[0x0112] = 8
    rotated.save(tmp / "exif.jpg", exif=exif)
    _image(tmp / "deep.png", np.full((8, 8), 60000, np.uint16))
    _png16_rgb(tmp / "deep-rgb.png", np.full((8, 8, 3), 60000, np.uint16))
    (tmp / "empty.jpg").write_bytes(b"")
    (tmp / "text.jpg").write_text("a text file with an image suffix")
    full = io.BytesIO()
    Image.fromarray(np.repeat(rgb, 8, axis=0)).save(full, format="JPEG")
    (tmp / "truncated.jpg").write_bytes(full.getvalue()[:400])


def _png16_rgb(path: Path, array: np.ndarray) -> None:
    """A 48-bit RGB PNG, written by hand: Pillow cannot write one (and reads it as 8-bit RGB)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    height, width, _ = array.shape
    rows = b"".join(b"\0" + array[y].astype(">u2").tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )


def _model_copy(tmp: Path, exported: Callable[[str], Path], name: str = "unet") -> Path:
    target = tmp / "m" / "model.onnx"
    target.parent.mkdir(exist_ok=True)
    shutil.copy(exported(name), target)
    shutil.copy(sidecar_path(exported(name)), sidecar_path(target))
    return target


def _truncated_onnx(tmp: Path, exported: Callable[[str], Path]) -> None:
    target = _model_copy(tmp, exported)
    target.write_bytes(target.read_bytes()[:5000])
    sidecar_path(target).unlink()


def _random_onnx(tmp: Path, exported: Callable[[str], Path]) -> None:
    (tmp / "m").mkdir()
    (tmp / "m" / "model.onnx").write_bytes(np.random.default_rng(1).bytes(20000))


def _not_segmentation_onnx(tmp: Path, exported: Callable[[str], Path]) -> None:
    """A valid ONNX graph (Add of two inputs) with no model card: not something segexport made."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    (tmp / "m").mkdir()
    onnx.save(onnx.helper.make_model(graph), tmp / "m" / "model.onnx")


def _card_missing(tmp: Path, exported: Callable[[str], Path]) -> None:
    target = _model_copy(tmp, exported)
    model = onnx.load(str(target))
    del model.metadata_props[:]
    onnx.save(model, target)
    sidecar_path(target).unlink()


def _card_malformed(tmp: Path, exported: Callable[[str], Path]) -> None:
    sidecar_path(_model_copy(tmp, exported)).write_text('{"model": "unet", "classes": ')


def _card_disagrees(tmp: Path, exported: Callable[[str], Path]) -> None:
    """The card of the unfused graph, with this file's own sha256, beside the fused graph."""
    target = _model_copy(tmp, exported)
    write_sidecar(target, read_card(exported("unet-unfused")))


def _card_stale(tmp: Path, exported: Callable[[str], Path]) -> None:
    target = _model_copy(tmp, exported)
    shutil.copy(sidecar_path(exported("fcn50")), sidecar_path(target))


def _engine(tmp: Path, content: bytes, **tensorrt: object) -> Path:
    engine = tmp / "m" / "model.engine"
    engine.parent.mkdir(exist_ok=True)
    engine.write_bytes(content)
    card = ModelCard(
        model="unet",
        classes=("a", "b"),
        palette=((0, 0, 0), (9, 9, 9)),
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        input_size=(32, 32),
        tensorrt=dict(tensorrt),
    )
    write_sidecar(engine, card)
    return engine


def _engine_random(tmp: Path, exported: Callable[[str], Path]) -> None:
    _engine(tmp, np.random.default_rng(2).bytes(3000), version="10.3.0", gpu="Orin", compute_capability="8.7")


def _engine_truncated_after_card(tmp: Path, exported: Callable[[str], Path]) -> None:
    engine = _engine(tmp, b"\x00" * 3000, version="10.3.0", gpu="Orin", compute_capability="8.7")
    engine.write_bytes(engine.read_bytes()[:100])  # cut after the card was written: sha256 no longer matches


def _engine_without_card(tmp: Path, exported: Callable[[str], Path]) -> None:
    sidecar_path(_engine(tmp, b"plan")).unlink()


def _checkpoints(tmp: Path, exported: Callable[[str], Path]) -> None:
    from segexport.models.unet import UNet

    state = UNet(21, base=4, depth=2).state_dict()
    torch.save({k: v for k, v in state.items() if k != "head.bias"}, tmp / "missing.pt")
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp / "extra.pt")
    torch.save({**state, "head.weight": torch.zeros(21, 4, 3, 3)}, tmp / "misshaped.pt")
    torch.save(UNet(21, base=4, depth=2), tmp / "pickled.pt")
    (tmp / "garbage.pt").write_bytes(b"not a checkpoint")
    (tmp / "mynets.py").write_text("def not_a_module():\n    return 42\n\ndef broken():\n    raise ValueError('no')\n")
    (tmp / "a-file").write_text("")


def _suite(tmp: Path, exported: Callable[[str], Path]) -> None:
    (tmp / "unknown-model.toml").write_text(
        'name = "x"\n[[model]]\nname = "resnet9000"\nruns = [{backend = "ort-cpu"}]\n'
    )
    (tmp / "bad.toml").write_text("name = [unclosed\n")


MODEL = "{tmp}/m/model.onnx"
ENGINE = "{tmp}/m/model.engine"
OUT = ["-o", "{tmp}/out"]

ROWS = [
    # segexport: models, checkpoints, files
    Row("unknown model", ["segexport", "resnet9000"], 2, ("unknown model 'resnet9000'", "fcn_resnet50", "unet")),
    Row(
        "missing checkpoint",
        ["segexport", *SMALL_UNET, "--checkpoint", "{tmp}/nowhere.pt"],
        2,
        ("nowhere.pt", "checkpoint not found"),
    ),
    Row(
        "checkpoint missing keys",
        ["segexport", *SMALL_UNET, "--checkpoint", "{tmp}/missing.pt"],
        2,
        ("missing.pt", "missing 1 key(s): head.bias"),
        _checkpoints,
    ),
    Row(
        "checkpoint extra keys",
        ["segexport", *SMALL_UNET, "--checkpoint", "{tmp}/extra.pt"],
        2,
        ("extra.pt", "unexpected 1 key(s): extra.weight"),
        _checkpoints,
    ),
    Row(
        "checkpoint misshaped keys",
        ["segexport", *SMALL_UNET, "--checkpoint", "{tmp}/misshaped.pt"],
        2,
        ("misshaped 1 key(s): head.weight", "checkpoint (21, 4, 3, 3), model (21, 4, 1, 1)"),
        _checkpoints,
    ),
    Row(
        "pickle checkpoint",
        ["segexport", *SMALL_UNET, "--checkpoint", "{tmp}/pickled.pt"],
        2,
        ("pickled.pt", "refused to unpickle", "weights_only=True", "state_dict"),
        _checkpoints,
    ),
    Row(
        "garbage checkpoint",
        ["segexport", *SMALL_UNET, "--checkpoint", "{tmp}/garbage.pt"],
        2,
        ("garbage.pt", "not a readable PyTorch checkpoint"),
        _checkpoints,
    ),
    Row(
        "factory returns no module",
        ["segexport", "mynets:not_a_module"],
        2,
        ("mynets:not_a_module", "returned int, not a torch.nn.Module"),
        _checkpoints,
    ),
    Row("factory raises", ["segexport", "mynets:broken"], 2, ("the factory raised ValueError: no",), _checkpoints),
    Row("module not importable", ["segexport", "nosuch.nets:build"], 2, ("cannot import nosuch.nets",)),
    Row(
        "weights without network",
        ["segexport", "fcn_resnet50", "--weights", "DEFAULT"],
        2,
        ("cannot download", "--checkpoint", "--weights none"),
    ),
    Row(
        "output under a file",
        ["segexport", *SMALL_UNET, "--out", "{tmp}/a-file/out"],
        2,
        ("a-file/out", "cannot write", "--out"),
        _checkpoints,
    ),
    Row("input size off the divisor", ["segexport", "unet", "--input-size", "30x30"], 2, ("needs multiples of 16",)),
    Row(
        "truncated onnx given to segexport",
        ["segexport", MODEL, "--fp16"],
        2,
        ("model.onnx", "not a readable ONNX"),
        _truncated_onnx,
    ),
    Row("random-byte onnx given to segexport", ["segexport", MODEL, "--engine"], 2, ("model.onnx",), _random_onnx),
    Row(
        "onnx without card given to segexport",
        ["segexport", MODEL, "--fp16"],
        2,
        ("model.onnx", "no segexport model card"),
        _card_missing,
    ),
    Row("int8 without calibration", ["segexport", *SMALL_UNET, "--int8"], 2, ("--calib",)),
    Row(
        "not-an-image parity photo",
        ["segexport", *SMALL_UNET, "--image", "{tmp}/text.jpg"],
        2,
        ("text.jpg", "not an image"),
        _images,
    ),
    # segrun: model files and cards
    Row(
        "truncated onnx",
        ["segrun", MODEL, "{tmp}/one.png", *OUT],
        2,
        ("model.onnx: not a readable ONNX file", "truncated?"),
        lambda t, e: (_truncated_onnx(t, e), _images(t, e)),
    ),
    Row(
        "random-byte onnx",
        ["segrun", MODEL, "{tmp}/one.png", *OUT],
        2,
        ("model.onnx: not a readable ONNX file",),
        lambda t, e: (_random_onnx(t, e), _images(t, e)),
    ),
    Row(
        "valid onnx, not a segmentation graph",
        ["segrun", MODEL, "{tmp}/one.png", *OUT],
        2,
        ("model.onnx", "no segexport model card"),
        lambda t, e: (_not_segmentation_onnx(t, e), _images(t, e)),
    ),
    Row(
        "model card missing",
        ["segrun", MODEL, "{tmp}/one.png", *OUT],
        2,
        ("no segexport model card",),
        lambda t, e: (_card_missing(t, e), _images(t, e)),
    ),
    Row(
        "model card malformed",
        ["segrun", MODEL, "{tmp}/one.png", *OUT],
        2,
        ("model.onnx.json", "not valid JSON"),
        lambda t, e: (_card_malformed(t, e), _images(t, e)),
    ),
    Row(
        "model card disagrees with its file",
        ["segrun", MODEL, "{tmp}/one.png", *OUT],
        2,
        ("says unfused", "re-export it"),
        lambda t, e: (_card_disagrees(t, e), _images(t, e)),
    ),
    Row(
        "model card of another file",
        ["segrun", MODEL, "{tmp}/one.png", *OUT],
        2,
        ("does not match model.onnx", "the file changed after it was exported; re-export it"),
        lambda t, e: (_card_stale(t, e), _images(t, e)),
    ),
    Row(
        "engine without its card",
        ["segrun", ENGINE, "{tmp}/one.png", *OUT],
        2,
        ("model.engine.json is missing", "rebuild"),
        lambda t, e: (_engine_without_card(t, e), _images(t, e)),
    ),
    Row(
        "engine truncated after its card",
        ["segrun", ENGINE, "{tmp}/one.png", *OUT],
        2,
        ("does not match model.engine",),
        lambda t, e: (_engine_truncated_after_card(t, e), _images(t, e)),
    ),
    Row(
        "engine, no TensorRT installed",
        ["segrun", ENGINE, "{tmp}/one.png", *OUT],
        3,
        ("model.engine", "TensorRT is not installed", "pip install segexport[tensorrt]", "JetPack"),
        lambda t, e: (_engine_random(t, e), _images(t, e)),
    ),
    Row(
        "unknown backend",
        ["segrun", "{unet}", "{tmp}/one.png", "--backend", "tpu", *OUT],
        2,
        ("invalid choice",),
        _images,
    ),
    Row(
        "output folder under a file",
        ["segrun", "{unet}", "{tmp}/one.png", "-o", "{tmp}/a-file/out"],
        2,
        ("a-file/out", "cannot write"),
        lambda t, e: (_images(t, e), _checkpoints(t, e)),
    ),
    # segrun: images
    Row("empty image", ["segrun", "{unet}", "{tmp}/empty.jpg", *OUT], 2, ("empty.jpg: empty file",), _images),
    Row(
        "truncated image",
        ["segrun", "{unet}", "{tmp}/truncated.jpg", *OUT],
        2,
        ("truncated.jpg: cannot decode",),
        _images,
    ),
    Row("not an image", ["segrun", "{unet}", "{tmp}/text.jpg", *OUT], 2, ("text.jpg: not an image",), _images),
    Row(
        "16-bit image",
        ["segrun", "{unet}", "{tmp}/deep.png", *OUT],
        2,
        ("deep.png: 16/32-bit integer image", "convert it to 8-bit RGB"),
        _images,
    ),
    Row(
        "16-bit RGB PNG",
        ["segrun", "{unet}", "{tmp}/deep-rgb.png", *OUT],
        2,
        ("deep-rgb.png: 16-bit-per-channel image", "convert it to 8-bit RGB"),
        _images,
    ),
    Row("missing image", ["segrun", "{unet}", "{tmp}/nowhere.png", *OUT], 2, ("nowhere.png: no such file",)),
    Row(
        "grayscale, RGBA, CMYK, EXIF-rotated, 1x1: converted and segmented",
        [
            "segrun",
            "{unet}",
            "{tmp}/gray.png",
            "{tmp}/rgba.png",
            "{tmp}/cmyk.jpg",
            "{tmp}/exif.jpg",
            "{tmp}/one.png",
            *OUT,
        ],
        0,
        ("5 frame(s) segmented, 0 skipped",),
        _images,
    ),
    Row(
        "a folder with good and bad files",
        ["segrun", "{unet}", "{tmp}/imgs", *OUT],
        1,
        ("5 frame(s) segmented, 5 skipped", "skipped {tmp}/imgs/deep.png", "skipped {tmp}/imgs/deep-rgb.png"),
        lambda t, e: (_images(t, e), shutil.copytree(t, t / "imgs")),
    ),
    # segbench
    Row(
        "suite names an unknown model",
        ["segbench", "{tmp}/unknown-model.toml"],
        2,
        ("unknown-model.toml", "resnet9000"),
        _suite,
    ),
    Row("suite is not TOML", ["segbench", "{tmp}/bad.toml"], 2, ("bad.toml",), _suite),
    Row("suite file missing", ["segbench", "{tmp}/nowhere.toml"], 2, ("nowhere.toml",)),
    Row("unknown precision", ["segbench", "--model", "unet", "--precision", "int4"], 2, ("int4",)),
    Row(
        "run folder under a file",
        ["segbench", *SMALL_BENCH, "--out", "{tmp}/file/run"],
        2,
        ("{tmp}/file/run", "cannot write the run directory"),
        lambda t, e: (t / "file").write_text("a file"),
    ),
    Row(
        "photo that is not an image",
        ["segbench", *SMALL_BENCH, "--image", "{tmp}/text.jpg", "--out", "{tmp}/run"],
        2,
        ("{tmp}/text.jpg", "not an image"),
        _images,
    ),
    Row(
        "labelled set that is not there",
        ["segbench", *SMALL_BENCH, "--dataset", "{tmp}/nowhere", "--out", "{tmp}/run"],
        2,
        ("{tmp}/nowhere", "no such dataset folder"),
    ),
    Row(
        "checkpoint of random bytes: the case fails, the run is written",
        ["segbench", *SMALL_BENCH, "--export-arg=--checkpoint", "--export-arg={tmp}/garbage.pt", "--out", "{tmp}/run"],
        1,
        ("1 of 1 cases failed", "garbage.pt"),
        lambda t, e: (t / "garbage.pt").write_bytes(np.random.default_rng(2).bytes(3000)),
    ),
]

MAINS = {"segexport": segexport_main, "segrun": segrun_main, "segbench": segbench_main}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test may depend on, or use, a network: torchvision's downloads fail as they do offline."""
    import urllib.error

    import torchvision.models._api

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_bad_input_row(row, exported, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "mynets", raising=False)  # each row's own mynets.py, not an earlier one
    row.make(tmp_path, exported)
    values = {"tmp": str(tmp_path), "unet": str(exported("unet"))}
    command, *argv = [arg.format(**values) for arg in row.argv]
    try:
        code = MAINS[command](argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == row.code, err
    message = " ".join(err.split())  # rich may wrap the one logical line
    for word in row.words:
        assert word.format(**values) in message, (word, err)
    assert "Traceback" not in err
    if row.code == 2 and command != "segrun":
        assert err.count("error:") == 1, err
    if (command == "segexport" and row.code != 0) or (command == "segrun" and row.code == 2):
        assert not _leftovers(tmp_path), _leftovers(tmp_path)
    if command == "segbench" and row.code == 2:
        assert not (tmp_path / "run").exists()  # refused before the run folder was made
    if command == "segbench" and row.code == 1:
        assert (tmp_path / "run" / "results.json").is_file()  # a failed case is reported, the run still written


def _leftovers(tmp: Path) -> list[Path]:
    """What a failed run must not leave: temporary files, scratch folders, files in an output folder."""
    return [
        path
        for path in tmp.rglob("*")
        if path.name.endswith(".tmp")
        or path.name.startswith(".segexport-")
        or (path.is_file() and {"out", "build"} & set(path.relative_to(tmp).parts[:-1]))
    ]


def test_the_leftover_check_sees_what_a_failed_run_could_leave(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.onnx").write_bytes(b"an input, not a leftover")
    (tmp_path / "build" / "unet").mkdir(parents=True)  # an empty output folder is not a half-written file
    assert _leftovers(tmp_path) == []
    made = [
        tmp_path / "build" / "unet" / "model.onnx",
        tmp_path / "out" / "sub" / "a.png",
        tmp_path / "m" / ".model.onnx.x1.tmp",
        tmp_path / "m" / ".segexport-abc",
    ]
    for path in made[:3]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    made[3].mkdir()
    assert sorted(_leftovers(tmp_path)) == sorted(made)


# --- segrt.load: every bad model file, card and option ----------------------------------------------------


@dataclass(frozen=True)
class LoadRow:
    """One bad `segrt.load` call: how to make its file, the call's options, the error type and its words."""

    name: str
    path: str
    words: tuple[str, ...]
    make: Callable[[Path, Callable[[str], Path]], None] = lambda tmp, exported: None
    options: tuple[tuple[str, str], ...] = ()
    error: type[SegError] = SegError
    tensorrt: str | None = None  # install a stand-in `tensorrt` module of this version
    gpu: str | None = None  # pretend this GPU (compute capability 9.0) is device 0


def _engine_orin(tmp: Path, exported: Callable[[str], Path]) -> None:
    _engine(tmp, b"serialized engine stand-in", version="10.3.0", gpu="Orin", compute_capability="8.7")


def _card_on_a_relu(tmp: Path, exported: Callable[[str], Path]) -> None:
    """A valid ONNX graph that is not a segmentation graph, with a valid card (its own sha256) beside it."""
    _not_segmentation_onnx(tmp, exported)
    write_sidecar(tmp / "m" / "model.onnx", read_card(exported("unet")))


LOAD_ROWS = [
    LoadRow("missing file", "{tmp}/nowhere.onnx", ("nowhere.onnx: no such file",)),
    LoadRow(
        "folder without a model",
        "{tmp}/m",
        ("m: no model.onnx for precision fp32", "export it with `segexport MODEL`"),
        lambda t, e: (t / "m").mkdir(),
    ),
    # segrt reads the file itself before ONNX Runtime, to check the card against the graph first
    LoadRow("random-byte onnx", MODEL, ("model.onnx: not a readable ONNX file", "re-export"), _random_onnx),
    LoadRow("truncated onnx", MODEL, ("model.onnx: not a readable ONNX file", "truncated?"), _truncated_onnx),
    LoadRow(
        "valid onnx, not a segmentation graph", MODEL, ("model.onnx: no segexport model card",), _not_segmentation_onnx
    ),
    LoadRow(
        "valid onnx, not a segmentation graph, with a card",
        MODEL,
        ("model.onnx: its model card says fused", "the graph's input is [1, 3]"),
        _card_on_a_relu,
    ),
    LoadRow("card missing", MODEL, ("model.onnx: no segexport model card in the file or beside it",), _card_missing),
    LoadRow("card malformed", MODEL, ("model.onnx.json: the model card is not valid JSON",), _card_malformed),
    LoadRow("card of the unfused graph", MODEL, ("says unfused (N x 3 x H x W float)",), _card_disagrees),
    LoadRow("card of another file", MODEL, ("model.onnx.json: the model card does not match model.onnx",), _card_stale),
    LoadRow("engine without its card", ENGINE, ("model.engine.json is missing",), _engine_without_card),
    LoadRow("engine changed after its card", ENGINE, ("does not match model.engine",), _engine_truncated_after_card),
    LoadRow(
        "engine of another TensorRT",
        ENGINE,
        (
            "built with TensorRT 10.3.0 and this machine has TensorRT 10.13.0",
            "`segexport {tmp}/m/model.engine --rebuild`",
        ),
        _engine_orin,
        tensorrt="10.13.0",
    ),
    LoadRow(
        "engine of another GPU",
        ENGINE,
        ("built for Orin (compute capability 8.7) and this GPU is NVIDIA H100", "rebuild the engine on this machine"),
        _engine_orin,
        tensorrt="10.3.0",
        gpu="NVIDIA H100",
    ),
    LoadRow("bad backend name", MODEL, ("unknown backend 'tpu'", "ort-cpu"), _random_onnx, (("backend", "tpu"),)),
    LoadRow(
        "bad precision",
        "{tmp}/m",
        ("precision 'int4' is not one of fp32, fp16, int8",),
        _random_onnx,
        (("precision", "int4"),),
    ),
    LoadRow(
        "engine on an ONNX Runtime backend",
        ENGINE,
        ("an engine runs on the tensorrt backend only, not ort-cpu",),
        _engine_orin,
        (("backend", "ort-cpu"),),
    ),
    LoadRow(
        "onnx on the tensorrt backend",
        MODEL,
        ("the tensorrt backend runs engines", "--engine"),
        _random_onnx,
        (("backend", "tensorrt"),),
    ),
]
if importlib.util.find_spec("tensorrt") is None:
    LOAD_ROWS.append(
        LoadRow(
            "engine, no TensorRT",
            ENGINE,
            ("model.engine: TensorRT is not installed", "pip install segexport[tensorrt]"),
            _engine_orin,
            error=MissingDependency,
        )
    )


@pytest.mark.parametrize("row", LOAD_ROWS, ids=[row.name for row in LOAD_ROWS])
def test_bad_load_row(row, exported, tmp_path, monkeypatch):
    row.make(tmp_path, exported)
    built_runtimes: list[object] = []
    if row.tensorrt is not None:
        stand_in = types.ModuleType("tensorrt")
        stand_in.__version__ = row.tensorrt
        stand_in.Runtime = lambda *args: built_runtimes.append(args)
        monkeypatch.setitem(sys.modules, "tensorrt", stand_in)
    if row.gpu is not None:
        monkeypatch.setattr(trt_backend, "gpu_info", lambda device: trt_backend.GpuInfo(row.gpu, "9.0"))
    with pytest.raises(SegError) as info:
        segrt.load(row.path.format(tmp=tmp_path), **dict(row.options))
    assert isinstance(info.value, row.error) and info.value.exit_code == row.error.exit_code
    message = str(info.value)
    for word in row.words:
        assert word.format(tmp=tmp_path) in message, (word, message)
    assert "\n" not in message and built_runtimes == []  # one sentence; no engine bytes reached TensorRT


@pytest.mark.parametrize(
    ("images", "words"),
    [
        (np.zeros((4, 4, 3), np.float32), "expected dtype uint8"),
        (np.zeros((4, 4, 3), np.int64), "expected dtype uint8"),
        (np.zeros((4, 4), np.uint8), "got shape (4, 4)"),
        (np.zeros((2, 2, 4, 4, 3), np.uint8), "got shape (2, 2, 4, 4, 3)"),
        (np.zeros((4, 4, 4), np.uint8), "got shape (4, 4, 4)"),
        (np.zeros((4, 4, 1), np.uint8), "got shape (4, 4, 1)"),
        (np.zeros((0, 4, 3), np.uint8), "empty image"),
        (np.zeros((0, 4, 4, 3), np.uint8), "empty batch"),
        ([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)], "image 1:"),
        ([], "non-empty list"),
        (None, "got NoneType"),
    ],
)
def test_segmenter_call_refuses_bad_arrays(exported, images, words):
    seg = segrt.load(exported("unet"))
    with pytest.raises(SegError) as info:
        seg(images)
    assert words in str(info.value)


def test_segmenter_accepts_non_contiguous_and_read_only_arrays(exported, photo):
    seg = segrt.load(exported("unet"))
    expected = seg(np.ascontiguousarray(photo[::3, ::-2]))
    frozen = np.array(photo)
    frozen.setflags(write=False)
    assert (seg(photo[::3, ::-2]) == expected).all()
    assert seg(frozen).shape == photo.shape[:2]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["segexport", "resnet9000"], "unknown model 'resnet9000'"),
        (["segrun", "{tmp}/nowhere.onnx", "{tmp}"], "nowhere.onnx: no such file"),
        (["segbench", "{tmp}/nowhere.toml"], "nowhere.toml"),
    ],
)
def test_installed_commands_print_one_line_and_no_traceback(argv, words, tmp_path):
    command = Path(sys.executable).with_name(argv[0])
    result = subprocess.run(
        [str(command), *[a.format(tmp=tmp_path) for a in argv[1:]]], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert words.format(tmp=tmp_path) in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if "error" in line]) == 1, result.stderr


def test_a_full_output_disk_is_one_clear_error_and_leaves_nothing(exported, tmp_path, monkeypatch, capsys):
    import errno

    real_write = Path.write_bytes

    def full_disk(self: Path, data: bytes) -> int:
        if self.name.endswith(".tmp"):
            real_write(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    out = tmp_path / "out"
    code = segexport_main([*SMALL_UNET, "--out", str(out)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "No space left on device" in err and "model.onnx" in err
    assert not [p for p in out.rglob("*") if p.is_file()]
