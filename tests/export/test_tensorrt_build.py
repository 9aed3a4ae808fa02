"""The TensorRT engine step up to the first TensorRT call: shapes, profile, card, version decisions, and the
`segexport` exits on a machine without TensorRT or a CUDA GPU (this one). Real builds live in tests/gpu."""

from __future__ import annotations

import importlib.util
import io
import itertools
import json
import re
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import segrt
from segexport import parity
from segexport.cli import build_parser, main, request_from_args
from segexport.engine import build as tb
from segexport.engine import files
from segexport.engine import prerequisites as prereq
from segexport.engine import profile as shapes_mod
from segexport.engine.step import build_engines
from segexport.request import EngineOptions
from segrt.backends import tensorrt_library as library
from segrt.backends.tensorrt import GpuInfo
from segrt.errors import SegError
from segrt.meta import ModelCard, artifact_name, file_sha256, read_card, sidecar_path, write_sidecar
from segrt.signals import signals_caught

UNET = ["unet", "--unet-base", "8", "--unet-depth", "3", "--input-size", "64x64"]
# On a machine with TensorRT and a GPU, segexport builds engines instead of exiting 3: tests/gpu covers that.
CAN_BUILD = prereq.engine_prerequisites([Path("model.onnx")]) is None
needs_no_engine_machine = pytest.mark.skipif(CAN_BUILD, reason="TensorRT and a CUDA GPU are usable here")


# --- shapes ---------------------------------------------------------------------------------------


def test_shapes_parse_as_images_height_width():
    assert shapes_mod.parse_shape("1x480x640") == (1, 480, 640)
    assert shapes_mod.parse_shape(" 4 X 720 x 1280 ") == (4, 720, 1280)


@pytest.mark.parametrize("text", ["1x480", "480x640x3x1", "0x64x64", "1x-4x64", "axbxc", "", "1x64x64px"])
def test_malformed_shapes_are_refused_naming_the_format(text):
    with pytest.raises(ValueError, match="NxHxW"):
        shapes_mod.parse_shape(text)


