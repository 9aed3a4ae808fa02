"""The `segserve` command: a real Triton Inference Server on a model repository written by `segexport --triton`.

segserve build/triton                      # 127.0.0.1:8000 (HTTP), :8001 (gRPC), :8002 (metrics)
segserve build/triton --host 0.0.0.0       # reachable from other machines: Triton has no authentication
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from segrt.errors import SegError, run_command
from segrt.signals import signals_caught
from segrt.triton_server import DEFAULT_PORTS, Ports, ServerOptions, TritonServer, repository_index


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segserve",
        description="Serve a Triton model repository (from `segexport MODEL --triton REPO`) with a real Triton "
        "Inference Server: dynamic batching, HTTP and gRPC. Clients: segrt.load('http://127.0.0.1:8000/MODEL'), "
        "segrun, segbench served, or any Triton client.",
        epilog="Ctrl-C or SIGTERM stops taking requests, answers those in flight, and exits 0.",
    )
    parser.add_argument("repository", type=Path, help="the model repository folder (REPO of segexport --triton)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only). 0.0.0.0 opens the server to every "
        "network this machine is on, and Triton has no authentication: put it behind a firewall or a proxy",
    )
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(f"--{name}-port", type=int, default=port, help=f"{name} port (default {port})")
    parser.add_argument(
        "--tritonserver",
        type=Path,
        help="the tritonserver binary (default: nvidia-pytriton's, from the [serve] extra, else one on PATH)",
    )
    parser.add_argument(
        "--python",
        type=Path,
        help="the Python the models' model.py runs in; it needs segexport installed and a shared libpython "
        "(default: this Python)",
    )
    parser.add_argument(
        "--exit-timeout", type=int, default=30, metavar="S", help="on stop, wait this long for requests in flight"
    )
    parser.add_argument("--ready-timeout", type=float, default=300, metavar="S", help="give up starting after S s")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="print Triton's log (-vv: its verbose log)")
    return parser


def serve(args: argparse.Namespace) -> int:
    """Start the server, print where it is, wait for a signal or its end; returns the exit code."""
    for name in DEFAULT_PORTS:
        port = getattr(args, f"{name}_port")
        if not 0 < port < 65536:
            raise SegError(f"--{name}-port {port}: a port is 1..65535")
    options = ServerOptions(
        repository=args.repository,
        host=args.host,
        ports=Ports(args.http_port, args.grpc_port, args.metrics_port),
        tritonserver=args.tritonserver,
        python=args.python,
        exit_timeout_s=args.exit_timeout,
        log_verbose=max(args.verbose - 1, 0),
    )
    server = TritonServer(options)
    log = sys.stderr
    print(f"segserve: starting tritonserver on {options.repository} ...", file=log, flush=True)
    stop = threading.Event()
    ready = False

    def on_signal(signum: int) -> None:
        stop.set()
        if not ready:  # while it starts: start() stops the half-started server as this unwinds it
            raise KeyboardInterrupt(f"signal {signum}")

    with signals_caught(on_signal) as received:  # SIGINT and SIGTERM, until segserve returns
        try:
            server.start(args.ready_timeout)
            ready = True
            print_ready(server, log)
            if args.verbose:
                threading.Thread(target=_echo_log, args=(server, stop), daemon=True).start()
            while not stop.is_set() and server.process is not None and server.process.poll() is None:
                stop.wait(0.2)
        except KeyboardInterrupt:
            if server.process is None or server.process.poll() is not None:
                raise  # it never became ready, and start() stopped what it had started
            # the signal came as it became ready, before `ready` was set: it still answers what it took, below
        if received:
            name = signal.Signals(received[0]).name
            print(f"segserve: {name}: answering requests in flight, then stopping", file=log)
            code = server.stop()
            print(f"segserve: stopped (tritonserver exit code {code})", file=log)
            return 0 if code == 0 else 1
        code = server.stop()
    tail = server.log_lines[-1] if server.log_lines else "no log"
    print(f"segserve: tritonserver exited on its own with code {code}: {tail}", file=log)
    return 1


def print_ready(server: TritonServer, log: TextIO) -> None:
    """The addresses and the ready models, once, and how to use them."""
    models = ready_models(server.url)
    print(f"segserve: ready in {server.start_seconds:.1f} s", file=log)
    print(f"  HTTP     {server.url}", file=log)
    print(f"  gRPC     {server.grpc_url}", file=log)
    print(f"  metrics  {server.metrics_url}", file=log)
    for name in models:
        print(f"  model    {name}: segrt.load('{server.url}/{name}')", file=log)
    print("segserve: Ctrl-C stops it", file=log, flush=True)


def ready_models(url: str) -> list[str]:
    """The names of the models the server at `url` has ready (Triton's repository index)."""
    return sorted(entry["name"] for entry in repository_index(url) if entry.get("state") == "READY")


def _echo_log(server: TritonServer, stop: threading.Event) -> None:
    shown = 0
    while not stop.is_set():
        lines = server.log_lines
        for line in lines[shown:]:
            print(line, file=sys.stderr)
        shown = len(lines)
        stop.wait(0.2)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("segserve", lambda: serve(args))


if __name__ == "__main__":
    sys.exit(main())
