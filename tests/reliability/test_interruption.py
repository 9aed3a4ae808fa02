"""Killing segexport (SIGINT, SIGTERM) while it writes the ONNX file or builds an engine leaves no partial file.

The export runs in a real subprocess. A small wrapper holds it at the chosen moment
-- half of model.onnx written to its temporary file, or inside the engine build
(TensorRT itself is simulated: it cannot be installed here) -- and drops a marker
file; the test then sends the signal and inspects the output folder.
"""

from __future__ import annotations

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
    from segexport import tensorrt_build
    def build_that_takes_long(*args, **kwargs):
        pathlib.Path(MARKER).write_text("in the engine build")
        time.sleep(60)
    tensorrt_build.engine_prerequisites = lambda *args, **kwargs: None
    tensorrt_build.build_engine = build_that_takes_long
"""


def _run_until_marker(hold: str, argv: list[str], marker: Path) -> subprocess.Popen[str]:
    script = (
        f"MARKER = {str(marker)!r}\n"
        + textwrap.dedent(hold)
        + textwrap.dedent(f"""
        import sys
        from segexport.cli import main
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