def test_malformed_shape_flag_exits_2_naming_the_format(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--max-shape", "1x480"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--max-shape" in err and "NxHxW" in err


def test_default_profile_covers_camera_frames_in_both_orientations():
    shapes = shapes_mod.shape_range()
    for height, width in ((480, 640), (720, 1280), (1080, 1920), (1920, 1080), (64, 64)):
        assert shapes.min[1] <= height <= shapes.max[1] and shapes.min[2] <= width <= shapes.max[2]
    assert shapes.opt == (1, 720, 1280)


def test_defaults_bend_to_the_shapes_given():
    small = shapes_mod.shape_range(high=(1, 480, 640))
    assert small == shapes_mod.ShapeRange((1, 64, 64), (1, 480, 640), (1, 480, 640))
    large = shapes_mod.shape_range(low=(2, 2160, 3840))
    assert large.min == (2, 2160, 3840) and large.max == (2, 2160, 3840) and large.opt == large.min
    assert shapes_mod.shape_range(best=(8, 512, 512)).max == (8, 1920, 1920)


def test_contradicting_shapes_are_refused():
    with pytest.raises(SegError, match="H must grow from min to opt to max"):
        shapes_mod.shape_range(low=(1, 800, 800), high=(1, 480, 640))


shape_strategy = st.tuples(st.integers(1, 16), st.integers(1, 4096), st.integers(1, 4096))


@given(st.one_of(st.none(), shape_strategy), st.one_of(st.none(), shape_strategy), st.one_of(st.none(), shape_strategy))
def test_shape_range_keeps_what_is_given_and_orders_the_rest(low, best, high):
    given_shapes = [s for s in (low, best, high) if s is not None]
    consistent = all(all(a <= b for a, b in zip(x, y, strict=True)) for x, y in itertools.pairwise(given_shapes))
    if not consistent:
        with pytest.raises(SegError):
            shapes_mod.shape_range(low, best, high)
        return
    shapes = shapes_mod.shape_range(low, best, high)
    for axis in range(3):
        assert shapes.min[axis] <= shapes.opt[axis] <= shapes.max[axis]
    for wanted, got in ((low, shapes.min), (best, shapes.opt), (high, shapes.max)):
        assert wanted is None or wanted == got


def test_photo_is_fitted_into_the_profile_keeping_its_aspect():
    shapes = shapes_mod.ShapeRange((1, 64, 64), (1, 240, 320), (1, 240, 320))
    height, width = shapes_mod.fit_size(612, 640, shapes)
    assert height <= 240 and width <= 320 and abs(height / width - 612 / 640) < 0.01
    assert shapes_mod.fit_size(612, 640, shapes_mod.shape_range()) == (612, 640)
    assert shapes_mod.fit_size(10, 12, shapes) == (64, 77)


# --- the network input profile ----------------------------------------------------------------------


def _card(**changes) -> ModelCard:
    base = ModelCard(
        model="test",
        classes=("background", "thing"),
        palette=((0, 0, 0), (255, 0, 0)),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        input_size=(64, 96),
    )
    return base.replace(**changes)


def test_fused_profile_is_the_images_themselves():
    shapes = shapes_mod.ShapeRange((1, 64, 64), (2, 480, 640), (4, 1080, 1920))
    assert shapes_mod.input_profile(_card(), shapes) == ((1, 64, 64, 3), (2, 480, 640, 3), (4, 1080, 1920, 3))


def test_unfused_fixed_profile_is_the_network_size_from_the_card():
    shapes = shapes_mod.ShapeRange((1, 64, 64), (2, 480, 640), (4, 1080, 1920))
    assert shapes_mod.input_profile(_card(fused=False), shapes) == ((1, 3, 64, 96), (2, 3, 64, 96), (4, 3, 64, 96))


def test_unfused_shorter_side_profile_spans_the_network_sizes_of_the_images():
    card = _card(fused=False, resize="shorter", input_size=(256,), size_divisor=8)
    shapes = shapes_mod.ShapeRange((1, 256, 256), (1, 480, 640), (1, 1080, 1920))
    low, best, high = shapes_mod.input_profile(card, shapes)
    assert low == (1, 3, 256, 256)
    assert best == (1, 3, *card.network_size(480, 640))
    assert high == (1, 3, *np.maximum(card.network_size(1080, 1920), card.network_size(256, 256)))


def test_static_graph_dimensions_win_over_the_requested_ones():
    shapes = shapes_mod.ShapeRange((1, 64, 64), (2, 480, 640), (4, 1080, 1920))
    profile = shapes_mod.input_profile(_card(fused=False), shapes, static_dims=(1, 3, -1, -1))
    assert [p[0] for p in profile] == [1, 1, 1]
    with pytest.raises(SegError, match="4"):
        shapes_mod.input_profile(_card(), shapes, static_dims=(-1, -1, 3))


# --- TensorRT 10.x vs 11.x ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "ask", "dla_flag"),
    [("10.3.0", True, False), ("10.13.0.35", True, False), ("11.0.0", False, True), ("11.4.1.2", False, True)],
)
def test_version_decides_the_strongly_typed_flag_and_the_dla_parser_flag(version, ask, dla_flag):
    api = library.describe("tensorrt", version)
    assert (api.ask_strongly_typed, api.dla_parser_flag) == (ask, dla_flag)


@pytest.mark.parametrize("version", ["8.6.1", "9.3.0", "nightly", ""])
def test_tensorrt_before_10_or_unreadable_is_refused(version):
    with pytest.raises(SegError, match="TensorRT"):
        library.describe("tensorrt", version)


