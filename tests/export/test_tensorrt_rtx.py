"""A real TensorRT in every test run: TensorRT for RTX parses and builds the graph kinds in KINDS (and, through the
command, the bundled model's FP16 graph), with segexport's own builder, on this CPU machine (ahead-of-time build,
no GPU). README's "Graphs TensorRT accepts" lists what these cover and what they do not."""

from __future__ import annotations

import io
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from rich.console import Console

from segexport.cli import main
from segexport.engine import build as tensorrt_build
from segexport.engine import profile as tensorrt_profile
from segexport.request import BuildOptions
from segrt.backends import tensorrt_library as library
from segrt.errors import MissingDependency, SegError
from segrt.meta import embed_card, read_card, sidecar_path, write_sidecar

pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX is what makes these builds real: pip install segexport[rtx]")

SMALL = tensorrt_profile.shape_range((1, 32, 32), (1, 240, 320), (2, 480, 640))
USER_NET = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))

    def forward(self, x):
        return self.body(x)


def build(num_classes=3):
    return Tiny()
"""


def _build(onnx_path: Path, **options) -> tuple[bytes, tensorrt_build.BuildRecord]:
    """segexport's own builder, with TensorRT-RTX, on `onnx_path`."""
    build_options = BuildOptions(shapes=SMALL, library=library.TENSORRT_RTX, **options)
    console = Console(file=io.StringIO())
    return tensorrt_build.build_engine(onnx_path, read_card(onnx_path), build_options, console)


def _export(tmp_path_factory, name: str, *args: str) -> Path:
    out = tmp_path_factory.mktemp(name)
    assert main([*args, "--out", str(out)]) == 0
    return out / "model.onnx"


