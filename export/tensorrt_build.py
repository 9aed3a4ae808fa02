"""ONNX graph -> serialized TensorRT engine: strongly typed, one optimization profile, timing cache, DLA, progress.

The precision comes from the ONNX graph (FP16 from AutoCast, INT8 from Q/DQ nodes),
never from builder flags: TensorRT 11 removed BuilderFlag.FP16/INT8 and the INT8
calibrators, and 10.x builds a strongly typed network the same way. Everything up to
the first TensorRT call (shapes, profile, card, version decisions, what is missing) is
a pure function tested on CPU; `tensorrt` is imported only inside `build_engine`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segrt.errors import SegError
from segrt.meta import ModelCard, artifact_name, sidecar_path, write_bytes_atomic, write_sidecar

if TYPE_CHECKING:
    import numpy as np
    import tensorrt as trt
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from segrt.backends.tensorrt import GpuInfo

Shape = tuple[int, int, int]  # N, H, W of the images the engine takes

# The default profile covers the common camera frames: 64x64 tiles up to 1080p in either
# orientation (1920x1080 and 1080x1920), tuned for 720p, one image at a time. A fused graph
# resizes to the network size inside the engine, so a wide H x W range costs only the
# input/output buffers (1920x1920x3 uint8 is 11 MB); batching is opt-in (--max-shape 8x...)
# because activation memory grows with N, which matters on an 8 GB Jetson.
DEFAULT_MIN_SHAPE: Shape = (1, 64, 64)
DEFAULT_OPT_SHAPE: Shape = (1, 720, 1280)
DEFAULT_MAX_SHAPE: Shape = (1, 1920, 1920)
# Least pixel agreement of an engine with ONNX Runtime (CPU) on the same graph, per precision.
DEFAULT_MIN_AGREEMENT = {"fp32": 0.999, "fp16": 0.995, "int8": 0.98}
INSTALL = "`pip install segexport[tensorrt]` on a desktop, JetPack on a Jetson"

_SHAPE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)\s*$", re.I)


# --- shapes and the optimization profile --------------------------------------------------------


def parse_shape(text: str) -> Shape:
    """ "1x480x640" -> (1, 480, 640): images per batch x height x width. ValueError names the format."""
    match = _SHAPE.match(text)
    if not match:
        raise ValueError(f"{text!r}: expected NxHxW, images x height x width, e.g. 1x480x640")
    shape = (int(match[1]), int(match[2]), int(match[3]))
    if min(shape) < 1:
        raise ValueError(f"{text!r}: every dimension of NxHxW must be at least 1, e.g. 1x480x640")
    return shape


@dataclass(frozen=True)
class ShapeRange:
    """The N x H x W image shapes an engine accepts (min, opt, max)."""

    min: Shape = DEFAULT_MIN_SHAPE
    opt: Shape = DEFAULT_OPT_SHAPE
    max: Shape = DEFAULT_MAX_SHAPE

    def __post_init__(self) -> None:
        for axis, name in enumerate(("N", "H", "W")):
            low, best, high = self.min[axis], self.opt[axis], self.max[axis]
            if not low <= best <= high:
                raise SegError(
                    f"--min-shape/--opt-shape/--max-shape: {name} must grow from min to opt to max, got "
                    f"{low}, {best}, {high}; e.g. --min-shape 1x64x64 --opt-shape 1x720x1280 --max-shape 1x1920x1920"
                )


def shape_range(low: Shape | None = None, best: Shape | None = None, high: Shape | None = None) -> ShapeRange:
    """The profile from the shapes given (None: not given); defaults bend to fit the given ones.

    `--max-shape 1x480x640` alone gives opt 1x480x640 (the 720p default clamped), and
    `--min-shape 1x1080x1920` alone raises max to cover it; shapes given that contradict
    each other are refused (SegError).
    """
    given = [s for s in (low, best, high) if s is not None]
    if high is None:
        high = _elementwise(max, DEFAULT_MAX_SHAPE, *given)
    if low is None:
        low = _elementwise(min, DEFAULT_MIN_SHAPE, *given)
    if best is None:
        best = _elementwise(min, _elementwise(max, DEFAULT_OPT_SHAPE, low), high)
    return ShapeRange(low, best, high)


def _elementwise(pick: Any, *shapes: Shape) -> Shape:
    n, h, w = (pick(values) for values in zip(*shapes, strict=True))
    return n, h, w


def fit_size(height: int, width: int, shapes: ShapeRange) -> tuple[int, int]:
    """An image size inside the profile's H x W range, keeping the aspect ratio where the range allows."""
    (_, min_h, min_w), (_, max_h, max_w) = shapes.min[:3], shapes.max[:3]
    scale = min(1.0, max_h / height, max_w / width)
    scale = max(scale, min_h / height, min_w / width)
    fitted_h = min(max(round(height * scale), min_h), max_h)
    fitted_w = min(max(round(width * scale), min_w), max_w)
    return fitted_h, fitted_w


