"""`segserve` and a signal at either side of "ready", without a Triton server: a stand-in server process.

A signal while the server starts stops it and is exit 130; a signal from the moment it is ready, even before
segserve has said so, drains it (`TritonServer.stop`) and is exit 0, as a signal while it serves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest

from segrt import serve_cli


class StandInServer:
    """What `serve` asks of TritonServer; `start` runs a real child process, then sends this process `signum`
    at the point `when` names: "starting" (inside the wait for ready) or "ready" (once ready, as start returns)."""

    signum = signal.SIGTERM
    when = "ready"
    made: ClassVar[list[StandInServer]] = []

    def __init__(self, options: serve_cli.ServerOptions) -> None:
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None
        self.stops = 0
        self.log_lines: list[str] = []
        self.start_seconds = 0.1
        self.url, self.grpc_url, self.metrics_url = "http://127.0.0.1:9", "grpc://127.0.0.1:9", "http://127.0.0.1:9"
        self.made.append(self)

    def start(self, ready_timeout_s: float) -> StandInServer:
        self.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            if self.when == "starting":
                os.kill(os.getpid(), self.signum)
                time.sleep(5)  # the handler runs in here (a sleep is cut short by a signal's handler)
                raise AssertionError("the signal did not interrupt the start")
        except BaseException:
            self.stop()  # as TritonServer.start does
            raise
        os.kill(os.getpid(), self.signum)  # ready: the signal lands before start returns and serve() knows it
        time.sleep(5)
        raise AssertionError("the signal did not interrupt the start")

    def stop(self, timeout_s: float | None = None) -> int | None:
        self.stops += 1
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait()
        return 0


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    StandInServer.made = []
    monkeypatch.setattr(serve_cli, "TritonServer", StandInServer)
    monkeypatch.setattr(serve_cli, "ready_models", lambda url: ["unet"])
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield StandInServer
    for signum, handler in before.items():
        assert signal.getsignal(signum) is handler, "segserve left its signal handler installed"
        signal.signal(signum, handler)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_as_the_server_becomes_ready_still_drains_it_and_exits_0(
    stand_in, monkeypatch, tmp_path, capsys, signum
):
    monkeypatch.setattr(stand_in, "signum", signum)
    monkeypatch.setattr(stand_in, "when", "ready")
    assert serve_cli.main([str(tmp_path)]) == 0
    (server,) = stand_in.made
    assert server.stops == 1 and server.process is not None and server.process.poll() is not None
    err = capsys.readouterr().err
    assert f"segserve: {signal.Signals(signum).name}: answering requests in flight, then stopping" in err
    assert "segserve: stopped (tritonserver exit code 0)" in err


def test_a_signal_while_it_starts_stops_it_once_and_is_exit_130(stand_in, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(stand_in, "when", "starting")
    assert serve_cli.main([str(tmp_path)]) == 130
    (server,) = stand_in.made
    assert server.stops == 1 and server.process is not None and server.process.poll() is not None
    err = capsys.readouterr().err
    assert "segserve: interrupted" in err and "answering requests in flight" not in err