def test_network_flags_ask_for_strong_typing_on_10_only(monkeypatch):
    """11.x needs no tensorrt import at all; 10.x sets bit STRONGLY_TYPED (1 in TensorRT 10's enum)."""
    assert tb.network_flags(library.describe("tensorrt", "11.4.0")) == 0
    fake = types.SimpleNamespace(NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=1))
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    assert tb.network_flags(library.describe("tensorrt", "10.3.0")) == 2


def test_dla_core_is_checked_against_the_device_then_set_with_gpu_fallback(monkeypatch):
    """The builder-config calls of --dla-core, on stand-ins for TensorRT's builder and config."""
    fake = types.SimpleNamespace(
        __version__="11.2.0",
        DeviceType=types.SimpleNamespace(DLA="DLA"),
        BuilderFlag=types.SimpleNamespace(GPU_FALLBACK=7),
    )
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    flags: list[int] = []
    config = types.SimpleNamespace(set_flag=flags.append)

    with pytest.raises(
        SegError, match=r"--dla-core 0: this device has no DLA core for TensorRT 11\.2\.0 .*drop --dla-core"
    ):
        tb._use_dla(types.SimpleNamespace(num_DLA_cores=0), config, 0)
    with pytest.raises(SegError, match=r"--dla-core 2: this device has DLA cores 0\.\.1$"):
        tb._use_dla(types.SimpleNamespace(num_DLA_cores=2), config, 2)
    assert flags == [] and not hasattr(config, "DLA_core")

    tb._use_dla(types.SimpleNamespace(num_DLA_cores=2), config, 1)
    assert (config.default_device_type, config.DLA_core, flags) == ("DLA", 1, [7])


def test_tensorrt_log_follows_the_verbosity():
    assert [tb.severity_name(v) for v in (0, 1, 2, 3, 7)] == ["ERROR", "WARNING", "INFO", "VERBOSE", "VERBOSE"]


# --- which graphs, which files, which card -------------------------------------------------------------


def test_engines_are_built_from_the_graphs_asked_for(tmp_path):
    def sources(*flags: str) -> tuple[str, ...]:
        return request_from_args(build_parser().parse_args(["model.onnx", *flags])).engine.sources

    assert sources("--engine") == ("fp32",)
    assert sources("--fp16") == ("fp16",)
    assert sources("--int8", "--engine") == ("int8",)
    assert sources("--fp16", "--int8") == ("fp16", "int8")
    assert sources() == ()
    graphs = {"fp32": tmp_path / artifact_name("model", "fp32")}
    with pytest.raises(SegError, match="fp16"):
        build_engines(EngineOptions(("fp16",)), graphs, np.zeros((4, 4, 3), np.uint8), "photo", tmp_path, None)


def test_engine_file_is_named_after_the_graph_precision(tmp_path):
    assert files.engine_path(tmp_path / "model.fp16.onnx", _card(precision="fp16")).name == "model.fp16.engine"
    assert files.engine_path(tmp_path / "model.onnx", _card(), tmp_path / "out") == tmp_path / "out" / "model.engine"
    with pytest.raises(SegError, match=r"model\.int8\.onnx --engine"):
        files.engine_path(tmp_path / "model.int8-cpu.onnx", _card(precision="int8-cpu"))


def _record(source: Path, seconds: float = 12.5) -> tb.BuildRecord:
    shapes = shapes_mod.shape_range()
    return tb.BuildRecord(
        library=library.describe("tensorrt", "10.3.0.30"),
        gpu=GpuInfo("Orin", "8.7"),
        targets=("8.7",),
        input_name="image",
        profile=shapes_mod.input_profile(_card(), shapes),
        shapes=shapes,
        build_seconds=seconds,
        source=source.name,
        options=tb.BuildOptions(shapes=shapes, workspace_mib=1024, builder_opt_level=4, dla_core=0),
    )


