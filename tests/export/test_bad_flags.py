"""segexport fed flags and files that used to end in a traceback, or to be refused after work was done, or to be
ignored: one row each, its words, exit 2, nothing written.

Each row runs `segexport`'s main() in-process (an uncaught exception -- the traceback a user would
see -- fails the row) in a fresh folder, and then checks that no file was left in the output folder
and no temporary file or scratch folder anywhere; a row refused `before_work` shows no step done and prints
nothing on stdout. The rows of the other entry points are in tests/reliability/test_bad_inputs.py.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from segexport import parity
from segexport.cli import main
from segexport.engine import prerequisites as engine_prerequisites
from segrt.meta import sidecar_path

SMALL_UNET = ["unet", "--unet-base", "4", "--unet-depth", "2", "--input-size", "32x32"]
OUT = ["--out", "{tmp}/out"]

USER_NETS = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


class Spectral(nn.Module):  # an op the ONNX exporter has no symbol for
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return torch.fft.fft2(self.conv(x)).real


def build(num_classes=3):
    return Tiny(num_classes)


def spectral():
    return Spectral()
"""


@dataclass(frozen=True)
class Row:
    """One bad command line: what to make first, what to change in the process, the words it must say.

    `make(tmp, exported)` writes the row's files; `patch(request, tmp)` changes the process through
    the test's fixtures (`monkeypatch`, `stand_in`).
    """

    name: str
    argv: list[str]
    words: tuple[str, ...]
    make: Callable[[Path, Callable[[str], Path]], None] = lambda tmp, exported: None
    patch: Callable[[pytest.FixtureRequest, Path], None] = lambda request, tmp: None
    before_work: bool = False  # refused before the first step: no "✓" line


def refused(name: str, argv: list[str], *words: str, make=None) -> Row:
    """A command line refused by its flag checks, before any work."""
    return Row(name, argv, words, make or (lambda tmp, exported: None), before_work=True)


def _user_nets(tmp: Path, exported: Callable[[str], Path]) -> None:
    (tmp / "usernets.py").write_text(USER_NETS)
    (tmp / "syntaxnets.py").write_text("def build(:\n    pass\n")
    (tmp / "namenets.py").write_text("import torch\n\nlayer = torch.nn.Conv2d(3, 2, 1)\nbuild = undefined_factory\n")
    (tmp / "raisingnets.py").write_text("raise RuntimeError('needs the lab GPU to import')\n")


def _not_text(tmp: Path, exported: Callable[[str], Path]) -> None:
    binary = bytes(range(128, 256)) * 4  # no valid UTF-8 in it
    (tmp / "frames.txt").write_bytes(binary)
    (tmp / "classes.names").write_bytes(binary)


def _short_voc_like_list(tmp: Path, exported: Callable[[str], Path]) -> None:
    (tmp / "Segmentation").mkdir()
    (tmp / "Segmentation" / "x.txt").write_text("frame0\n")  # relative: has no parents[2] of its own


def _timing_cache(tmp: Path, exported: Callable[[str], Path]) -> None:
    (tmp / "locked.cache").write_bytes(b"a cache this user may not read")


def _unreadable_cache(request: pytest.FixtureRequest, tmp: Path) -> None:
    """A PermissionError on reading the cache (tests may run as root, where chmod 000 still reads)."""
    monkeypatch = request.getfixturevalue("monkeypatch")
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "locked.cache":
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)


def _onnx_source(tmp: Path, exported: Callable[[str], Path]) -> None:
    """A copy of the session's small exported U-Net (its card too), to build an engine from."""
    source = exported("unet")
    (tmp / "m").mkdir()
    shutil.copy(source, tmp / "m" / "model.onnx")
    shutil.copy(sidecar_path(source), sidecar_path(tmp / "m" / "model.onnx"))


def _engine_rename_fails(name: str) -> Callable[[pytest.FixtureRequest, Path], None]:
    """The engine step up to its last rename, on the stand-in TensorRT; the rename into --out of `name` fails."""

    def patch(request: pytest.FixtureRequest, tmp: Path) -> None:
        request.getfixturevalue("stand_in")
        monkeypatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setattr(engine_prerequisites, "engine_prerequisites", lambda *args, **kwargs: None)
        monkeypatch.setattr(parity, "engine_agreement", lambda *args, **kwargs: 1.0)  # segrt.load needs a real GPU
        real = os.replace

        def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
            if Path(dst) == tmp / "out" / name:
                raise OSError(errno.ENOSPC, "No space left on device")
            real(src, dst)

        monkeypatch.setattr(os, "replace", replace)

    return patch