def input_profile(
    card: ModelCard, shapes: ShapeRange, static_dims: Sequence[int] | None = None
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The (min, opt, max) shapes of the network input for image shapes `shapes`.

    A fused graph takes the images themselves (N x H x W x 3 uint8). An unfused graph takes
    N x 3 x h x w at the network size the card gives for those images: one size for a fixed
    resize, the range spanned by min/opt/max images for a shorter-side resize. Dimensions the
    graph fixes (`static_dims`, -1 where dynamic) win over the requested ones.
    """
    profile: list[tuple[int, ...]]
    if card.fused:
        profile = [(n, h, w, 3) for n, h, w in (shapes.min, shapes.opt, shapes.max)]
    else:
        sizes = [card.network_size(h, w) for _, h, w in (shapes.min, shapes.opt, shapes.max)]
        low = (min(s[0] for s in sizes), min(s[1] for s in sizes))
        high = (max(s[0] for s in sizes), max(s[1] for s in sizes))
        best = (min(max(sizes[1][0], low[0]), high[0]), min(max(sizes[1][1], low[1]), high[1]))
        batches = (shapes.min[0], shapes.opt[0], shapes.max[0])
        profile = [(n, 3, h, w) for n, (h, w) in zip(batches, (low, best, high), strict=True)]
    if static_dims is not None:
        if len(static_dims) != 4:
            raise SegError(f"the graph's input has {len(static_dims)} dimensions; a segexport graph has 4")
        profile = [tuple(d if d >= 0 else s for s, d in zip(shape, static_dims, strict=True)) for shape in profile]
    return profile[0], profile[1], profile[2]


# --- TensorRT 10.x vs 11.x: the one place that knows -------------------------------------------------


@dataclass(frozen=True)
class TensorRTApi:
    """What this builder does differently on TensorRT 10.x and 11.x.

    Follows NVIDIA's "Migrating from TensorRT 10.x to 11.x" pages (Python API patterns,
    and "Removed Python APIs and Replacements"): 11.x networks are always strongly typed
    and `NetworkDefinitionCreationFlag.STRONGLY_TYPED` is deprecated and ignored, so the
    flag is only asked for on 10.x. BuilderFlag.FP16/INT8 are used on neither.
    """

    version: str
    major: int
    minor: int
    ask_strongly_typed: bool  # 10.x: pass 1 << STRONGLY_TYPED to create_network; 11.x: pass 0
    dla_parser_flag: bool  # 11.x: OnnxParserFlag.ADJUST_FOR_DLA ("Strongly Typed Networks for DLA" page)


def tensorrt_api(version: str) -> TensorRTApi:
    """The API decisions for TensorRT `version` ("10.3.0", "11.4.1.2"); SegError before 10.0."""
    match = re.match(r"^(\d+)\.(\d+)", version)
    if not match:
        raise SegError(f"TensorRT version {version!r} is not MAJOR.MINOR[...]; reinstall TensorRT")
    major, minor = int(match[1]), int(match[2])
    if major < 10:
        raise SegError(
            f"TensorRT {version} is too old: segexport builds strongly typed networks with the TensorRT 10 API "
            f"(JetPack 6 ships 10.3); install TensorRT 10 or 11 ({INSTALL})"
        )
    return TensorRTApi(version, major, minor, ask_strongly_typed=major == 10, dla_parser_flag=major >= 11)


def network_flags(api: TensorRTApi) -> int:
    """The `create_network` flags for a strongly typed network on this TensorRT."""
    if not api.ask_strongly_typed:
        return 0  # 11.x: strongly typed always (the flag is deprecated there)
    import tensorrt as trt

    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _adjust_parser_for_dla(parser: trt.OnnxParser, api: TensorRTApi) -> None:
    """11.x only: let the ONNX parser reshape layers for DLA. The 10.13 stubs have no such flag."""
    if not api.dla_parser_flag:
        return
    import tensorrt as trt

    flag = getattr(trt.OnnxParserFlag, "ADJUST_FOR_DLA", None)
    if flag is not None:
        parser.set_flag(flag)


# --- what is missing on this machine -------------------------------------------------------------


CUDA_PYTHON_INSTALL = (
    "`pip install segexport[tensorrt]` (with JetPack 6 or a driver older than CUDA 13: `pip install 'cuda-python<13'`)"
)


def later_command(sources: Sequence[Path], flags: Sequence[str] = ()) -> str:
    """`segexport SOURCE --engine FLAGS` for each source: the command that builds the engines later."""
    import shlex

    tail = "".join(f" {shlex.quote(flag)}" for flag in flags)
    return " and ".join(f"`segexport {shlex.quote(str(source))} --engine{tail}`" for source in sources)


def missing_sentence(
    tensorrt_problem: str | None,
    gpu_problem: str | None,
    sources: Sequence[Path],
    *,
    cuda_python_missing: bool = False,
    later_flags: Sequence[str] = (),
) -> str | None:
    """One sentence for a machine that cannot build engines: what is missing, how to get it, the command later.

    `cuda_python_missing`: the GPU could not even be looked for, because cuda-python is not installed.
    `later_flags`: the engine flags of this command line, carried into the command for later.
    """
    if tensorrt_problem is None and gpu_problem is None and not cuda_python_missing:
        return None
    later = later_command(sources, later_flags)
    head = "no TensorRT engine was built"
    if tensorrt_problem and cuda_python_missing:
        return (
            f"{head}: TensorRT and cuda-python are not installed ({tensorrt_problem}); on the machine with the "
            f"NVIDIA GPU that will run the engine, install them ({INSTALL}, and for cuda-python "
            f"{CUDA_PYTHON_INSTALL}) and build it with {later}"
        )
    if cuda_python_missing:
        return (
            f"{head}: cuda-python is not installed (segexport reaches the GPU through it); install it with "
            f"{CUDA_PYTHON_INSTALL}, then build the engine with {later}"
        )
    if tensorrt_problem and gpu_problem:
        return (
            f"{head}: TensorRT is not installed ({tensorrt_problem}) and no CUDA GPU is usable ({gpu_problem}); "
            f"on the machine with the NVIDIA GPU that will run the engine, install TensorRT ({INSTALL}) "
            f"and build it with {later}"
        )
    if tensorrt_problem:
        return (
            f"{head}: TensorRT is not installed ({tensorrt_problem}); install it ({INSTALL}), "
            f"then build the engine with {later}"
        )
    return (
        f"{head}: no CUDA GPU is usable ({gpu_problem}); engines are built on the GPU that runs them, "
        f"so where an NVIDIA GPU and its driver are, build it with {later}"
    )


def engine_prerequisites(sources: Sequence[Path], device: int = 0, *, later_flags: Sequence[str] = ()) -> str | None:
    """None where TensorRT, cuda-python and a CUDA GPU are usable here, else `missing_sentence`'s sentence."""
    from segrt.backends import tensorrt as backend

    gpu_problem = None
    cuda_python_missing = backend.cudart is None
    if not cuda_python_missing:
        try:
            backend.gpu_info(device)
        except backend.NoUsableGpu as exc:
            gpu_problem = exc.reason
        except SegError as exc:  # no such device
            gpu_problem = str(exc)
    return missing_sentence(
        backend.tensorrt_import_problem(),
        gpu_problem,
        sources,
        cuda_python_missing=cuda_python_missing,
        later_flags=later_flags,
    )


