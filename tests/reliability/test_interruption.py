"""Killing segexport (SIGINT, SIGTERM) while it writes the ONNX file or builds an engine leaves no partial file.

The export runs in a real subprocess. A small wrapper holds it at the chosen moment
-- half of model.onnx written to its temporary file, or inside the engine build
(TensorRT itself is simulated: it cannot be installed here; one variant replaces the
whole build step, the other runs segexport's real build code on the stand-in
`tensorrt` module of tests/export) -- and drops a marker file; the test then sends
the signal and inspects the output folder.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from segexport.cli import main as segexport_main
from segrt.meta import file_sha256, read_card, read_sidecar

ARGS = ["unet", "--unet-base", "4", "--unet-depth", "2", "--input-size", "32x32"]

HOLD_DURING_ONNX_WRITE = """
    import pathlib, time
    real_write = pathlib.Path.write_bytes
    def write_half_then_hold(self, data):
        if self.name.startswith(".model.onnx.") and self.name.endswith(".tmp"):
            real_write(self, data[: len(data) // 2])
            pathlib.Path(MARKER).write_text("in the ONNX write")
            time.sleep(60)
        return real_write(self, data)
    pathlib.Path.write_bytes = write_half_then_hold
"""

HOLD_DURING_ENGINE_BUILD = """
    import pathlib, time
    from segexport.engine import prerequisites as engine_prerequisites
    from segexport.engine import build as tensorrt_build
    def build_that_takes_long(*args, **kwargs):
        pathlib.Path(MARKER).write_text("in the engine build")
        time.sleep(60)
    engine_prerequisites.engine_prerequisites = lambda *args, **kwargs: None
    tensorrt_build.build_engine = build_that_takes_long
"""


STAND_IN_TENSORRT = Path(__file__).parents[1] / "export" / "stand_in_tensorrt.py"

# segexport's own build_engine, progress monitor and worker thread, on the stand-in TensorRT whose builder
# steps every 10 ms until its progress monitor says stop; CANCELLED records the step where it was told to.
HOLD_IN_TENSORRT_BUILD = f"""
    import importlib.util, pathlib, sys
    spec = importlib.util.spec_from_file_location("tensorrt", {str(STAND_IN_TENSORRT)!r})
    trt = importlib.util.module_from_spec(spec)
    sys.modules["tensorrt"] = trt
    spec.loader.exec_module(trt)
    from segrt.backends import tensorrt as backend
    backend.gpu_info = lambda device=0: backend.GpuInfo("Stand-in GPU", "8.7")
    from segexport.engine import prerequisites as engine_prerequisites
    engine_prerequisites.engine_prerequisites = lambda *args, **kwargs: None
    trt.STATE.steps, trt.STATE.step_delay_s = 100_000, 0.01
    def mark(step):
        if step == 2:
            pathlib.Path(MARKER).write_text("in TensorRT's build")
    trt.STATE.on_step = mark
    real_build = trt.Builder.build_serialized_network
    def build_and_record(self, network, config):
        engine = real_build(self, network, config)
        pathlib.Path(MARKER).with_name("CANCELLED").write_text(str(trt.STATE.cancelled_at))
        return engine
    trt.Builder.build_serialized_network = build_and_record
"""


def _run_until_marker(hold: str, argv: list[str], marker: Path, cli: str = "segexport.cli") -> subprocess.Popen[str]:
    """Start `cli`'s main(argv) in a subprocess with `hold` installed; return once it wrote `marker`."""
    script = (
        f"MARKER = {str(marker)!r}\n"
        # Ctrl-C at a terminal raises KeyboardInterrupt; a job started in the background by a shell without job
        # control (some CI runners) inherits SIGINT ignored, and Python keeps it so: give the child the terminal's.
        + "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
        + textwrap.dedent(hold)
        + textwrap.dedent(f"""
        import sys
        from {cli} import main
        sys.exit(main({argv!r}))
    """)
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 180
    while not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"never reached the marker: {process.communicate()[1][-2000:]}")
        time.sleep(0.05)
    return process


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_kill_during_onnx_write_leaves_no_partial_file_and_a_rerun_succeeds(signum, tmp_path):
    out = tmp_path / "out"
    process = _run_until_marker(HOLD_DURING_ONNX_WRITE, [*ARGS, "--out", str(out)], tmp_path / "marker")
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert [p.name for p in out.iterdir()] == []  # no model.onnx, no temporary file, no scratch folder
    assert segexport_main([*ARGS, "--out", str(out)]) == 0
    assert read_sidecar(out / "model.onnx") is not None  # complete, and its sha256 matches


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_kill_during_engine_build_keeps_the_onnx_files_whole_and_writes_no_engine(signum, tmp_path):
    out = tmp_path / "out"
    argv = [*ARGS, "--fp16", "--out", str(out)]
    process = _run_until_marker(HOLD_DURING_ENGINE_BUILD, argv, tmp_path / "marker")
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["model.fp16.onnx", "model.fp16.onnx.json", "model.onnx", "model.onnx.json"], names
    for onnx in ("model.onnx", "model.fp16.onnx"):
        assert read_sidecar(out / onnx) is not None  # whole: the recorded sha256 matches
    assert read_card(out / "model.fp16.onnx").source_sha256 == file_sha256(out / "model.onnx")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_inside_tensorrts_build_cancels_it_through_the_monitor_and_writes_no_engine(signum, exported, tmp_path):
    """The main thread is free while TensorRT builds (in a worker): the signal is seen at once, step_complete
    returns False, the builder stops, and segexport exits 130 with nothing but the ONNX it was given."""
    out = tmp_path / "out"
    argv = [str(exported("unet")), "--engine", "--out", str(out)]
    process = _run_until_marker(HOLD_IN_TENSORRT_BUILD, argv, tmp_path / "marker")
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and re.search(r"cancel\w* the TensorRT build", err), err
    cancelled_at = (tmp_path / "CANCELLED").read_text()
    assert cancelled_at.isdigit() and int(cancelled_at) < 5000, cancelled_at  # stopped by the monitor, not the end
    assert not out.exists() or [p.name for p in out.iterdir()] == []


# --- segbench: a signal during a case or during the results write leaves no results.json ----------------------

BENCH_SUITE = """
name = "interrupted"
shapes = ["1x48x64"]
warmup = 0
iterations = 2
baseline = false
[[model]]
name = "unet"
input_size = "32x32"
unet_base = 4
unet_depth = 2
runs = [{ backend = "ort-cpu" }, { backend = "ort-cpu", fused = false }]
"""

# Holds segbench in its second case's timing loop: the first case is measured, nothing is written yet.
HOLD_IN_SECOND_CASE = """
    import pathlib, time
    from segbench.cases import runner
    real_run_case = runner.Runner.run_case
    seen = []
    def run_case_then_hold(self, case):
        seen.append(case)
        if len(seen) == 2:
            pathlib.Path(MARKER).write_text("in the second case")
            time.sleep(60)
        return real_run_case(self, case)
    runner.Runner.run_case = run_case_then_hold
"""

# Holds segbench with half of results.json written to its temporary file (report and plots are done).
HOLD_IN_RESULTS_WRITE = """
    import pathlib, time
    real_write_text = pathlib.Path.write_text
    def write_half_then_hold(self, text, *args, **kwargs):
        if self.name.startswith(".results.json.") and self.name.endswith(".tmp"):
            real_write_text(self, text[: len(text) // 2])
            pathlib.Path(MARKER).write_text("in the results write")
            time.sleep(60)
        return real_write_text(self, text, *args, **kwargs)
    pathlib.Path.write_text = write_half_then_hold
"""


@pytest.mark.parametrize(
    ("hold", "signum"),
    [(HOLD_IN_SECOND_CASE, signal.SIGINT), (HOLD_IN_RESULTS_WRITE, signal.SIGTERM)],
    ids=["SIGINT-during-a-case", "SIGTERM-during-the-results-write"],
)
def test_killing_segbench_leaves_no_results_and_a_rerun_writes_them(hold, signum, tmp_path):
    from segbench.cli import main as segbench_main
    from segbench.report.results import load_run

    suite = tmp_path / "suite.toml"
    suite.write_text(BENCH_SUITE)
    out, cache = tmp_path / "run", tmp_path / "cache"
    argv = [str(suite), "--out", str(out), "--cache", str(cache)]
    process = _run_until_marker(hold, argv, tmp_path / "marker", cli="segbench.cli")
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert not (out / "results.json").exists() and not list(out.glob(".*.tmp")), sorted(out.iterdir())

    assert segbench_main(argv) == 0
    record = load_run(out)
    assert [case["status"] for case in record["cases"]] == ["ok", "ok"]