ROWS = [
    Row("unet depth 0", ["unet", "--unet-depth", "0", *OUT], ("--unet-depth 0: must be at least 1",)),
    Row("unet base 0", ["unet", "--unet-base", "0", *OUT], ("--unet-base 0: must be at least 1",)),
    Row("zero classes", [*SMALL_UNET, "--num-classes", "0", *OUT], ("--num-classes 0: a model needs at least 1",)),
    Row(
        "negative classes, fcn",
        ["fcn_resnet18", "--num-classes", "-2", *OUT],
        ("--num-classes -2: a model needs at least 1 class",),
    ),
    Row(
        "zero classes, user model",
        ["usernets:build", "--num-classes", "0", "--input-size", "32x32", *OUT],
        ("--num-classes 0",),
        _user_nets,
    ),
    Row(
        "unet too deep for its input",
        ["unet", "--unet-depth", "9", "--unet-base", "2", *OUT],
        ("--input-size 256x256: unet needs multiples of 512", "--unet-depth 9", "lower --unet-depth"),
    ),
    Row(
        "unet too deep for a shorter-side input",
        ["unet", "--unet-depth", "6", "--unet-base", "2", "--input-size", "48", *OUT],
        ("unet needs a shorter side of at least 64",),
    ),
    Row(
        "unet too wide for one ONNX file",
        ["unet", "--unet-depth", "12", "--input-size", "4096x4096", *OUT],
        ("131072 channels", "over 2 GB of weights", "lower --unet-depth or --unet-base"),
    ),
    Row(
        "user module with a syntax error",
        ["syntaxnets:build", *OUT],
        ("syntaxnets:build: importing syntaxnets raised SyntaxError", "syntaxnets.py, line 1", "fix the module"),
        _user_nets,
    ),
    Row(
        "user module raising NameError on import",
        ["namenets:build", *OUT],
        ("importing namenets raised NameError: name 'undefined_factory' is not defined",),
        _user_nets,
    ),
    Row(
        "user module raising on import",
        ["raisingnets:build", *OUT],
        ("importing raisingnets raised RuntimeError: needs the lab GPU to import",),
        _user_nets,
    ),
    Row(
        "--weights with a user model",
        ["usernets:build", "--weights", "DEFAULT", "--input-size", "32x32", *OUT],
        ("--weights DEFAULT: applies to the zoo models only", "--checkpoint"),
        _user_nets,
    ),
    Row(
        "user model with an op ONNX lacks",
        ["usernets:spectral", "--input-size", "32x32", *OUT],
        ("spectral: torch.onnx.export failed at opset 17", "aten::fft_fft2", "--opset", "--no-fuse", "report it"),
        _user_nets,
    ),
    refused(
        "opset the exporter does not have",
        [*SMALL_UNET, "--opset", "99", *OUT],
        "--opset 99:",
        "ONNX exporter writes opsets 7 to",
        "(default 17",
    ),
    refused("opset below the exporter's", [*SMALL_UNET, "--opset", "5", *OUT], "--opset 5:", "opsets 7 to"),
    Row(
        "opset too old for an op the model has: the op named, the exporter's log kept off stdout",
        [*SMALL_UNET, "--opset", "9", *OUT],
        ("unet: torch.onnx.export failed at opset 9 on upsample_bilinear2d", "try a newer --opset (default 17)"),
    ),
    refused(
        "negative workspace", [*SMALL_UNET, "--rtx", "--workspace", "-5", *OUT], "--workspace -5: must be at least"
    ),
    refused("zero workspace", [*SMALL_UNET, "--engine", "--workspace", "0", *OUT], "--workspace 0: must be at least 1"),
    refused("negative DLA core", [*SMALL_UNET, "--engine", "--dla-core", "-1", *OUT], "--dla-core -1: must be at"),
    refused(
        "--keep-fp32 that is not a regex, before model.onnx is written",
        [*SMALL_UNET, "--fp16", "--keep-fp32", "(", "--onnx-only", *OUT],
        "--keep-fp32 '(': not a regular expression",
    ),
    refused(
        "--out that cannot be written, before the model is built",
        [*SMALL_UNET, "--out", "/proc/segexport-out"],
        "/proc/segexport-out: cannot write to the output folder",
    ),
    refused("--seed out of torch's range", [*SMALL_UNET, "--seed", str(2**64), *OUT], f"--seed {2**64}: give a seed"),
    refused(
        "more classes than a uint8 label map holds, before the export",
        [*SMALL_UNET, "--num-classes", "300", *OUT],
        "--num-classes 300: 300 classes do not fit a uint8 label map",
    ),
    refused(
        "no calibration images",
        [*SMALL_UNET, "--int8", "--calib", "{tmp}", "--calib-count", "0", *OUT],
        "--calib-count 0: use at least 1",
    ),
    refused(
        "--calib-count without --calib",
        [*SMALL_UNET, "--fp16", "--calib-count", "8", *OUT],
        "--calib-count 8 only applies with --calib",
    ),
    refused(
        "missing --checkpoint",
        [*SMALL_UNET, "--checkpoint", "gone.pt", *OUT],
        "--checkpoint gone.pt: checkpoint not found",
    ),
    # flags a combination would ignore
    refused(
        "--max-shape without an engine",
        [*SMALL_UNET, "--max-shape", "4x1080x1920", *OUT],
        "--max-shape applies to engines, and this run builds none",
    ),
    refused(
        "--workspace with --onnx-only",
        [*SMALL_UNET, "--fp16", "--onnx-only", "--workspace", "64", *OUT],
        "--workspace applies to engines",
    ),
    refused(
        "--onnx-only --rtx", [*SMALL_UNET, "--onnx-only", "--rtx", *OUT], "--onnx-only builds no engine, and --rtx"
    ),
    refused("--onnx-only --engine", [*SMALL_UNET, "--onnx-only", "--engine", *OUT], "and --engine asks for one"),
    refused(
        "unet flags on another model",
        ["fcn_resnet18", "--weights", "none", "--unet-depth", "3", *OUT],
        "--unet-depth applies to the unet model only, not fcn_resnet18",
    ),
    refused(
        "--opset for an ONNX file",
        ["{tmp}/m/model.onnx", "--rtx", "--opset", "13", *OUT],
        "--opset applies to the PyTorch export, and {tmp}/m/model.onnx is already an ONNX graph",
        make=_onnx_source,
    ),
    refused(
        "--no-fuse for an ONNX file",
        ["{tmp}/m/model.onnx", "--engine", "--no-fuse", *OUT],
        "--no-fuse applies to the PyTorch export",
        make=_onnx_source,
    ),
    refused(
        "--confidence with --no-fuse",
        [*SMALL_UNET, "--no-fuse", "--confidence", *OUT],
        "--confidence adds an output to the fused graph, and --no-fuse exports the plain network: drop --no-fuse",
    ),
    refused(
        "--confidence for an ONNX file",
        ["{tmp}/m/model.onnx", "--engine", "--confidence", *OUT],
        "--confidence applies to the PyTorch export",
        "export the model again with it",
        make=_onnx_source,
    ),
    refused(
        "--input-size for an ONNX file",
        ["{tmp}/m/model.onnx", "--rtx", "--input-size", "64x64", *OUT],
        "--input-size applies to the PyTorch export",
        make=_onnx_source,
    ),
    refused(
        "--image where nothing is checked",
        ["{tmp}/m/model.onnx", "--triton", "{tmp}/repo", "--image", "{tmp}/a.jpg", *OUT],
        "--image applies to the parity checks, and this run checks no graph or engine",
        make=_onnx_source,
    ),
    refused("doctor with a flag", ["doctor", "--fp16"], "--fp16 does not apply to doctor"),
    Row(
        "--calib list that is not text",
        [*SMALL_UNET, "--int8", "--calib", "{tmp}/frames.txt", *OUT],
        ("frames.txt: cannot read it as a list of images (not UTF-8 text)",),
        _not_text,
    ),
    Row(
        "--calib relative Segmentation/x.txt",
        [*SMALL_UNET, "--int8", "--calib", "Segmentation/x.txt", *OUT],
        ("--calib Segmentation/x.txt: names 1 missing image(s)",),
        _short_voc_like_list,
    ),
    Row(
        "--classes file that is not text",
        [*SMALL_UNET, "--classes", "{tmp}/classes.names", *OUT],
        ("--classes", "classes.names: cannot read it (not UTF-8 text)"),
        _not_text,
    ),
    Row(
        "unreadable --timing-cache",
        [*SMALL_UNET, "--engine", "--timing-cache", "{tmp}/locked.cache", *OUT],
        ("--timing-cache", "locked.cache: cannot read it (Permission denied)"),
        _timing_cache,
        _unreadable_cache,
    ),
    Row(
        "profile that contradicts itself, before the export",
        [*SMALL_UNET, "--fp16", "--min-shape", "1x800x800", "--max-shape", "1x480x640", *OUT],
        ("must grow from min to opt to max",),
    ),
    Row(
        "engine cannot be renamed into place",
        ["{tmp}/m/model.onnx", "--engine", *OUT],
        ("out/model.engine: cannot write the engine (No space left on device)",),
        _onnx_source,
        _engine_rename_fails("model.engine"),
    ),
    Row(
        "engine card cannot be renamed into place",
        ["{tmp}/m/model.onnx", "--engine", *OUT],
        ("out/model.engine: cannot write the engine (No space left on device)",),
        _onnx_source,
        _engine_rename_fails("model.engine.json"),
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_bad_flag_row(row, exported, request, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    for module in ("usernets", "syntaxnets", "namenets", "raisingnets"):
        monkeypatch.delitem(sys.modules, module, raising=False)  # each row's own file, not an earlier import
    row.make(tmp_path, exported)
    capfd.readouterr()  # what making the row's files printed (a first export of the session) is not the row's
    before = set(tmp_path.rglob("*"))
    row.patch(request, tmp_path)
    code = main([arg.format(tmp=tmp_path) for arg in row.argv])
    out, err = capfd.readouterr()
    assert code == 2, err
    message = " ".join(err.split())  # rich may wrap the one logical line
    for word in row.words:
        assert word.format(tmp=tmp_path) in message, (word, err)
    assert "Traceback" not in err and err.count("error:") == 1, err
    assert "Torch IR graph" not in out and len(out.splitlines()) < 5, out[:2000]  # no exporter's log on stdout
    if row.before_work:
        assert "✓" not in err, err
    left = [p for p in tmp_path.rglob("*") if p not in before and not p.is_dir() and "__pycache__" not in p.parts]
    assert left == [], left
    assert not [p for p in tmp_path.rglob(".segexport-*")]