def engine_sources(graphs: dict[str, Path], *, fp16: bool, int8: bool, engine: bool) -> list[Path]:
    """The ONNX graphs to build engines from: the FP16 / INT8 (TensorRT Q/DQ) graphs asked for, else FP32."""
    sources = []
    for wanted, precision in ((fp16, "fp16"), (int8, "int8")):
        if wanted:
            if precision not in graphs:
                raise SegError(f"no {precision} ONNX graph was written, so no {precision} engine can be built")
            sources.append(graphs[precision])
    if engine and not sources:
        sources.append(graphs["fp32"])
    return sources


def engine_path(onnx_path: Path, card: ModelCard, out: Path | None = None) -> Path:
    """model.fp16.onnx (card precision fp16) -> model.fp16.engine, beside it or in `out`."""
    if card.precision == "int8-cpu":
        raise SegError(
            f"{onnx_path}: this is the ONNX Runtime (CPU) INT8 graph; TensorRT builds from the TensorRT Q/DQ graph, "
            f"`segexport {onnx_path.with_name(artifact_name(onnx_path.name.split('.')[0], 'int8'))} --engine`"
        )
    stem = onnx_path.name.split(".")[0]
    return (out or onnx_path.parent) / artifact_name(stem, card.precision, engine=True)


# --- the card ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildOptions:
    """Everything `build_engine` takes besides the graph (CLI flags, one to one)."""

    shapes: ShapeRange = field(default_factory=ShapeRange)
    workspace_mib: int | None = None  # memory pool limit for TensorRT's scratch space; None: TensorRT's default
    timing_cache: Path | None = None  # read if present, written back updated
    builder_opt_level: int | None = None  # 0..5; None: TensorRT's default (3)
    dla_core: int | None = None  # run on this DLA core, GPU fallback for the rest
    device: int = 0
    verbosity: int = 0  # 0 errors, 1 warnings, 2 info, 3 TensorRT's verbose log