def test_engine_card_extends_the_onnx_card_with_the_build(exported, tmp_path):
    onnx_path = exported("unet")
    source = read_card(onnx_path)
    card = files.engine_card(source, _record(onnx_path), file_sha256(onnx_path))
    assert card.source_sha256 == file_sha256(onnx_path) != source.source_sha256
    assert (card.classes, card.palette, card.input_size, card.precision) == (
        source.classes,
        source.palette,
        source.input_size,
        source.precision,
    )
    trt = card.tensorrt
    assert (trt["version"], trt["gpu"], trt["compute_capability"]) == ("10.3.0.30", "Orin", "8.7")
    assert trt["profile"] == {
        "input": "image",
        "min": [1, 64, 64, 3],
        "opt": [1, 720, 1280, 3],
        "max": [1, 1920, 1920, 3],
    }
    assert (trt["build_seconds"], trt["source"], trt["dla_core"], trt["workspace_mib"]) == (12.5, "model.onnx", 0, 1024)
    assert card.versions["tensorrt"] == "10.3.0.30" and trt["strongly_typed"] is True


def test_saved_engine_card_records_the_engine_sha_and_refuses_a_changed_engine(exported, tmp_path):
    onnx_path = exported("unet")
    card = files.engine_card(read_card(onnx_path), _record(onnx_path), file_sha256(onnx_path))
    engine = files.save_engine(tmp_path / "model.engine", b"not really an engine, but bytes all the same", card)
    assert json.loads(sidecar_path(engine).read_text())["sha256"] == file_sha256(engine)
    assert read_card(engine) == card
    engine.write_bytes(b"other bytes")
    with pytest.raises(SegError, match="does not match"):
        read_card(engine)


# --- what is missing --------------------------------------------------------------------------------


def test_missing_sentence_names_what_how_and_the_command_for_later(tmp_path):
    sources = [tmp_path / "model.fp16.onnx"]
    assert prereq.missing_sentence(None, None, sources) is None
    for trt_problem, gpu_problem in (("No module named 'tensorrt'", None), (None, "no driver"), ("x", "y")):
        sentence = prereq.missing_sentence(trt_problem, gpu_problem, sources)
        assert sentence is not None and sentence.count(";") == 1, sentence
        assert f"`segexport {sources[0]} --engine`" in sentence
        if trt_problem:
            assert "TensorRT is not installed" in sentence and "pip install segexport[tensorrt]" in sentence
            assert "JetPack" in sentence
        if gpu_problem:
            assert "no CUDA GPU is usable (" + gpu_problem in sentence


@needs_no_engine_machine
def test_this_machine_reports_what_it_lacks_with_the_cuda_error_in_words():
    sentence = prereq.engine_prerequisites([Path("build/x/model.fp16.onnx")])
    assert sentence is not None and "`segexport build/x/model.fp16.onnx --engine`" in sentence
    if importlib.util.find_spec("tensorrt") is None:
        assert "TensorRT is not installed (No module named 'tensorrt')" in sentence
    if importlib.util.find_spec("cuda") is not None:
        assert re.search(r"cudaError\w+ = \d+", sentence), sentence  # the CUDA error by name and number


# --- the segexport command on this machine ------------------------------------------------------------


@pytest.fixture(scope="module")
def fp16_run(tmp_path_factory):
    """`segexport unet --fp16` on a machine without TensorRT/GPU: (exit code, stderr, output folder)."""
    out = tmp_path_factory.mktemp("fp16")
    capture = pytest.MonkeyPatch()
    stream = io.StringIO()
    capture.setattr(sys, "stderr", stream)
    try:
        code = main([*UNET, "--fp16", "--out", str(out)])
    finally:
        capture.undo()
    return code, stream.getvalue(), out


