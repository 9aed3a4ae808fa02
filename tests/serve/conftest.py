"""A real Triton server (nvidia-pytriton's tritonserver) on a repository written by segexport's writer.

These tests need a tritonserver whose Python backend stub can run this Python: `.ci/run` runs them in
`.venv-serve` (a venv of the system Python with `.[serve]`) with SEGSERVE_REQUIRED=1, which turns a
missing server into a failure instead of a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from segrt.errors import SegError


def _server_problem() -> str | None:
    try:
        from segrt.triton_server import describe_python, find_tritonserver, stub_problem

        return stub_problem(find_tritonserver(), describe_python())
    except SegError as exc:
        return str(exc)


PROBLEM = _server_problem()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if PROBLEM is None:
        return
    if os.environ.get("SEGSERVE_REQUIRED") == "1":
        raise pytest.UsageError(f"SEGSERVE_REQUIRED=1 but no tritonserver can serve here: {PROBLEM}")
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason=f"no usable tritonserver ({PROBLEM}); .ci/run runs these in .venv-serve")
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory, exported) -> Path:
    """A repository with the small U-Net twice (fused, and unfused with host steps), both on the python backend."""
    from segexport.triton.repository import write_repository

    repo = tmp_path_factory.mktemp("triton") / "repo"
    for name in ("unet", "unet-unfused"):
        write_repository(exported(name), repo, backend="python")
    return repo


@pytest.fixture(scope="session")
def server(repository: Path):
    """One server for the session's tests, on free loopback ports."""
    from segrt.triton_server import Ports, ServerOptions, TritonServer, free_ports

    options = ServerOptions(repository, ports=Ports(*free_ports()), exit_timeout_s=5)
    with TritonServer(options).start() as running:
        yield running


@pytest.fixture
def fresh_server(repository: Path):
    """start() -> a server of its own for a test that stops it; stopped at the end whatever happened."""
    from segrt.triton_server import Ports, ServerOptions, TritonServer, free_ports

    started: list[TritonServer] = []

    def start(exit_timeout_s: int = 10) -> TritonServer:
        options = ServerOptions(repository, ports=Ports(*free_ports()), exit_timeout_s=exit_timeout_s)
        started.append(TritonServer(options).start())
        return started[-1]

    yield start
    for running in started:
        running.stop(timeout_s=30)