@dataclass(frozen=True)
class BuildRecord:
    """What a build produced besides the engine bytes; becomes the card's `tensorrt` section."""

    tensorrt_version: str
    gpu: GpuInfo
    input_name: str
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    shapes: ShapeRange
    build_seconds: float
    source: str  # the ONNX file's name, for the rebuild command
    options: BuildOptions = field(default_factory=BuildOptions)


def engine_card(source_card: ModelCard, record: BuildRecord, source_sha256: str) -> ModelCard:
    """The engine's card: the ONNX card plus how, where and from what the engine was built."""
    low, best, high = record.profile
    tensorrt = {
        "version": record.tensorrt_version,
        "gpu": record.gpu.name,
        "compute_capability": record.gpu.compute_capability,
        "precision": source_card.precision,
        "strongly_typed": True,
        "profile": {"input": record.input_name, "min": list(low), "opt": list(best), "max": list(high)},
        "image_shapes": {
            "min": list(record.shapes.min),
            "opt": list(record.shapes.opt),
            "max": list(record.shapes.max),
        },
        "build_seconds": round(record.build_seconds, 2),
        "source": record.source,
        "workspace_mib": record.options.workspace_mib,
        "builder_optimization_level": record.options.builder_opt_level,
        "dla_core": record.options.dla_core,
    }
    versions = {**source_card.versions, "tensorrt": record.tensorrt_version}
    return source_card.replace(tensorrt=tensorrt, source_sha256=source_sha256, versions=versions)


def publish_engine(built: Path, target: Path) -> Path:
    """Move a checked engine and its card (`built`, in the scratch folder) to `target` and its card.

    Two renames cannot be one atomic step. SIGINT and SIGTERM are held between them (one that
    arrives is raised as KeyboardInterrupt once both files are in place), so an interrupt never
    leaves the new engine beside the old card or the reverse. What no handler can hold (SIGKILL,
    a power cut) still leaves no usable mismatch: segrt checks the engine against the sha256 in
    its card and refuses the pair. If the card's rename fails after the engine's, the new engine and
    the old card (whose engine it replaced) are removed, so no pair that does not belong together stays.
    """
    with signals_caught(lambda signum: None) as received:
        moved = False
        try:
            os.replace(built, target)
            moved = True
            os.replace(sidecar_path(built), sidecar_path(target))
        except OSError as exc:
            if moved:
                for path in (target, sidecar_path(target)):
                    path.unlink(missing_ok=True)
            raise SegError(
                f"{target}: cannot write the engine ({exc.strerror or exc}); free some space or choose another "
                f"output directory (--out)"
            ) from None
    if received:
        raise KeyboardInterrupt(f"signal {received[0]}")
    return target


def save_engine(path: Path, engine: bytes, card: ModelCard) -> Path:
    """Write the engine atomically, then its sidecar card with the engine's sha256."""
    write_bytes_atomic(path, engine)
    write_sidecar(path, card)
    return path