@needs_no_engine_machine
def test_fp16_without_tensorrt_writes_checked_onnx_then_exits_3_with_one_sentence(fp16_run, photo):
    code, err, out = fp16_run
    assert code == 3
    error_lines = [line for line in err.splitlines() if line.startswith("segexport: error:")]
    assert len(error_lines) == 1, err
    line = error_lines[0]
    assert "pip install segexport[tensorrt]" in line and "JetPack" in line
    assert f"`segexport {out / 'model.fp16.onnx'} --engine`" in line
    assert not list(out.glob("*.engine")) and not list(out.glob(".segexport-*"))
    # both graphs are there with cards matching their bytes, and they run and agree
    fp32, fp16 = (
        segrt.load(out / "model.onnx", backend="ort-cpu"),
        segrt.load(out / "model.fp16.onnx", backend="ort-cpu"),
    )
    assert fp16.card.precision == "fp16" and fp16.card.source_sha256 == file_sha256(out / "model.onnx")
    assert (fp32(photo) == fp16(photo)).mean() >= 0.995


@needs_no_engine_machine
def test_the_later_command_from_the_sentence_again_exits_3_without_touching_the_onnx(fp16_run, capsys):
    _, _, out = fp16_run
    before = file_sha256(out / "model.fp16.onnx")
    assert main([str(out / "model.fp16.onnx"), "--engine"]) == 3
    assert "TensorRT" in capsys.readouterr().err
    assert file_sha256(out / "model.fp16.onnx") == before and not list(out.glob("*.engine"))


