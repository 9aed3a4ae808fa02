"""`segserve` without the pieces a server needs: one line naming what to install or pass, exit 3, nothing started.

These run without nvidia-pytriton (the serve tests in tests/serve need it): the layouts are made here.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import stat
from pathlib import Path

import pytest

from segrt.serve_cli import main


@pytest.fixture(autouse=True)
def sigterm_restored():
    """segserve makes SIGTERM raise KeyboardInterrupt in its process; here that process is pytest's."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """The smallest folder check_repository accepts: one model folder with a config.pbtxt."""
    model = tmp_path / "repo" / "unet"
    model.mkdir(parents=True)
    (model / "config.pbtxt").write_text('name: "unet"\nbackend: "python"\n')
    return model.parent


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("segserve: error:")]
    assert len(lines) == 1, lines
    return lines[0]


def test_no_tritonserver_anywhere_is_exit_3_naming_the_extra_and_the_flag(repository, tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pytriton" else real(name, *a))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert main([str(repository)]) == 3
    line = one_error_line(capsys)
    assert "no tritonserver found" in line and "segexport[serve]" in line and "--tritonserver PATH" in line


def test_a_pytriton_without_a_stub_for_this_python_is_exit_3_before_starting(repository, tmp_path, capsys):
    root = tmp_path / "tritonserver"  # nvidia-pytriton's layout, with stubs for other Pythons only
    binary = executable(root / "bin" / "tritonserver")
    (root / "backends" / "python").mkdir(parents=True)
    (root / "backends" / "python" / "libtriton_python.so").write_bytes(b"")
    executable(root / "python_backend_stubs" / "3.6" / "triton_python_backend_stub")
    assert main([str(repository), "--tritonserver", str(binary)]) == 3
    line = one_error_line(capsys)
    assert "no Python backend stub for Python 3." in line and "(it has 3.6)" in line


def test_a_tritonserver_flag_that_is_not_executable_is_exit_2(repository, tmp_path, capsys):
    plain = tmp_path / "tritonserver"
    plain.write_text("not a program")
    assert not os.access(plain, os.X_OK)
    assert main([str(repository), "--tritonserver", str(plain)]) == 2
    assert f"--tritonserver {plain}: not an executable file" in one_error_line(capsys)