def parity_batch(image: np.ndarray, card: ModelCard, shapes: ShapeRange) -> np.ndarray:
    """The photo as an N x H x W x 3 batch the engine's profile accepts: N is the profile's least batch
    (`--min-shape 4x...` refuses one image), filled with the photo and its flips so the images differ;
    a fused engine also gets the photo resized into the profile's H x W range."""
    import numpy as np
    from PIL import Image

    if card.fused:
        height, width = fit_size(image.shape[0], image.shape[1], shapes)
        if (height, width) != image.shape[:2]:
            image = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
    variants = (image, image[:, ::-1], image[::-1], image[::-1, ::-1])
    return np.ascontiguousarray(np.stack([variants[i % len(variants)] for i in range(shapes.min[0])]))


def engine_agreement(engine: Path, source: Path, card: ModelCard, image: np.ndarray, shapes: ShapeRange) -> float:
    """Share of pixels where the engine (through `segrt.load`) and ONNX Runtime CPU on `source` agree.

    Both sides see the same `parity_batch`; the reference is `precision.reference_outputs`, so a
    Q/DQ source is compared with its node-by-node labels, as its precision gate was.
    """
    import numpy as np

    import segrt
    from segexport.precision import reference_outputs

    batch = parity_batch(image, card, shapes)
    with segrt.load(engine, backend="tensorrt") as seg:
        labels = np.asarray(seg(batch))
    reference = np.stack([reference_outputs(source, one, card)[0] for one in batch])
    return float(np.mean(labels == reference))


# --- the build -----------------------------------------------------------------------------------


def severity_name(verbosity: int) -> str:
    """-v count -> the least severe TensorRT message shown."""
    return ("ERROR", "WARNING", "INFO", "VERBOSE")[max(0, min(verbosity, 3))]


