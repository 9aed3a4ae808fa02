"""A real Triton Inference Server on a model repository: found, started, watched until ready, stopped cleanly.

The `tritonserver` comes from nvidia-pytriton (which ships the binary, the Python backend and one
backend stub per Python version), from PATH (NVIDIA's containers), or from an explicit path.
Triton's Python backend stub embeds a libpython and takes its standard library from the `python3`
first on PATH, so both must be of one Python: the server gets that Python's `bin/` first on PATH and
its own libpython's folder first on the loader path. Used by `segserve`, segbench and the tests.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from segrt.errors import MissingDependency, SegError

INSTALL = "install the serving extra: pip install 'segexport[serve]' (nvidia-pytriton ships a tritonserver)"
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
SHUTDOWN_GRACE_S = 3  # Triton's own exit timeout, once the models are drained


@dataclass(frozen=True)
class Ports:
    http: int = DEFAULT_PORTS["http"]
    grpc: int = DEFAULT_PORTS["grpc"]
    metrics: int = DEFAULT_PORTS["metrics"]

    def items(self) -> list[tuple[str, int]]:
        return [("http", self.http), ("grpc", self.grpc), ("metrics", self.metrics)]


@dataclass(frozen=True)
class Distribution:
    """Where a tritonserver is and, for nvidia-pytriton's, its Python backend, stubs and libraries."""

    binary: Path
    python_backend: Path | None = None  # libtriton_python.so + triton_python_backend_utils.py
    stubs: Path | None = None  # python_backend_stubs/3.X/triton_python_backend_stub
    libraries: Path | None = None  # nvidia_pytriton.libs: libcudart and friends the binaries link against


def find_tritonserver(explicit: str | os.PathLike[str] | None = None) -> Distribution:
    """`explicit`, else nvidia-pytriton's tritonserver, else one on PATH; MissingDependency when none is."""
    if explicit is not None:
        binary = Path(explicit).absolute()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise SegError(f"--tritonserver {binary}: not an executable file; give the path of a tritonserver binary")
        return _with_pytriton_parts(binary)
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is not None and spec.origin:
        binary = Path(spec.origin).parent / "tritonserver" / "bin" / "tritonserver"
        if binary.is_file():
            return _with_pytriton_parts(binary)
    on_path = shutil.which("tritonserver")
    if on_path:
        return Distribution(Path(on_path))
    raise MissingDependency(f"no tritonserver found; {INSTALL}, or put one on PATH, or give --tritonserver PATH")


def _with_pytriton_parts(binary: Path) -> Distribution:
    """nvidia-pytriton's layout around its binary, where it is one; a container's binary finds its own backends."""
    root = binary.parent.parent
    backend, stubs = root / "backends" / "python", root / "python_backend_stubs"
    if not (backend / "libtriton_python.so").is_file() or not stubs.is_dir():
        return Distribution(binary)
    libraries = root.parent.parent / "nvidia_pytriton.libs"
    return Distribution(binary, backend, stubs, libraries if libraries.is_dir() else None)


@dataclass(frozen=True)
class StubPython:
    """The Python the backend stub runs models in: its version, bin/ folder and shared libpython's folder."""

    executable: Path
    version: str  # "3.11"
    full_version: str  # "3.11.7"
    libdir: Path | None  # None: built without a shared libpython


