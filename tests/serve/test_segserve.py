"""`segserve` as a user runs it: ready lines with the URLs and models, a clean stop on SIGTERM and Ctrl-C,
and one line with the fix (exit 2 or 3) for each way a server cannot start."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segrt.triton_server import free_ports

SEGSERVE = [sys.executable, "-m", "segrt.serve_cli"]


def port_flags() -> list[str]:
    http, grpc, metrics = free_ports()
    return ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]


def start_segserve(args: list[str]) -> tuple[subprocess.Popen[str], list[str]]:
    """segserve in a child process; returns it and its stderr lines up to 'Ctrl-C stops it' (bounded wait)."""
    process = subprocess.Popen([*SEGSERVE, *args], stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 120
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if "Ctrl-C stops it" in line:
            return process, lines
    process.kill()
    raise AssertionError("segserve did not get ready:\n" + "\n".join(lines))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_segserve_prints_where_it_is_and_stops_cleanly(repository, signum):
    flags = port_flags()
    process, lines = start_segserve([str(repository), *flags])
    text = "\n".join(lines)
    assert f"HTTP     http://127.0.0.1:{flags[1]}" in text and f"gRPC     grpc://127.0.0.1:{flags[3]}" in text
    assert f"metrics  http://127.0.0.1:{flags[5]}/metrics" in text
    assert f"model    unet: segrt.load('http://127.0.0.1:{flags[1]}/unet')" in text
    assert "model    unet_unfused" in text
    process.send_signal(signum)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "answering requests in flight, then stopping" in rest and "stopped (tritonserver exit code 0)" in rest
    deadline = time.monotonic() + 10
    while _orphaned_stubs(repository) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _orphaned_stubs(repository) == []  # no Python-backend stub outlives its server


def _orphaned_stubs(repository) -> list[str]:
    """Command lines of Triton Python-backend stubs serving a model of `repository` whose server is gone (their
    parent is init); the stubs of a server other tests still use have that server as their parent."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if "triton_python_backend_stub" in command and str(repository) in command and parent == 1:
            found.append(command)
    return found


def run_segserve(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SEGSERVE, *args], capture_output=True, text=True, timeout=timeout)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("segserve: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def test_port_in_use_is_named_with_its_flag(repository):
    flags = port_flags()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(flags[1])))
        taken.listen()
        result = run_segserve([str(repository), *flags])
    assert result.returncode == 2
    assert f"--http-port {flags[1]}: 127.0.0.1:{flags[1]} is not free" in error_line(result)


def test_repository_the_server_refuses_is_one_line_with_its_reason(tmp_path, exported):
    from segexport.triton.repository import write_repository

    repo = tmp_path / "repo"
    write_repository(exported("unet"), repo)  # the onnxruntime backend, which nvidia-pytriton's server lacks
    result = run_segserve([str(repo), *port_flags()])
    assert result.returncode == 2
    line = error_line(result)
    assert "Triton refused model 'unet'" in line and "no onnxruntime backend" in line
    assert "--triton-backend python" in line


def test_model_py_that_cannot_open_its_artefact_is_named(tmp_path, exported):
    """A python-backend engine on a machine without TensorRT: the server refuses the model with segrt's reason."""
    from segexport.triton.repository import write_repository
    from segrt.meta import read_card, write_sidecar

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not really an engine")
    profile = {"image_shapes": {"min": [1, 64, 64], "opt": [2, 64, 64], "max": [4, 256, 256]}}
    write_sidecar(engine, read_card(exported("unet")).replace(tensorrt=profile))
    repo = tmp_path / "repo"
    write_repository(engine, repo, backend="python")
    config = repo / "unet" / "config.pbtxt"
    assert "max_batch_size: 4" in config.read_text()
    result = run_segserve([str(repo), *port_flags()])  # an engine's instances are KIND_GPU; this machine has none
    assert result.returncode == 2
    assert "Triton refused model 'unet'" in error_line(result) and "no GPUs are available" in error_line(result)
    assert "needs an NVIDIA GPU" in error_line(result)
    config.write_text(config.read_text().replace("KIND_GPU", "KIND_CPU"))  # then model.py tries, without TensorRT
    result = run_segserve([str(repo), *port_flags()])
    assert result.returncode == 2
    assert "Triton refused model 'unet'" in error_line(result) and "pip install segexport[tensorrt]" in error_line(
        result
    )


def test_no_repository_and_no_binary_are_one_line_each(tmp_path, repository):
    result = run_segserve([str(tmp_path / "nowhere")])
    assert result.returncode == 2 and "no such model repository" in error_line(result)
    result = run_segserve([str(repository), "--tritonserver", str(tmp_path / "tritonserver")])
    assert result.returncode == 2 and "not an executable file" in error_line(result)


def test_a_python_the_stub_cannot_run_is_refused_before_starting():
    from segrt.triton_server import StubPython, describe_python, find_tritonserver, stub_problem

    dist, here = find_tritonserver(), describe_python()
    assert stub_problem(dist, here) is None
    old = StubPython(Path("/opt/py36/bin/python3"), "3.6", "3.6.15", here.libdir)
    assert "has no Python backend stub for Python 3.6 (it has 3.10, 3.11" in str(stub_problem(dist, old))
    static = StubPython(Path("/opt/static/bin/python3"), here.version, here.full_version, None)
    assert f"has no shared libpython{here.version}" in str(stub_problem(dist, static))


def test_python_flag_that_is_not_a_python_is_one_line(repository, tmp_path):
    result = run_segserve([str(repository), "--python", str(tmp_path / "python3"), *port_flags()])
    assert result.returncode == 2 and "--python" in error_line(result) and "cannot run it" in error_line(result)


def test_served_statistics_record_the_batches_formed(server, exported):
    """Triton's statistics endpoint, as segbench reads it, counts the batches the dynamic batcher formed."""
    import urllib.request

    import numpy as np

    import segrt

    with segrt.load(f"{server.url}/unet") as seg:
        seg(np.zeros((3, 32, 32, 3), np.uint8))
    deadline = time.monotonic() + 30  # Triton records a request's statistics as it releases it, after the reply
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{server.url}/v2/models/unet/stats", timeout=30) as response:
            stats = json.loads(response.read())["model_stats"][0]
        if any(entry["batch_size"] == 3 for entry in stats["batch_stats"]):
            break
        time.sleep(0.1)
    assert any(entry["batch_size"] == 3 for entry in stats["batch_stats"]), stats