def _reduced(tmp_path_factory, source: Path, calib_dir: Path, *flags: str) -> Path:
    """The TensorRT graphs (`flags`: --fp16 and/or --int8) of `source`, in a folder of their own."""
    out = tmp_path_factory.mktemp(f"{source.parent.name}-reduced")
    calib = ["--calib", str(calib_dir), "--calib-count", "2", "--int8-target", "tensorrt"] if "--int8" in flags else []
    # random weights give near-tie logits, which INT8 flips more often (see random_unet_gate): this test is about
    # what TensorRT accepts, so it asks only that much agreement of them
    assert main([str(source), *flags, *calib, "--onnx-only", "--min-agreement", "90", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def graphs(exported, unet_graphs, fcn50_graphs, calib_dir, tmp_path_factory, monkeypatch_module) -> dict[str, Path]:
    """One graph of each kind in KINDS, exported by segexport itself."""
    monkeypatch_module.syspath_prepend(str(_user_package(tmp_path_factory)))
    unet18 = ["unet", "--unet-base", "8", "--unet-depth", "3", "--input-size", "64x64", "--unet-transposed"]
    bundled = _export(tmp_path_factory, "bundled")
    fcn18_shorter = _export(
        tmp_path_factory, "fcn18-shorter", "fcn_resnet18", "--weights", "none", "--input-size", "64"
    )
    fcn18_reduced = _reduced(tmp_path_factory, fcn18_shorter, calib_dir, "--fp16", "--int8")
    unet_unfused_reduced = _reduced(tmp_path_factory, exported("unet-unfused"), calib_dir, "--fp16", "--int8")
    one_class = _export(tmp_path_factory, "one-class", *unet18[:-1], "--num-classes", "1", "--threshold", "0.6")
    return {
        "bundled model (fused)": bundled,
        "bundled model (--no-fuse)": _export(tmp_path_factory, "bundled-unfused", "--no-fuse"),
        "bundled model INT8 (TensorRT Q/DQ)": _reduced(tmp_path_factory, bundled, calib_dir, "--int8")
        / "model.int8.onnx",
        "fcn_resnet18": _export(
            tmp_path_factory, "fcn18", "fcn_resnet18", "--weights", "none", "--input-size", "64x64"
        ),
        "fcn_resnet18 FP16 (shorter-side resize)": fcn18_reduced / "model.fp16.onnx",
        "fcn_resnet18 INT8 (shorter-side resize)": fcn18_reduced / "model.int8.onnx",
        "fcn_resnet50 (fixed resize)": exported("fcn50"),
        "fcn_resnet50 (--no-fuse)": exported("fcn50-unfused"),
        "fcn_resnet50 FP16": fcn50_graphs / "model.fp16.onnx",
        "fcn_resnet50 INT8 (TensorRT Q/DQ)": fcn50_graphs / "model.int8.onnx",
        "fcn_resnet101": _export(
            tmp_path_factory, "fcn101", "fcn_resnet101", "--weights", "none", "--input-size", "64x64"
        ),
        "unet (bilinear)": exported("unet"),
        "unet (--no-fuse)": exported("unet-unfused"),
        "unet (transposed conv, opset 18)": _export(tmp_path_factory, "unet18", *unet18, "--opset", "18"),
        "unet FP16": unet_graphs / "model.fp16.onnx",
        "unet INT8 (TensorRT Q/DQ)": unet_graphs / "model.int8.onnx",
        "unet FP16 (--no-fuse)": unet_unfused_reduced / "model.fp16.onnx",
        "unet INT8 (--no-fuse)": unet_unfused_reduced / "model.int8.onnx",
        "unet one class (--num-classes 1)": one_class,
        "unet one class FP16": _reduced(tmp_path_factory, one_class, calib_dir, "--fp16") / "model.fp16.onnx",
        "unet one class (--no-fuse)": _export(
            tmp_path_factory, "one-class-unfused", *unet18[:-1], "--num-classes", "1", "--no-fuse"
        ),
        "module:factory": _export(
            tmp_path_factory, "user", "rtxnets:build", "--num-classes", "3", "--input-size", "64x64"
        ),
    }


@pytest.fixture(scope="module")
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def _user_package(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("userpkg")
    (folder / "rtxnets.py").write_text(USER_NET)
    return folder


# the shorter-side resize is fcn_resnet18's (fcn_resnet50's is the same tail on a longer backbone: 20 s of export)
KINDS = [
    "bundled model (fused)",
    "bundled model (--no-fuse)",
    "bundled model INT8 (TensorRT Q/DQ)",
    "fcn_resnet18",
    "fcn_resnet18 FP16 (shorter-side resize)",
    "fcn_resnet18 INT8 (shorter-side resize)",
    "fcn_resnet50 (fixed resize)",
    "fcn_resnet50 (--no-fuse)",
    "fcn_resnet50 FP16",
    "fcn_resnet50 INT8 (TensorRT Q/DQ)",
    "fcn_resnet101",
    "unet (bilinear)",
    "unet (--no-fuse)",
    "unet (transposed conv, opset 18)",
    "unet FP16",
    "unet INT8 (TensorRT Q/DQ)",
    "unet FP16 (--no-fuse)",
    "unet INT8 (--no-fuse)",
    "unet one class (--num-classes 1)",
    "unet one class FP16",
    "unet one class (--no-fuse)",
    "module:factory",
]


@pytest.mark.slow  # the `graphs` fixture: a dozen exports (.ci/run's step 1b)
@pytest.mark.parametrize("kind", KINDS)
def test_every_graph_kind_parses_and_builds_with_tensorrt_rtx(graphs, kind):
    engine, record = _build(graphs[kind])
    card = read_card(graphs[kind])
    assert len(engine) > 10_000, "an engine holds at least the weights"
    assert record.library.name == library.TENSORRT_RTX and record.gpu is None
    assert record.targets == library.RTX_DEFAULT_TARGETS
    low, _, high = record.profile
    if card.fused:
        assert (low, high) == ((1, 32, 32, 3), (2, 480, 640, 3))
    else:
        assert low[:2] == (1, 3) and high[:2] == (2, 3)


@pytest.mark.slow  # the `graphs` fixture: a dozen exports (.ci/run's step 1b)
def test_targets_given_are_built_for_and_recorded(graphs):
    _, record = _build(graphs["unet (bilinear)"], targets=("8.6", "12.0"))
    assert record.targets == ("8.6", "12.0")


# --- the segexport command with --rtx ---------------------------------------------------------------


def test_fp16_rtx_writes_the_engine_and_an_unchecked_card_and_exits_0(tmp_path, capsys):
    """The command the project exists for, on the bundled model, with TensorRT-RTX on a machine without a GPU."""
    out = tmp_path / "out"
    args = ["--fp16", "--rtx", "--gpu-arch", "sm86,sm89", "--out", str(out)]
    assert main(args) == 0
    err = capsys.readouterr().err
    engine = out / "model.fp16.rtx.engine"
    card = read_card(engine)  # sha256 checked against the engine file
    info = card.tensorrt
    assert info["library"] == "tensorrt-rtx" and info["version"] == sys.modules["tensorrt_rtx"].__version__
    assert info["targets"] == ["8.6", "8.9"] and info["gpu"] is None and card.precision == "fp16"
    assert card.versions["tensorrt-rtx"] == info["version"]
    assert card.source_sha256 == json.loads(sidecar_path(out / "model.fp16.onnx").read_text())["sha256"]
    # no GPU here: the engine check is left for the target GPU, said once, and the card says so
    assert card.checks["parity"] is None and "no GPU here runs it" in card.checks["unchecked"]
    line = next(line for line in err.splitlines() if "is not checked" in line)
    assert f"`segexport {engine} --check`" in " ".join(err.split())
    assert "model.fp16.rtx.engine" in line
    assert not list(out.glob(".segexport-*")) and not list(out.glob("*.tmp"))


def test_an_fp16_onnx_file_builds_its_rtx_engine(exported, tmp_path, unet_graphs):
    source = tmp_path / "model.fp16.onnx"
    source.write_bytes((unet_graphs / "model.fp16.onnx").read_bytes())
    sidecar_path(source).write_bytes(sidecar_path(unet_graphs / "model.fp16.onnx").read_bytes())
    assert main([str(source), "--rtx"]) == 0
    assert read_card(tmp_path / "model.fp16.rtx.engine").precision == "fp16"


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--rtx", "--gpu-arch", "sm90"], "Hopper"),
        (["--rtx", "--gpu-arch", "sm87"], "Jetson Orin"),
        (["--rtx", "--gpu-arch", "sm8.6"], "not a TensorRT-RTX target"),
        (["--gpu-arch", "sm86"], "add --rtx"),
        (["--rtx", "--timing-cache", "t.cache"], "--timing-cache does not apply with --rtx"),
        (["--rtx", "--dla-core", "0"], "--dla-core does not apply with --rtx"),
    ],
)
def test_rtx_flags_that_cannot_apply_are_refused_before_any_work(exported, tmp_path, capsys, flags, words):
    out, model = tmp_path / "out", exported("unet")
    capsys.readouterr()  # what exporting the test model printed
    assert main([str(model), *flags, "--out", str(out)]) == 2  # a SystemExit here is argparse's refusal
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("segexport: error: "), err  # one line, no usage block
    assert words in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("value", ["sm90", "sm8.6", "sm86,sm99", ","])
def test_a_bad_gpu_arch_is_one_line_naming_the_flag_and_the_valid_targets(exported, tmp_path, capsys, value):
    out, model = tmp_path / "out", exported("unet")
    capsys.readouterr()  # what exporting the test model printed
    assert main([str(model), "--rtx", "--gpu-arch", value, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage:" not in err, err
    assert err.startswith("segexport: error: --gpu-arch ")
    assert f"TensorRT-RTX's targets are {', '.join(library.RTX_TARGETS)}" in err
    assert not out.exists()


def test_a_bad_gpu_arch_on_rebuild_is_refused_before_the_engine_is_read(tmp_path, capsys):
    missing = tmp_path / "model.fp16.rtx.engine"  # never read: the flag is refused first
    assert main([str(missing), "--rebuild", "--gpu-arch", "sm90"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Hopper" in err and str(missing) not in err, err


def test_rtx_without_tensorrt_rtx_names_the_install_and_the_command_for_later(exported, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)  # `import tensorrt_rtx` raises ImportError
    out = tmp_path / "out"
    assert main([str(exported("unet")), "--rtx", "--gpu-arch", "sm89", "--out", str(out)]) == 3
    err = " ".join(capsys.readouterr().err.split())
    assert "TensorRT-RTX is not installed" in err and "pip install segexport[rtx]" in err
    assert f"`segexport {exported('unet')} --engine --rtx --gpu-arch sm89`" in err
    assert not list(out.glob("*.engine"))


def test_a_graph_tensorrt_refuses_is_one_line_in_tensorrts_words(exported, tmp_path, capsys):
    """The fused graph as segexport wrote it before it learned the uint8 rule: a Transpose reads the uint8 image."""
    proto = onnx.load(str(exported("unet")))
    graph = proto.graph
    cast = next(node for node in graph.node if node.op_type == "Cast" and node.input[0] == "image")
    consumers = [node for node in graph.node if cast.output[0] in node.input]
    transpose = onnx.helper.make_node("Transpose", ["image"], ["image_nchw"], perm=[0, 3, 1, 2], name="/Transpose")
    cast.input[0] = "image_nchw"
    for node in consumers:  # the old order: Transpose(uint8) -> Cast -> ...
        if node.op_type == "Transpose":
            node.CopyFrom(onnx.helper.make_node("Identity", list(node.input), list(node.output), name=node.name))
    graph.node.insert(0, transpose)
    bad = tmp_path / "model.onnx"
    embed_card(proto, read_card(exported("unet")))
    bad.write_bytes(proto.SerializeToString())
    write_sidecar(bad, read_card(exported("unet")))
    assert main([str(bad), "--rtx"]) == 2
    err = capsys.readouterr().err
    message = " ".join(err.split())
    assert "TensorRT-RTX" in message and "ONNX parser refused" in message
    assert "Transpose" in message and "UInt8" in message  # TensorRT's own words
    assert "Traceback" not in err and not (tmp_path / "model.rtx.engine").exists()


def test_the_exporter_refuses_to_write_a_graph_that_breaks_the_uint8_rule(exported, tmp_path):
    from segexport.onnx.export import save_onnx

    proto = onnx.load(str(exported("unet")))
    cast = next(node for node in proto.graph.node if node.op_type == "Cast" and node.input[0] == "image")
    cast.op_type = "Identity"  # the uint8 image now flows into the network uncast
    del cast.attribute[:]
    with pytest.raises(SegError, match=r"uint8 input 'image' is read by Identity .*only a Cast"):
        save_onnx(proto, tmp_path / "model.onnx", read_card(exported("unet")))
    assert not (tmp_path / "model.onnx").exists()


def test_the_exporter_refuses_a_uint8_output_not_made_by_a_cast(exported, tmp_path):
    from segexport.onnx.export import save_onnx

    proto = onnx.load(str(exported("unet")))
    output = proto.graph.output[0].name
    cast = next(node for node in proto.graph.node if output in node.output)
    assert cast.op_type == "Cast"  # the fused graph casts the labels last
    cast.op_type = "Identity"  # the labels now come out of the ArgMax's int64 unchanged
    del cast.attribute[:]
    with pytest.raises(SegError, match=rf"uint8 output '{output}' is made by Identity .*only a Cast"):
        save_onnx(proto, tmp_path / "model.onnx", read_card(exported("unet")))
    assert not (tmp_path / "model.onnx").exists()


def test_a_missing_library_is_a_missing_dependency_in_the_builder(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    with pytest.raises(MissingDependency, match="TensorRT-RTX is not installed"):
        _build(exported("unet"))


@pytest.mark.slow  # the `graphs` fixture: a dozen exports (.ci/run's step 1b)
@pytest.mark.parametrize("kind", ["bundled model (fused)", "unet one class (--num-classes 1)"])
def test_fused_engine_input_and_output_are_the_uint8_image_and_labels(graphs, kind):
    """What the runtime relies on: the network TensorRT-RTX parsed takes uint8 NHWC and gives uint8 NHW (a one-class
    graph's labels: its threshold's Greater cast to uint8)."""
    trt = sys.modules.get("tensorrt_rtx") or __import__("tensorrt_rtx")
    logger = trt.Logger(trt.Logger.ERROR)
    network = trt.Builder(logger).create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(graphs[kind]))
    image, labels = network.get_input(0), network.get_output(0)
    assert (image.dtype, labels.dtype) == (trt.DataType.UINT8, trt.DataType.UINT8)
    assert tuple(image.shape)[-1] == 3 and len(tuple(labels.shape)) == 3
    assert np.prod([d for d in image.shape if d > 0]) == 3  # N, H and W are dynamic


# --- the build itself, on the real library ------------------------------------------------------------------------


class PhaseCount:
    """Counts the build phases the progress bar is given (each a rich task); on phase `signal_at`, sends this process
    SIGINT from TensorRT's thread and waits until the main thread has handled it, so where the cancel lands does
    not depend on how busy the machine is."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, signal_at: int | None = None) -> None:
        import threading

        import rich.progress

        self.phases, self.threads = 0, set()
        self.handled = threading.Event()
        add_task, caught = rich.progress.Progress.add_task, tensorrt_build.signals_caught

        def counted_add_task(progress, *args, **kwargs):
            self.phases += 1
            self.threads.add(threading.current_thread().name)
            if self.phases == signal_at:
                os.kill(os.getpid(), signal.SIGINT)
                assert self.handled.wait(10), "the main thread never handled the signal"
            return add_task(progress, *args, **kwargs)

        def signals_noted(on_signal):
            def note(signum):
                on_signal(signum)
                self.handled.set()

            return caught(note)

        monkeypatch.setattr(rich.progress.Progress, "add_task", counted_add_task)
        monkeypatch.setattr(tensorrt_build, "signals_caught", signals_noted)


@pytest.mark.slow  # the `graphs` fixture: a dozen exports (.ci/run's step 1b)
def test_ctrl_c_stops_a_real_tensorrt_rtx_build_at_its_next_step(graphs, monkeypatch):
    """TensorRT-RTX builds in a worker thread; SIGINT there makes the progress monitor's step_complete say stop,
    and the library does stop: far fewer phases run than in a whole build, and no engine comes back."""
    whole = PhaseCount(monkeypatch)
    engine, _ = _build(graphs["bundled model (fused)"])
    assert len(engine) > 10_000 and whole.phases >= 4
    assert whole.threads == {"tensorrt-build"}  # the main thread stays free for Ctrl-C

    before = signal.getsignal(signal.SIGINT)
    cancelled = PhaseCount(monkeypatch, signal_at=1)
    with pytest.raises(KeyboardInterrupt, match="signal 2"):
        _build(graphs["bundled model (fused)"])
    assert cancelled.phases < whole.phases / 2, (cancelled.phases, whole.phases)
    assert signal.getsignal(signal.SIGINT) is before  # the CLI's own Ctrl-C handling is back