def describe_python(executable: str | os.PathLike[str] | None = None) -> StubPython:
    """This Python, or ask `executable` about itself (its version and where its libpython is)."""
    if executable is None or Path(executable) == Path(sys.executable):
        shared = bool(sysconfig.get_config_var("Py_ENABLE_SHARED"))
        libdir = sysconfig.get_config_var("LIBDIR")
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        return StubPython(Path(sys.executable), version, sys.version.split()[0], Path(libdir) if shared else None)
    code = (
        "import sys, sysconfig; print(sys.version.split()[0]); "
        "print(sysconfig.get_config_var('LIBDIR') if sysconfig.get_config_var('Py_ENABLE_SHARED') else '')"
    )
    try:
        answer = subprocess.run([str(executable), "-c", code], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SegError(f"--python {executable}: cannot run it ({exc}); give a Python interpreter") from None
    full, libdir = [*answer.stdout.splitlines(), "", ""][:2]
    return StubPython(
        Path(executable).absolute(), ".".join(full.split(".")[:2]), full, Path(libdir) if libdir else None
    )


def stub_problem(dist: Distribution, python: StubPython) -> str | None:
    """Why Triton's Python backend stub could not run models in `python` here, or None."""
    if dist.stubs is None:
        return None  # a container's tritonserver brings its own stub and Python
    if not (dist.stubs / python.version / "triton_python_backend_stub").is_file():
        have = ", ".join(sorted(p.name for p in dist.stubs.iterdir()))
        return f"this nvidia-pytriton has no Python backend stub for Python {python.version} (it has {have})"
    if python.libdir is None or not list(python.libdir.glob(f"libpython{python.version}*.so*")):
        return (
            f"{python.executable} (Python {python.full_version}) has no shared libpython{python.version}, which "
            f"Triton's Python backend stub loads (it would load another Python's against this one's standard "
            f"library); run segserve with a Python built with --enable-shared, such as the system's: "
            f"`/usr/bin/python3 -m venv V && V/bin/pip install 'segexport[serve]'`"
        )
    return None


def backend_directory(dist: Distribution, python: StubPython, folder: Path) -> Path | None:
    """`folder/python/` with nvidia-pytriton's Python backend and the stub for `python`; None for a container."""
    if dist.python_backend is None or dist.stubs is None:
        return None
    target = folder / "python"
    target.mkdir(parents=True, exist_ok=True)
    for part in ("libtriton_python.so", "triton_python_backend_utils.py"):
        (target / part).symlink_to(dist.python_backend / part)
    (target / "triton_python_backend_stub").symlink_to(dist.stubs / python.version / "triton_python_backend_stub")
    return folder


def check_ports_free(host: str, ports: Ports) -> None:
    """Refuse a port another process listens on, naming the flag, before the server is started."""
    for name, port in ports.items():
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise SegError(
                    f"--{name}-port {port}: {host}:{port} is not free ({exc.strerror}); stop what uses it or pick "
                    f"another port with --{name}-port"
                ) from None


def free_ports(count: int = 3, host: str = "127.0.0.1") -> list[int]:
    """Ports the kernel has just handed out as free, for a server of one's own (tests, segbench)."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            sockets.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return ports


@dataclass
class ServerOptions:
    repository: Path
    host: str = "127.0.0.1"
    ports: Ports = field(default_factory=Ports)
    tritonserver: Path | None = None
    python: Path | None = None  # the Python models' model.py runs in (default: this one)
    exit_timeout_s: int = 30  # how long a stopping server waits for requests in flight
    log_verbose: int = 0


class TritonServer:
    """One tritonserver process. `start()` returns once every model is ready (or raises SegError with
    Triton's reason in one line); `stop()` sends SIGTERM, Triton then refuses new requests, answers those
    in flight and exits. Use it as a context manager to always stop it."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None
        self.log_lines: list[str] = []
        self.start_seconds: float | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{_url_host(self.options.host)}:{self.options.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{_url_host(self.options.host)}:{self.options.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_url_host(self.options.host)}:{self.options.ports.metrics}/metrics"

    def command(self, dist: Distribution, backends: Path | None) -> list[str]:
        options = self.options
        command = [
            str(dist.binary),
            f"--model-repository={options.repository.resolve()}",
            f"--http-address={options.host}",
            f"--http-port={options.ports.http}",
            f"--grpc-address={options.host}",
            f"--grpc-port={options.ports.grpc}",
            f"--metrics-address={options.host}",
            f"--metrics-port={options.ports.metrics}",
            # stop() drains the models itself first: Triton's own wait is then only for idle connections
            f"--exit-timeout-secs={min(options.exit_timeout_s, SHUTDOWN_GRACE_S)}",
            "--strict-readiness=true",
            "--model-control-mode=explicit",  # so stop() can unload (drain) the models before SIGTERM
            "--load-model=*",
            f"--log-verbose={options.log_verbose}",
        ]
        return command + ([f"--backend-directory={backends}"] if backends else [])

    def start(self, ready_timeout_s: float = 120.0) -> TritonServer:
        options = self.options
        check_repository(options.repository)
        dist = find_tritonserver(options.tritonserver)
        python = describe_python(options.python)
        problem = stub_problem(dist, python)
        if problem:
            raise MissingDependency(problem)
        check_ports_free(options.host, options.ports)
        self._scratch = tempfile.TemporaryDirectory(prefix="segserve-")
        backends = backend_directory(dist, python, Path(self._scratch.name))
        began = time.perf_counter()
        self.process = subprocess.Popen(
            self.command(dist, backends),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_environment(dist, python),
            start_new_session=True,  # signals reach it through stop(), once, not from the terminal too
            preexec_fn=_die_with_parent(),
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        try:
            self._wait_ready(ready_timeout_s)
        except BaseException:
            self.stop(timeout_s=10)
            raise
        self.start_seconds = time.perf_counter() - began
        return self

    def _read_log(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            self.log_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if self._reader is not None:
                    self._reader.join(timeout=5)
                raise SegError(explain_failure("\n".join(self.log_lines), self.options))
            if _http_ok(f"{self.url}/v2/health/ready"):
                return
            time.sleep(0.1)
        raise SegError(
            f"{self.options.repository}: tritonserver was not ready after {timeout_s:g} s "
            f"({explain_failure(chr(10).join(self.log_lines), self.options)})"
        )

    def stop(self, timeout_s: float | None = None) -> int | None:
        """Drain, then SIGTERM and wait; SIGKILL if it outstays `timeout_s`. Returns tritonserver's exit code.

        Triton 2.51 on SIGTERM alone leaves requests that arrive on open HTTP connections unanswered until
        its exit timeout, then exits "immediately" with a segfault while a model is loaded. So the models
        are unloaded first: Triton waits for the requests in flight and answers them, and refuses new ones
        with an error reply ("... has no available versions"); then SIGTERM finds nothing to wait for.
        """
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            self.drain(self.options.exit_timeout_s)
            process.send_signal(signal.SIGTERM)
        wait = timeout_s if timeout_s is not None else SHUTDOWN_GRACE_S + 15
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Triton can exit (or crash) leaving its Python-backend stubs running in its process group: end them
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None
        return process.returncode

    def drain(self, timeout_s: float) -> bool:
        """Unload every model (in-flight requests are answered, new ones refused); True once all are unloaded."""
        deadline = time.monotonic() + timeout_s
        try:
            for entry in repository_index(self.url):
                if entry.get("state") == "READY":
                    _post(f"{self.url}/v2/repository/models/{entry['name']}/unload", timeout_s)
            while time.monotonic() < deadline:
                if all(e.get("state") not in ("READY", "UNLOADING") for e in repository_index(self.url)):
                    return True
                time.sleep(0.05)
        except (urllib.error.URLError, OSError, ValueError):
            pass  # a server that no longer answers has nothing left to drain
        return False

    def __enter__(self) -> TritonServer:
        return self if self.process is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_environment(dist: Distribution, python: StubPython) -> dict[str, str]:
    """The stub's Python first on PATH; its libpython and nvidia-pytriton's libraries first on the loader path."""
    env = dict(os.environ)
    loader = [str(p) for p in (python.libdir, dist.libraries) if p is not None]
    if env.get("LD_LIBRARY_PATH"):
        loader.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(loader)
    env["PATH"] = os.pathsep.join([str(python.executable.parent), env.get("PATH", "")])
    env.pop("PYTHONHOME", None)
    return env


def check_repository(repository: Path) -> None:
    if not repository.is_dir():
        raise SegError(
            f"{repository}: no such model repository; write one with `segexport MODEL --triton {repository}`"
        )
    if not any((entry / "config.pbtxt").is_file() for entry in repository.iterdir()):
        raise SegError(
            f"{repository}: no model folder with a config.pbtxt in it; write one with "
            f"`segexport MODEL --triton {repository}`"
        )


def explain_failure(log: str, options: ServerOptions) -> str:
    """Triton's reason for not starting, from its log, in one line with the fix."""
    in_use = re.search(r"Socket '([^']+)' already in use", log)
    if in_use:
        flags = "--http-port/--grpc-port/--metrics-port"
        return f"{in_use.group(1)} is already in use; stop what uses it or pick other {flags}"
    if "_recursion_count" in log:
        return (
            "Triton's Python backend stub loaded a libpython that does not match its Python's standard library; "
            "run segserve from a venv of a Python with a shared libpython, such as the system's "
            "(`/usr/bin/python3 -m venv V && V/bin/pip install 'segexport[serve]'`)"
        )
    failed = re.search(r"failed to load '([^']+)' version \d+: (.*?)(?:\\n|\"$|$)", log, re.MULTILINE)
    if failed:
        model, reason = failed.group(1), failed.group(2).strip()
        return f"{options.repository}: Triton refused model {model!r}: {reason}{_fix_for(reason, model)}"
    errors = [line for line in log.splitlines() if line.startswith("E") or line.startswith("error:")]
    useful = [line for line in errors if "CudaDriverHelper" not in line and "NVML" not in line]
    detail = useful[-1] if useful else (log.strip().splitlines() or ["it printed nothing"])[-1]
    return f"tritonserver stopped before it was ready: {_strip_prefix(detail)}"


def _fix_for(reason: str, model: str) -> str:
    backend = re.search(r"backend library for backend '([^']+)'", reason)
    if backend:
        return (
            f"; this tritonserver has no {backend.group(1)} backend (nvidia-pytriton's has the python backend only): "
            f"serve the repository in NVIDIA's Triton container, or rewrite the model with "
            f"`segexport FILE --triton REPO --triton-backend python`"
        )
    if "no GPUs are available" in reason:
        return "; an engine's (or any KIND_GPU) instance group needs an NVIDIA GPU: serve it on a machine with one"
    if "No module named 'segrt'" in reason or "No module named 'numpy'" in reason:
        return "; install segexport in the Python the server runs model.py in (segserve --python, default this one)"
    return ""


def _strip_prefix(line: str) -> str:
    """`E1201 21:39:44.915845 8290 file.cc:642] "text"` -> `text`."""
    match = re.match(r'^[EWI]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "?(.*?)"?$', line)
    return match.group(1) if match else line


def repository_index(url: str) -> list[dict[str, str]]:
    """Triton's repository index: every model with its state (READY, UNLOADING, UNAVAILABLE, ...)."""
    import json

    index = json.loads(_post(f"{url}/v2/repository/index", 10))
    return index if isinstance(index, list) else []


def _post(url: str, timeout_s: float) -> bytes:
    request = urllib.request.Request(url, data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return bytes(response.read())


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook that makes the server get SIGTERM when the thread that started it dies (Linux), so no
    server outlives a killed segserve; prctl is looked up here, before the fork, so the child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGTERM)
