"""`segbench served`: a model through a real Triton server beside local segrt on the same file.

Each case runs C concurrent clients (threads, one Segmenter each: a connection to the server, or a
local session), each sending up to `requests` calls or for `seconds`, whichever ends first, on the
loopback only. Per case: per-request latency percentiles, throughput, and for the served cases the
batch sizes Triton's dynamic batcher formed (its statistics endpoint, before and after the case).
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segrt.errors import SegError
from segrt.timing import LatencyStats

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class ServedSettings:
    clients: tuple[int, ...] = (1, 4, 16)
    requests: int = 200  # per client, at most
    seconds: float = 20.0  # per case, at most
    warmup: int = 2  # untimed calls per client
    batch: int = 1
    height: int = 612
    width: int = 640


def check_loopback(url: str) -> None:
    from segrt.backends.triton import parse_server_url

    host = parse_server_url(url).host
    if host not in LOOPBACK and not host.startswith("127."):
        raise SegError(
            f"{url}: segbench measures servers on this machine only (127.0.0.1, localhost, [::1]); over a "
            f"network the figures would be the network's"
        )


def run_clients(
    open_segmenter: Any,
    clients: int,
    batch: np.ndarray,
    settings: ServedSettings,
    on_warm: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """`clients` threads, each with its own Segmenter, started together; every call's latency in ms.

    `on_warm` runs once every client has made its warm-up calls and before any makes a timed one
    (the served cases read the server's batch statistics there, so warm-up batches are not counted).
    """
    samples: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    ready = threading.Barrier(clients + 1, action=on_warm)

    def client(index: int) -> None:
        try:
            with open_segmenter() as seg:
                for _ in range(settings.warmup):
                    seg(batch)
                ready.wait(timeout=300)
                deadline = time.monotonic() + settings.seconds
                for _ in range(settings.requests):
                    if time.monotonic() > deadline:
                        break
                    began = time.perf_counter_ns()
                    seg(batch)
                    samples[index].append((time.perf_counter_ns() - began) / 1e6)
        except threading.BrokenBarrierError:
            return
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            ready.abort()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait(timeout=300)
    began = time.monotonic()
    for thread in threads:
        thread.join(timeout=settings.seconds + 300)
    wall = time.monotonic() - began
    if errors:
        raise SegError(f"a client failed: {errors[0]}")
    flat = [value for client_samples in samples for value in client_samples]
    stats = LatencyStats.from_samples(flat, settings.batch)
    return {
        "clients": clients,
        "calls": len(flat),
        "frames": len(flat) * settings.batch,
        "wall_s": wall,
        "throughput_fps": len(flat) * settings.batch / wall if wall > 0 else None,
        "latency_ms": stats.as_dict(),
        "samples_ms": flat,
    }


def batch_counts(url: str, model: str) -> dict[int, int]:
    """{batch size: executions} from Triton's statistics for `model`."""
    with urllib.request.urlopen(f"{url}/v2/models/{model}/stats", timeout=30) as response:
        stats = json.loads(response.read())["model_stats"][0]
    return {int(entry["batch_size"]): int(entry["compute_infer"]["count"]) for entry in stats["batch_stats"]}


def recorded_since(url: str, model: str, before: dict[int, int], frames: int) -> dict[int, int]:
    """Triton's counts once it has recorded `frames` more frames than `before` (it records just after answering)."""
    deadline = time.monotonic() + 10
    while True:
        after = batch_counts(url, model)
        done = sum(size * (count - before.get(size, 0)) for size, count in after.items())
        if done >= frames or time.monotonic() > deadline:
            return after
        time.sleep(0.1)


def _settle(url: str, model: str, counts: dict[int, int], frames: int) -> None:
    """`counts` brought up to date once `frames` more frames are recorded (in place: a barrier action)."""
    counts.update(recorded_since(url, model, dict(counts), frames))


def formed_batches(url: str, model: str, before: dict[int, int], frames: int) -> dict[str, int]:
    """The executions per batch size since `before` (the timed calls of a case: `frames` frames)."""
    after = recorded_since(url, model, before, frames)
    delta = {size: after.get(size, 0) - before.get(size, 0) for size in after}
    return {str(size): count for size, count in sorted(delta.items()) if count}


def run_served(url: str, local_file: Path, photo: np.ndarray, settings: ServedSettings, log: Any) -> list[dict]:
    """Served and local cases at each client count; the labels of both are compared on the first call."""
    import segrt
    from segbench.cases.runner import make_batch
    from segrt.backends.triton import parse_server_url
    from segrt.meta import file_sha256

    check_loopback(url)
    batch = make_batch(photo, settings.batch, settings.height, settings.width)
    address = parse_server_url(url)
    http = f"http://{address.host}:{address.port}" if address.scheme == "http" else None
    with segrt.load(url) as served, segrt.load(local_file) as local:
        if served.backend.served_sha256 != file_sha256(local_file):
            raise SegError(f"{local_file}: not the file {url} serves (sha256 differs); give --file the served artefact")
        agreement = float(np.mean(served(batch) == local(batch)))
    cases = []
    for clients in settings.clients:
        counts: dict[int, int] = {}
        after_warmup = None
        if http:  # the counts once the warm-up calls are recorded: the case counts from there
            counts = batch_counts(http, address.model)
            warmup_frames = clients * settings.warmup * settings.batch
            after_warmup = functools.partial(_settle, http, address.model, counts, warmup_frames)
        log(f"served, {clients} client(s) ...")
        case = {
            "pipeline": f"served ({address.scheme})",
            **run_clients(lambda: segrt.load(url), clients, batch, settings, after_warmup),
        }
        if http:
            case["server_batches"] = formed_batches(http, address.model, counts, case["frames"])
        cases.append(case)
        log(f"local, {clients} client(s) ...")
        cases.append(
            {"pipeline": "local segrt", **run_clients(lambda: segrt.load(local_file), clients, batch, settings)}
        )
    for case in cases:
        case["label_agreement"] = agreement
    return cases


def markdown(record: dict[str, Any]) -> str:
    """The run as a table: one row per pipeline and client count."""
    settings = record["settings"]
    lines = [
        f"# segbench served: {record['model']}",
        "",
        f"Server: {record['server']}; local file: `{record['file']}`; images {settings['batch']}x"
        f"{settings['height']}x{settings['width']} (uint8 array in, labels out: one request per call).",
        f"Each case: up to {settings['requests']} calls per client or {settings['seconds']:g} s; "
        f"{settings['warmup']} untimed calls per client first. Loopback only.",
        f"Server start (spawn to every model ready): {_fmt(record.get('server_start_s'), 2)} s.",
        "",
        "| pipeline | clients | calls | p50 ms | p90 ms | p99 ms | throughput FPS | server batch sizes (executions) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in record["cases"]:
        latency = case["latency_ms"]
        batches = ", ".join(f"{size}: {count}" for size, count in case.get("server_batches", {}).items()) or "—"
        lines.append(
            f"| {case['pipeline']} | {case['clients']} | {case['calls']} | {_fmt(latency['p50'])} | "
            f"{_fmt(latency['p90'])} | {_fmt(latency['p99'])} | {_fmt(case['throughput_fps'])} | {batches} |"
        )
    lines += [
        "",
        f"Label agreement, served vs local on the same images: {100 * record['cases'][0]['label_agreement']:.2f} %.",
    ]
    others = record.get("environment", {}).get("other_processes_cpu")
    if others is not None:
        lines += ["", f"Other processes (not this run's server or clients) used {100 * others:.0f} % of the CPU."]
    lines += ["", *record.get("notes", [])]
    return "\n".join(lines) + "\n"


def _fmt(value: Any, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def build_parser() -> Any:
    from segbench.parser import OneLineParser

    parser = OneLineParser(
        prog="segbench served",
        description="A model through a real Triton server (1, 4, 16 concurrent clients) beside local segrt on the "
        "same file: latency percentiles, throughput, and the batch sizes the server formed. Loopback only.",
        epilog="Examples: segbench served build/triton/unet_shapes  (starts a server on that repository)  |  "
        "segbench served http://127.0.0.1:8000/unet_shapes --file build/triton/unet_shapes/1/model.onnx",
    )
    parser.add_argument("target", help="a model folder of a repository (REPO/MODEL: segbench starts the server), "
                        "or a served model's URL (a running segserve)")  # fmt: skip
    parser.add_argument("--file", type=Path, help="the artefact the server serves, for local segrt (URL targets)")
    parser.add_argument(
        "--clients", default="1,4,16", help="concurrent client counts, comma-separated (default 1,4,16)"
    )
    parser.add_argument("--requests", type=int, default=200, help="calls per client at most (default 200)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per case at most (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per client (default 2)")
    parser.add_argument("--shape", default="1x612x640", metavar="NxHxW", help="images per call x size (1x612x640)")
    parser.add_argument("--image", type=Path, help="photo (default: the bundled 612x640 one)")
    parser.add_argument("-o", "--out", type=Path, help="run directory (default build/segbench-runs/served-<time>)")
    parser.add_argument("--tritonserver", type=Path, help="tritonserver binary, when segbench starts the server")
    parser.add_argument("--python", type=Path, help="the Python the server runs model.py in (see segserve --python)")
    return parser


def served_command(argv: list[str], console: Any) -> int:
    from segexport.defaults import ASSETS
    from segexport.engine.profile import parse_shape
    from segrt.image import read_image
    from segrt.triton_server import Ports, ServerOptions, TritonServer, free_ports

    args = build_parser().parse_args(argv)
    try:
        clients = tuple(int(v) for v in args.clients.split(","))
        batch, height, width = parse_shape(args.shape)
    except ValueError as exc:
        raise SegError(f"--clients {args.clients} / --shape {args.shape}: {exc}") from None
    if min(clients) < 1 or args.requests < 1 or args.seconds <= 0:
        raise SegError("--clients, --requests and --seconds must be positive")
    settings = ServedSettings(clients, args.requests, args.seconds, args.warmup, batch, height, width)
    photo = read_image(args.image or ASSETS / "astronaut.jpg")
    out = args.out or Path("build/segbench-runs") / f"served-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = Path(args.target)
    server = None
    if folder.is_dir():
        local = next((folder / "1" / n for n in ("model.onnx", "model.plan") if (folder / "1" / n).is_file()), None)
        if local is None:
            raise SegError(
                f"{folder}: no 1/model.onnx or 1/model.plan; give a model folder written by segexport --triton"
            )
        options = ServerOptions(folder.parent, ports=Ports(*free_ports()), tritonserver=args.tritonserver,
                                python=args.python)  # fmt: skip
        console.print(f"starting tritonserver on {folder.parent} ...")
        server = TritonServer(options).start()
        url, name = f"{server.url}/{folder.name}", folder.name
    else:
        if not args.target.startswith(("http://", "grpc://")):
            what = "a file, not a model folder" if folder.exists() else "no such model folder"
            raise SegError(
                f"{args.target}: {what}; give a model folder of a repository segexport --triton wrote (REPO/MODEL, "
                f"segbench starts the server), or a served model's URL, http://HOST:8000/MODEL, with --file"
            )
        if args.file is None:
            raise SegError(f"{args.target}: give --file, the artefact this server serves, for the local comparison")
        local, url, name = args.file, args.target, args.target.rstrip("/").rsplit("/", 1)[-1]
    other_load = _other_load()
    try:
        cases = run_served(url, local, photo, settings, lambda text: console.print(text, highlight=False))
    finally:
        if server is not None:
            server.stop()
    others = other_load.share() if other_load else None
    record = {
        "segbench_served_version": 1,
        "model": name,
        "server": url,
        "file": str(local),
        "server_start_s": server.start_seconds if server else None,
        "settings": settings.__dict__ | {"clients": list(clients)},
        "environment": {**_environment(), "other_processes_cpu": others},
        "cases": cases,
        "notes": [
            "Clients, server and local sessions share this machine's cores: on a 2-core machine the served "
            "figures include the clients' own CPU time, and more clients cannot add throughput."
        ],
    }
    _write(out, record)
    console.print(markdown(record), highlight=False)
    console.print(f"wrote {out / 'results.json'} and {out / 'report.md'}")
    return 0


def _other_load() -> Any:
    """CPU taken by processes outside this run (the server is this process's child, so it is the run's)."""
    try:
        from segbench.measure.machine import OtherLoad

        return OtherLoad()
    except ImportError:
        return None


def _environment() -> dict[str, Any]:
    try:
        from segbench.measure.machine import environment

        return environment()
    except ImportError:  # psutil absent (a serving venv): the basics
        import os
        import platform

        return {"cores_logical": os.cpu_count(), "python": platform.python_version(), "os": platform.platform()}


def _write(out: Path, record: dict[str, Any]) -> None:
    from segrt.meta import atomic_write

    text = markdown(record)
    atomic_write(out / "report.md", lambda tmp: tmp.write_text(text))
    data = json.dumps(record, indent=1, default=str)
    atomic_write(out / "results.json", lambda tmp: tmp.write_text(data))
