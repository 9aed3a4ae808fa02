"""segrt: the thin segmentation runtime. numpy + ONNX Runtime or TensorRT; never torch.

seg = segrt.load("build/unet/model.onnx")
labels = seg(image)            # uint8 H x W x 3 RGB -> uint8 H x W class ids
for frame in segrt.open_source("rtsp://cam/live"): ...   # videos, cameras, streams: segrt.stream
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from segrt.backends import BACKENDS as BACKEND_ROWS
from segrt.backends.tensorrt_library import MODULES, TENSORRT, TENSORRT_RTX
from segrt.errors import MissingDependency, SegError
from segrt.image import colorize, overlay, read_image
from segrt.meta import ModelCard, artifact_name, check_card_fits, embedded_card, read_card, read_sidecar
from segrt.onnx_file import read_onnx_file
from segrt.precisions import PRECISIONS, USER_PRECISIONS, graph_for
from segrt.segmenter import Segmenter
from segrt.stream.sources import open_source

__all__ = [
    "MissingDependency",
    "ModelCard",
    "SegError",
    "Segmenter",
    "colorize",
    "load",
    "open_source",
    "overlay",
    "read_image",
    "resolve_model_file",
]
__version__ = "0.1.0"

BACKENDS = tuple(BACKEND_ROWS)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def load(
    path: str | os.PathLike[str],
    backend: str | None = None,
    *,
    device: int = 0,
    precision: str | None = None,
    threads: int | None = None,
    cuda_graph: bool = False,
    spin: bool = True,
) -> Segmenter:
    """Open an engine or ONNX file (or a segexport output folder, or a served model's URL) as a `Segmenter`.

    `backend`: None picks TensorRT for an engine and the best installed ONNX Runtime
    provider for an ONNX file; or name one of "tensorrt", "ort", "ort-cpu",
    "ort-cuda", "ort-trt". `precision` ("fp32", "fp16", "int8") picks the matching
    file beside `path`; "int8" means the CPU-flavoured Q/DQ graph on ONNX Runtime's
    CPU provider and the TensorRT one elsewhere. The card -- the sidecar `<file>.json`
    (its sha256 checked), or for an ONNX file without one the card embedded in it (its
    content's sha256 checked) -- is checked against the graph (classes, input size,
    precision) before a session is built, so a stale or edited one costs no session
    build. `path` may also be a model on a Triton server,
    `http://HOST:8000/MODEL` or `grpc://HOST:8001/MODEL` (see segrt.backends.triton).
    `spin=False` lets ONNX Runtime's idle threads sleep instead of spinning: slower to wake, but the cores go
    to whatever runs beside the model (segrun's decoding and encoding threads).
    Raises `SegError` naming the file on bad input.
    """
    if isinstance(path, str) and path.startswith(("http://", "grpc://")):  # a model on a Triton server
        from segrt.backends.triton import open_served

        if backend is not None or precision is not None or threads is not None or cuda_graph:
            raise SegError(f"{path}: backend, precision, threads and cuda_graph apply to local files, not a server")
        return open_served(path)
    if backend is not None and backend not in BACKENDS:
        raise SegError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    path = resolve_model_file(path, backend=backend, precision=precision)
    is_engine = path.suffix in ENGINE_SUFFIXES
    runs_engines = backend is not None and BACKEND_ROWS[backend].runs == "engine"
    if runs_engines and not is_engine:
        raise SegError(
            f"{path}: the tensorrt backend runs engines; build one with `segexport {path} --engine`, "
            f"or use backend='ort-trt'"
        )
    if is_engine and backend is not None and not runs_engines:
        raise SegError(f"{path}: an engine runs on the tensorrt backend only, not {backend}")
    if is_engine:
        card = read_card(path)  # checks the sha256 before TensorRT sees the bytes
        from segrt.backends.tensorrt import TensorRTBackend

        trt_backend = TensorRTBackend(path, card=card, device=device, cuda_graph=cuda_graph)
        return Segmenter(trt_backend, card, path)
    if not path.is_file():
        raise SegError(f"{path}: no such model file")
    from segrt.backends.onnxruntime import OnnxRuntimeBackend

    # the card first, checked against the graph: a stale one is refused before a session is built (minutes with ort-trt)
    sidecar_card = read_sidecar(path)
    onnx = read_onnx_file(path, content_hash=sidecar_card is None)
    card = sidecar_card or embedded_card(path, onnx)
    check_card_fits(card, onnx, path)
    ort_backend = OnnxRuntimeBackend(path, backend=backend or "ort", device=device, threads=threads, spin=spin)
    return Segmenter(ort_backend, card, path)


def resolve_model_file(
    path: str | os.PathLike[str], *, backend: str | None = None, precision: str | None = None
) -> Path:
    """The file `load` opens: `path` itself, or the sibling/folder member of the asked precision."""
    path = Path(path)
    kind = _kind(path, path)
    if kind == "file" and precision is None:
        return path
    if kind == "missing":
        raise SegError(f"{path}: no such file or folder")
    if kind not in ("file", "folder"):
        raise SegError(f"{path}: {kind}, not a model file or folder")
    folder, stem = (path, "model") if kind == "folder" else (path.parent, path.name.split(".")[0])
    precision = precision or "fp32"
    if precision not in USER_PRECISIONS:
        raise SegError(f"precision {precision!r} is not one of {', '.join(USER_PRECISIONS)}")
    # a TensorRT engine, then a TensorRT-RTX one: each where its library is installed
    engines = [folder / artifact_name(stem, precision, engine=True, rtx=rtx) for rtx in (False, True)]
    found = {e for e in engines if _kind(e, folder) == "file"}
    installed = [e for e, lib in zip(engines, (TENSORRT, TENSORRT_RTX), strict=True) if e in found and _has(lib)]
    if backend in BACKEND_ROWS and BACKEND_ROWS[backend].runs == "engine":
        candidates = engines
    elif backend is None and installed:
        candidates = installed
    else:
        # INT8 on ONNX Runtime's CPU provider is the CPU-flavoured graph (see segrt.precisions.graph_for)
        graph = graph_for(precision, on_ort_cpu=precision == "int8" and _runs_on_ort_cpu(backend))
        candidates = [folder / graph.file_name(stem)]
    for candidate in candidates:
        if _kind(candidate, folder) == "file":
            return candidate
    flags = PRECISIONS[precision].flags
    export = f"`segexport MODEL{' ' + flags if flags else ''}`"
    if candidates == engines:  # an engine asked for: built from the folder's ONNX graph of that precision
        graph = folder / graph_for(precision, on_ort_cpu=False).file_name(stem)
        build = f"`segexport {graph} --engine` (TensorRT, on this GPU) or `--rtx` (TensorRT-RTX, on any machine)"
        missing = f"{folder}: no {engines[0].name} or {engines[1].name} for precision {precision}"
        if graph.is_file():
            raise SegError(f"{missing}; build one from {graph.name} with {build}")
        both = f"`segexport MODEL {flags or '--engine'}`"
        raise SegError(f"{missing}, and no {graph.name} to build one from; export and build with {both} (or add --rtx)")
    raise SegError(f"{folder}: no {candidates[0].name} for precision {precision}; export it with {export}")


def _kind(path: Path, named: Path) -> str:
    """What `path` is: "file", "folder", "missing", or in words ("a FIFO", ...). A folder that cannot be searched
    is a SegError naming `named` (the path given, or the model folder)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError as exc:
        what = "the model folder" if named != path else "it"
        raise SegError(f"{named}: cannot read {what} ({exc.strerror or exc})") from None
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    return next((words for test, words in kinds.items() if test(mode)), "a socket or other special file")


def _runs_on_ort_cpu(backend: str | None) -> bool:
    """Whether an ONNX file opened with `backend` runs on ONNX Runtime's CPU provider (no backend, or one whose
    device is "auto", is the provider this machine's onnxruntime picks)."""
    if backend is None or (backend in BACKEND_ROWS and BACKEND_ROWS[backend].device == "auto"):
        from segrt.backends.onnxruntime import default_backend

        backend = default_backend()
    return backend in BACKEND_ROWS and BACKEND_ROWS[backend].on_ort_cpu


def _has(library: str) -> bool:
    """Whether the TensorRT library `library` ("tensorrt" or "tensorrt-rtx") is installed (not imported)."""
    import importlib.util

    return importlib.util.find_spec(MODULES[library]) is not None