def build_engine(
    onnx_path: Path, card: ModelCard, options: BuildOptions, console: Console
) -> tuple[bytes, BuildRecord]:
    """Parse `onnx_path`, build a strongly typed engine for one profile, return its bytes and a build record.

    Shows TensorRT's progress as a live bar and its log at `options.verbosity`. Raises SegError
    with TensorRT's own words when the parser or the builder refuse, MissingDependency when
    TensorRT or a GPU is missing, and KeyboardInterrupt (cancelling the build) on Ctrl-C.
    """
    from segrt.backends.tensorrt import gpu_info, require_tensorrt

    api = tensorrt_api(require_tensorrt(onnx_path))
    gpu = gpu_info(options.device)
    import tensorrt as trt

    failures: list[str] = []  # what went wrong inside TensorRT's callbacks, which must not raise
    logger = _console_logger(console, options.verbosity, failures)
    builder = trt.Builder(logger)
    if builder is None:
        raise SegError(f"{onnx_path}: TensorRT could not create a builder ({logger.last_error()})")
    network = builder.create_network(network_flags(api))
    parser = trt.OnnxParser(network, logger)
    if options.dla_core is not None:
        _adjust_parser_for_dla(parser, api)
    if not parser.parse_from_file(str(onnx_path)):
        for index in range(parser.num_errors):
            error = parser.get_error(index)
            console.print(
                f"  TensorRT ONNX parser: node {error.node()} ({error.node_operator()} {error.node_name()!r}): "
                f"{error.desc()}",
                markup=False,
                highlight=False,
            )
        raise SegError(
            f"{onnx_path}: TensorRT {api.version}'s ONNX parser refused the graph ({parser.num_errors} error(s) "
            f"above); re-export it with segexport, or try --opset 17"
        )
    if network.num_inputs != 1 or network.num_outputs != 1:
        raise SegError(
            f"{onnx_path}: expected one input and one output, found {network.num_inputs} and {network.num_outputs}"
        )
    tensor = network.get_input(0)
    static = tuple(int(tensor.shape[i]) for i in range(len(tensor.shape)))
    profile_shapes = input_profile(card, options.shapes, static)

    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, *(trt.Dims(list(shape)) for shape in profile_shapes))
    config.add_optimization_profile(profile)
    if options.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    if options.builder_opt_level is not None:
        config.builder_optimization_level = options.builder_opt_level
    if options.dla_core is not None:
        _use_dla(builder, config, options.dla_core)
    _load_timing_cache(config, read_timing_cache(options.timing_cache), options.timing_cache, console)

    start = time.perf_counter()
    with _progress_monitor(console, failures) as monitor:
        config.progress_monitor = monitor
        serialized = _build_in_worker(builder, network, config, monitor, console)
    seconds = time.perf_counter() - start
    if failures:
        console.print(
            f"note: showing TensorRT's progress or log failed ({failures[0]}); the build itself was not affected",
            markup=False,
            highlight=False,
        )
    if serialized is None:
        raise SegError(
            f"{onnx_path}: TensorRT could not build an engine ({logger.last_error()}); "
            f"try a larger --workspace or a narrower --min-shape/--max-shape"
        )
    if options.timing_cache is not None:
        # the builder added what it timed to the cache installed in the config: write that one back
        write_bytes_atomic(options.timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    record = BuildRecord(
        tensorrt_version=api.version,
        gpu=gpu,
        input_name=tensor.name,
        profile=profile_shapes,
        shapes=options.shapes,
        build_seconds=seconds,
        source=onnx_path.name,
        options=options,
    )
    return bytes(memoryview(serialized)), record


def _use_dla(builder: trt.Builder, config: trt.IBuilderConfig, core: int) -> None:
    import tensorrt as trt

    cores = builder.num_DLA_cores
    if not 0 <= core < cores:
        # DLA is hardware on Jetson AGX/NX Orin and Xavier, and software only in some TensorRT releases
        # ("Working with DLA", TensorRT 11.4.1 docs): up to 10.7 (JetPack 6 ships 10.3), none in 11.0-11.3,
        # and again from 11.4.1 on JetPack 7.2.2 or later.
        where = (
            f"DLA cores 0..{cores - 1}"
            if cores
            else f"no DLA core for TensorRT {trt.__version__} (DLA is on Jetson AGX/NX Orin and Xavier, with "
            "TensorRT 10.7 or older, or 11.4.1 or newer on JetPack 7.2.2+); drop --dla-core to build for the GPU"
        )
        raise SegError(f"--dla-core {core}: this device has {where}")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # layers DLA cannot run go to the GPU


def read_timing_cache(path: Path | None) -> bytes:
    """The bytes of the timing cache at `path`; b"" where there is none yet (the build writes it).

    Called before any work (segexport checks its flags first), so an unreadable cache is one
    SegError instead of a traceback after the ONNX steps.
    """
    if path is None or not path.exists():
        return b""
    if not path.is_file():
        raise SegError(f"--timing-cache {path}: is not a file; give a file path (it is created if missing)")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SegError(
            f"--timing-cache {path}: cannot read it ({exc.strerror or exc}); fix its permissions or give another file"
        ) from None


def _load_timing_cache(
    config: trt.IBuilderConfig, data: bytes, path: Path | None, console: Console
) -> trt.ITimingCache:
    """The timing cache `data` (read from `path`, or b"" for a new one) installed in `config`; a cache from
    another GPU or TensorRT is replaced by a new one."""
    cache = config.create_timing_cache(data)
    if cache is None or not config.set_timing_cache(cache, False):
        console.print(f"timing cache {path} is unreadable or from another GPU or TensorRT; starting a new one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def _describe(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _console_logger(console: Console, verbosity: int, failures: list[str]) -> Any:
    """A TensorRT logger printing at `verbosity` on the console and keeping errors for exception texts.

    TensorRT calls it from its own threads through a noexcept C++ method: a failure to print is
    recorded in `failures`, never raised.
    """
    import tensorrt as trt

    from segrt.backends.tensorrt import tensorrt_logger

    threshold = int(getattr(trt.ILogger, severity_name(verbosity)))

    def emit(severity: trt.ILogger.Severity, msg: str) -> None:
        try:
            if int(severity) <= threshold:
                console.print(f"[dim]TensorRT {severity.name}:[/] {msg}", highlight=False)
        except BaseException as exc:  # nothing may cross TensorRT's noexcept boundary
            failures.append(f"log: {_describe(exc)}")

    return tensorrt_logger(emit, "; run with -vv for its log")


# How often the main thread wakes from waiting on the build to see whether it was cancelled.
_WAIT_SLICE_S = 0.1


@contextmanager
def signals_caught(on_signal: Callable[[int], None]) -> Iterator[list[int]]:
    """While the block runs, SIGINT and SIGTERM call `on_signal(signum)` instead of raising; yields the
    signals received, so the caller raises KeyboardInterrupt when it is safe to.

    Handlers can only be installed from the main thread; in another thread the block runs as it is
    (Python delivers signals to the main thread only).
    """
    import signal
    import threading

    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        on_signal(signum)

    previous: dict[signal.Signals, Any] = {}
    try:
        for caught in (signal.SIGINT, signal.SIGTERM):
            previous[caught] = signal.signal(caught, handler)
        yield received
    finally:
        for restored, old in previous.items():
            signal.signal(restored, old if old is not None else signal.SIG_DFL)


def _build_in_worker(
    builder: trt.Builder, network: trt.INetworkDefinition, config: trt.IBuilderConfig, monitor: Any, console: Console
) -> Any:
    """`builder.build_serialized_network(network, config)` in a worker thread; its result (None on failure).

    Python runs signal handlers only in the main thread, between bytecodes: a main thread sitting in
    TensorRT's build would see Ctrl-C (or SIGTERM) only when the build ends. So the build runs in a
    worker while the main thread waits in short slices with SIGINT/SIGTERM caught: a signal sets the
    monitor's cancel flag (its step_complete then asks TensorRT to stop), the main thread waits for
    the worker to return and raises KeyboardInterrupt, and the CLI writes no engine. The worker is
    always waited for: leaving TensorRT mid-build and exiting could crash the process.
    """
    import threading

    done = threading.Event()
    outcome: dict[str, Any] = {}

    def build() -> None:
        try:
            outcome["engine"] = builder.build_serialized_network(network, config)
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=build, name="tensorrt-build", daemon=True)
    with signals_caught(lambda signum: monitor.cancel()) as received:
        worker.start()
        announced = False
        while not done.wait(_WAIT_SLICE_S):
            if monitor.cancelled and not announced:
                console.print("cancelling the TensorRT build (it stops after its current step) ...", highlight=False)
                announced = True
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    if received or monitor.cancelled:
        if not announced:
            console.print("cancelled the TensorRT build", highlight=False)
        raise KeyboardInterrupt(f"signal {received[0]}" if received else "cancelled")
    return outcome.get("engine")


@contextmanager
def _progress_monitor(console: Console, failures: list[str]) -> Iterator[Any]:
    """A TensorRT IProgressMonitor drawing each build phase as a rich progress bar, cancellable.

    TensorRT calls it from several of its own threads (its docs ask for a thread-safe monitor)
    through noexcept C++ methods: every callback holds one lock and catches everything, recording
    what failed in `failures`; a broken progress bar never breaks the build.
    """
    import threading

    import tensorrt as trt
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    class RichProgressMonitor(trt.IProgressMonitor):
        def __init__(self, progress: Progress) -> None:
            trt.IProgressMonitor.__init__(self)
            self.progress = progress
            self.lock = threading.Lock()
            self.tasks: dict[str, TaskID] = {}
            self.depth: dict[str, int] = {}
            self._cancel = threading.Event()

        @property
        def cancelled(self) -> bool:
            return self._cancel.is_set()

        def cancel(self) -> None:
            """Ask TensorRT to stop: the next step_complete returns False."""
            self._cancel.set()

        def _failed(self, where: str, exc: BaseException) -> None:
            failures.append(f"{where}: {_describe(exc)}")

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            try:
                with self.lock:
                    depth = self.depth.get(parent_phase, -1) + 1 if parent_phase else 0
                    self.depth[phase_name] = depth
                    self.tasks[phase_name] = self.progress.add_task("  " * depth + phase_name, total=num_steps)
            except BaseException as exc:  # nothing may cross TensorRT's noexcept boundary
                self._failed("phase_start", exc)

        def step_complete(self, phase_name: str, step: int) -> bool:
            try:
                with self.lock:
                    self.progress.update(self.tasks[phase_name], completed=step + 1)
            except BaseException as exc:  # nothing may cross TensorRT's noexcept boundary
                self._failed("step_complete", exc)
            return not self._cancel.is_set()

        def phase_finish(self, phase_name: str) -> None:
            try:
                with self.lock:
                    self.depth.pop(phase_name, None)
                    task = self.tasks.pop(phase_name, None)
                    if task is not None:
                        self.progress.remove_task(task)
            except BaseException as exc:  # nothing may cross TensorRT's noexcept boundary
                self._failed("phase_finish", exc)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        yield RichProgressMonitor(progress)