def test_onnx_only_stops_after_the_onnx_files_with_exit_0(exported, tmp_path):
    assert main([str(exported("unet")), "--fp16", "--onnx-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "model.fp16.onnx").is_file() and read_card(tmp_path / "model.fp16.onnx").precision == "fp16"
    assert not list(tmp_path.glob("*.engine"))


def test_bad_profile_is_refused_with_exit_2_before_tensorrt_is_looked_for(exported, tmp_path, capsys):
    source = tmp_path / "model.onnx"
    shutil.copy(exported("unet"), source)
    shutil.copy(sidecar_path(exported("unet")), sidecar_path(source))
    code = main([str(source), "--engine", "--min-shape", "1x800x800", "--max-shape", "1x480x640"])
    assert code == 2 and "must grow from min to opt to max" in capsys.readouterr().err


def test_cpu_int8_graph_is_refused_naming_the_tensorrt_one(exported, tmp_path, capsys):
    source = tmp_path / "model.int8-cpu.onnx"
    shutil.copy(exported("unet"), source)
    write_sidecar(source, read_card(exported("unet")).replace(precision="int8-cpu"))
    assert main([str(source), "--engine"]) == 2
    assert "model.int8.onnx --engine" in capsys.readouterr().err


def test_an_onnx_model_without_engine_or_precision_flags_has_nothing_to_do(exported, capsys):
    assert main([str(exported("unet"))]) == 2
    assert "nothing to do" in capsys.readouterr().err


# --- the build itself, on a stand-in for TensorRT ------------------------------------------------------


def _build(onnx_path: Path, console=None, **options) -> tuple[bytes, tb.BuildRecord]:
    from rich.console import Console

    console = console or Console(file=io.StringIO())
    return tb.build_engine(onnx_path, read_card(onnx_path), tb.BuildOptions(**options), console)


def test_the_build_runs_in_a_worker_thread_and_returns_the_engine_bytes(stand_in, exported):
    engine, record = _build(exported("unet"), shapes=shapes_mod.shape_range(high=(2, 480, 640)))
    assert engine == b"stand-in serialized engine"
    assert stand_in.STATE.build_thread == "tensorrt-build"  # the main thread stays free for Ctrl-C
    assert record.profile == ((1, 64, 64, 3), (1, 480, 640, 3), (2, 480, 640, 3))
    assert (record.library.version, record.gpu.name) == ("10.3.0.30", "Stand-in GPU")


def test_timing_cache_is_written_and_the_next_build_is_given_it(stand_in, exported, tmp_path):
    cache = tmp_path / "timing.cache"
    _build(exported("unet"), timing_cache=cache)
    first = cache.read_bytes()
    assert first == stand_in.TIMED  # what the first build timed, written back
    _build(exported("unet"), timing_cache=cache)
    assert stand_in.STATE.timing_caches_given == [b"", first]  # the second build started from the first's cache
    assert cache.read_bytes() == first + stand_in.TIMED


def test_ctrl_c_during_the_build_cancels_it_through_the_monitor(stand_in, exported):
    """SIGINT lands in the main thread while TensorRT builds in the worker: the next step_complete says stop."""
    import os
    import signal

    before = signal.getsignal(signal.SIGINT)
    stand_in.STATE.steps, stand_in.STATE.step_delay_s = 10_000, 0.002  # ~20 s unless cancelled

    def interrupt(step: int) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    stand_in.STATE.on_step = interrupt
    with pytest.raises(KeyboardInterrupt):
        _build(exported("unet"))
    assert stand_in.STATE.cancelled_at is not None and 3 <= stand_in.STATE.cancelled_at < 1000
    assert signal.getsignal(signal.SIGINT) is before  # the CLI's own Ctrl-C handling is back


def test_failing_progress_and_log_callbacks_never_raise_into_tensorrt(stand_in, exported):
    """TensorRT calls them through noexcept C++: an exception there would abort the process, not the build."""
    from rich.console import Console

    class BrokenConsole(Console):
        def print(self, *objects, **kwargs):
            if any("boom" in str(o) for o in objects):
                raise UnicodeEncodeError("ascii", "boom", 0, 1, "cannot print this")
            super().print(*objects, **kwargs)

    def misbehave(monitor, logger) -> None:
        assert monitor.step_complete("a phase never started", 0) is True  # KeyError inside, kept there
        monitor.phase_finish("another phase never started")
        logger.log(stand_in.ILogger.WARNING, "boom")  # the console cannot print it

    stand_in.STATE.extra_calls = misbehave
    stream = io.StringIO()
    engine, _ = _build(exported("unet"), console=BrokenConsole(file=stream, width=400), verbosity=1)
    assert engine == b"stand-in serialized engine"
    note = stream.getvalue()
    assert "showing TensorRT's progress or log failed (step_complete: KeyError" in note
    assert "the build itself was not affected" in note


def test_tensorrt_phase_names_and_log_lines_are_shown_as_text_not_markup(stand_in, exported, monkeypatch):
    """TensorRT's words hold brackets ('[/Cast_output_0 -> (4)[INT64]]'): shown as they are, never read as rich
    markup (a closing tag there once lost the rest of the log)."""
    from rich.console import Console

    monkeypatch.setattr(stand_in, "PHASE", "[/Cast_output_0] phase")
    stand_in.STATE.steps, stand_in.STATE.step_delay_s = 3, 0.15  # long enough for the bar to be drawn
    stand_in.STATE.extra_calls = lambda monitor, logger: logger.log(stand_in.ILogger.WARNING, "[/Shape_output_0] [b]x")
    stream = io.StringIO()
    _build(exported("unet"), console=Console(file=stream, width=200, force_terminal=True), verbosity=1)
    shown = stream.getvalue()
    assert "progress or log failed" not in shown, shown
    assert "[/Shape_output_0] [b]x" in shown and "[/Cast_output_0] phase" in shown


def test_signals_are_held_for_a_block_and_handed_back(stand_in):
    import os
    import signal

    before = signal.getsignal(signal.SIGINT)
    seen: list[int] = []
    with signals_caught(seen.append) as received:
        os.kill(os.getpid(), signal.SIGINT)
        time_left = 100
        while not received and time_left:  # the handler runs between bytecodes of this thread
            time_left -= 1
    assert received == seen == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is before


def test_unreadable_or_odd_timing_cache_is_one_clear_error(tmp_path, monkeypatch):
    assert tb.read_timing_cache(None) == b"" and tb.read_timing_cache(tmp_path / "new.cache") == b""
    with pytest.raises(SegError, match="is not a file"):
        tb.read_timing_cache(tmp_path)
    locked = tmp_path / "locked.cache"
    locked.write_bytes(b"x")
    real = Path.read_bytes

    def refuse(self: Path) -> bytes:
        if self == locked:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(SegError, match=r"--timing-cache .*locked.cache: cannot read it \(Permission denied\)"):
        tb.read_timing_cache(locked)


# --- the engine's parity check ---------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
def test_parity_batch_fills_the_profiles_least_batch_with_the_photo_and_its_flips(photo, batch):
    shapes = shapes_mod.shape_range(low=(batch, 64, 64), high=(4, 320, 320))
    images = parity.parity_batch(photo, _card(), shapes)
    assert images.shape[0] == batch and images.dtype == np.uint8 and images.flags.c_contiguous
    assert images.shape[1] <= 320 and images.shape[2] <= 320
    assert (images[0] == parity.parity_batch(photo, _card(), shapes_mod.shape_range(high=(1, 320, 320)))[0]).all()
    if batch > 1:
        assert (images[1] == images[0][:, ::-1]).all() and not (images[1] == images[0]).all()
    unfused = parity.parity_batch(photo, _card(fused=False), shapes)
    assert unfused.shape == (batch, *photo.shape)  # the host resizes for an unfused engine


def test_engine_gate_feeds_the_least_batch_and_uses_the_graphs_own_reference(exported, photo, monkeypatch):
    """A stand-in engine that gives the reference's labels agrees 100 %, on a batch of the profile's min N."""

    source = exported("unet")
    card = read_card(source)
    seen: list[tuple[int, ...]] = []

    class StandInEngine:
        def __init__(self, path, backend=None):
            assert backend == "tensorrt"

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def __call__(self, batch):
            seen.append(batch.shape)
            return np.stack([parity.reference_outputs(source, image, card)[0] for image in batch])

    monkeypatch.setattr(segrt, "load", StandInEngine)
    shapes = shapes_mod.shape_range(low=(2, 64, 64), high=(2, 320, 320))
    assert parity.engine_agreement(Path("model.engine"), source, card, photo, shapes) == 1.0
    assert seen and seen[0][0] == 2  # a profile with min N 2 refuses a single image


def test_reference_is_node_by_node_for_the_tensorrt_qdq_graph_only(exported, photo, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(parity, "qdq_labels", lambda *a: calls.append("node by node") or np.zeros(1))
    monkeypatch.setattr(parity, "onnx_labels", lambda *a: calls.append("optimized") or (np.zeros(1), None))
    card = read_card(exported("unet"))
    for name in ("int8", "fp16", "fp32", "int8-cpu"):
        parity.reference_outputs(b"graph", photo, card.replace(precision=name))
    assert calls == ["node by node", "optimized", "optimized", "optimized"]


# --- what is missing, and the command for later ---------------------------------------------------------


def test_missing_cuda_python_is_named_with_how_to_install_it(monkeypatch):
    from segrt.backends import tensorrt as backend

    monkeypatch.setattr(backend, "cudart", None)
    sources = [Path("build/x/model.fp16.onnx")]
    sentence = prereq.engine_prerequisites(sources)
    assert sentence is not None and "no CUDA GPU is usable" not in sentence
    assert "cuda-python" in sentence and "not installed" in sentence
    assert "pip install segexport[tensorrt]" in sentence and "cuda-python<13" in sentence
    assert "`segexport build/x/model.fp16.onnx --engine`" in sentence and sentence.count(";") == 1
    alone = prereq.missing_sentence(None, None, sources, cuda_python_missing=True)
    assert alone is not None and alone.startswith("no TensorRT engine was built: cuda-python is not installed")


@needs_no_engine_machine
def test_the_command_for_later_carries_the_engine_flags_given(exported, tmp_path, capsys):
    import shlex

    source = tmp_path / "my models" / "model.onnx"  # a space: the command must still be one to paste
    source.parent.mkdir()
    shutil.copy(exported("unet"), source)
    shutil.copy(sidecar_path(exported("unet")), sidecar_path(source))
    engine = ["--min-shape", "2x64x64", "--max-shape", "2x480x640", "--workspace", "512"]
    engine += ["--timing-cache", str(tmp_path / "t.cache"), "--builder-opt-level", "4", "--dla-core", "0"]
    engine += ["--min-agreement", "99.5"]
    assert main([str(source), "--engine", *engine]) == 3
    message = " ".join(capsys.readouterr().err.split())
    later = re.search(r"`(segexport [^`]+)`", message)
    assert later is not None, message
    again = build_parser().parse_args(shlex.split(later[1])[1:])
    given = build_parser().parse_args([str(source), "--engine", *engine])
    assert vars(again) == vars(given)


def test_engine_rebuild_advice_names_the_onnx_by_sha_when_it_is_not_beside_the_engine(exported, tmp_path):
    """segrt's refusal of an engine from another TensorRT or GPU says what to rebuild it from."""
    from segrt.backends.engine_fit import rebuild_advice

    card = files.engine_card(read_card(exported("unet")), _record(exported("unet")), file_sha256(exported("unet")))
    engine = tmp_path / "model.engine"
    advice = rebuild_advice(card, engine)
    assert f"sha256 is {file_sha256(exported('unet'))}" in advice and "model.onnx is not beside the engine" in advice
    assert f"`segexport {engine} --rebuild`" in advice
    shutil.copy(exported("unet"), tmp_path / "model.onnx")
    command = f"segexport {engine} --rebuild"
    assert rebuild_advice(card, engine) == f"rebuild the engine on this machine with `{command}`"


# --- writing the engine and its card as a pair ------------------------------------------------------------


def _scratch_pair(folder: Path, exported) -> Path:
    card = files.engine_card(read_card(exported("unet")), _record(exported("unet")), file_sha256(exported("unet")))
    folder.mkdir()
    return files.save_engine(folder / "model.engine", b"engine bytes", card)


def test_a_signal_between_the_two_renames_waits_until_both_files_are_in_place(exported, tmp_path, monkeypatch):
    import os
    import signal

    built = _scratch_pair(tmp_path / "scratch", exported)
    target = tmp_path / "model.engine"
    real = os.replace

    def replace_then_interrupt(src, dst):
        real(src, dst)
        if Path(dst) == target:  # the engine is in place, its card not yet
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        files.publish_engine(built, target)
    assert read_card(target).tensorrt["gpu"] == "Orin"  # the pair is whole: the card's sha256 matches the engine
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_failed_rename_leaves_the_old_pair_or_no_pair(exported, tmp_path, monkeypatch):
    import errno
    import os

    target = tmp_path / "model.engine"
    files.publish_engine(_scratch_pair(tmp_path / "old", exported), target)
    old = target.read_bytes()
    real = os.replace

    def failing(name):
        def replace(src, dst):
            if Path(dst).name == name and Path(dst).parent == tmp_path:
                raise OSError(errno.EROFS, "Read-only file system")
            real(src, dst)

        return replace

    monkeypatch.setattr(os, "replace", failing("model.engine"))
    with pytest.raises(SegError, match=r"model\.engine: cannot write the engine \(Read-only file system\)"):
        files.publish_engine(_scratch_pair(tmp_path / "new1", exported), target)
    assert target.read_bytes() == old and read_card(target) is not None  # the old pair, untouched
    monkeypatch.setattr(os, "replace", failing("model.engine.json"))
    with pytest.raises(SegError, match="cannot write the engine"):
        files.publish_engine(_scratch_pair(tmp_path / "new2", exported), target)
    assert not target.exists() and not sidecar_path(target).exists()  # not the new engine beside the old card
