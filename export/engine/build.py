"""ONNX graph -> serialized TensorRT engine: strongly typed, one optimization profile, progress, cancellable.

The precision comes from the ONNX graph (FP16 from AutoCast, INT8 from Q/DQ nodes), never from
builder flags: TensorRT 11 and TensorRT-RTX have no BuildFlag.FP16/INT8 nor INT8 calibrators, and
10.x builds a strongly typed network the same way. One builder for TensorRT 10.x, 11.x and
TensorRT-RTX: where they differ is read from `segrt.backends.tensorrt_library`. TensorRT-RTX builds
ahead of time for chosen compute capabilities on any machine; TensorRT builds on the GPU that runs
the engine (timing cache, DLA). The TensorRT module is imported only inside `build_engine`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segexport.engine.profile import ShapeRange, input_profile
from segexport.request import BuildOptions
from segrt.backends import tensorrt_library as library
from segrt.errors import SegError, first_line
from segrt.files import write_bytes_atomic
from segrt.meta import ModelCard
from segrt.signals import interrupt, signals_caught

if TYPE_CHECKING:
    import tensorrt as trt
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from segrt.backends.tensorrt import GpuInfo


@dataclass(frozen=True)
class BuildRecord:
    """What a build produced besides the engine bytes; becomes the card's `tensorrt` section."""

    library: library.TensorRTLibrary
    gpu: GpuInfo | None  # the GPU built on; None for a TensorRT-RTX build ahead of time
    targets: tuple[str, ...]  # compute capabilities the engine runs on
    input_name: str
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    shapes: ShapeRange
    build_seconds: float
    source: str  # the ONNX file's name, for the rebuild command
    options: BuildOptions = field(default_factory=BuildOptions)


def network_flags(lib: library.TensorRTLibrary) -> int:
    """The `create_network` flags for a strongly typed network on this library."""
    if not lib.ask_strongly_typed:
        return 0  # 11.x and TensorRT-RTX: strongly typed always (the flag is deprecated or absent there)
    import tensorrt as trt

    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _adjust_parser_for_dla(parser: trt.OnnxParser, lib: library.TensorRTLibrary) -> None:
    """11.x only: let the ONNX parser reshape layers for DLA. The 10.13 stubs have no such flag."""
    if not lib.dla_parser_flag:
        return
    import tensorrt as trt

    flag = getattr(trt.OnnxParserFlag, "ADJUST_FOR_DLA", None)
    if flag is not None:
        parser.set_flag(flag)


def severity_name(verbosity: int) -> str:
    """-v count -> the least severe TensorRT message shown."""
    return ("ERROR", "WARNING", "INFO", "VERBOSE")[max(0, min(verbosity, 3))]


def build_engine(
    onnx_path: Path, card: ModelCard, options: BuildOptions, console: Console
) -> tuple[bytes, BuildRecord]:
    """Parse `onnx_path`, build a strongly typed engine for one profile, return its bytes and a build record.

    Shows the builder's progress as a live bar and its log at `options.verbosity`. Raises SegError
    with TensorRT's own words when the parser or the builder refuse, MissingDependency when the
    library (or, for TensorRT, a GPU) is missing, and KeyboardInterrupt (cancelling the build) on Ctrl-C.
    """
    from segrt.backends.tensorrt import gpu_info

    lib = library.installed(options.library, onnx_path)
    gpu = None if lib.builds_without_gpu else gpu_info(options.device)
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = library.module(lib.name)

    failures: list[str] = []  # what went wrong inside TensorRT's callbacks, which must not raise
    logger = _console_logger(lib, console, options.verbosity, failures)
    builder = trt.Builder(logger)
    if builder is None:
        raise SegError(f"{onnx_path}: {lib.title} could not create a builder ({logger.last_error()})")
    network = builder.create_network(network_flags(lib))
    _parse(network, logger, onnx_path, lib, options, console, outputs=1 if card.confidence_name is None else 2)
    tensor = network.get_input(0)
    static = tuple(int(tensor.shape[i]) for i in range(len(tensor.shape)))
    profile_shapes = input_profile(card, options.shapes, static)
    config = _configure(builder, lib, options, tensor.name, profile_shapes, console)

    start = time.perf_counter()
    with _progress_monitor(lib, console, failures) as monitor:
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
            f"{onnx_path}: {lib.title} could not build an engine ({logger.last_error()}); "
            f"try a larger --workspace or a narrower --min-shape/--max-shape"
        )
    if options.timing_cache is not None and lib.has_timing_cache:
        # the builder added what it timed to the cache installed in the config: write that one back
        write_bytes_atomic(options.timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    if lib.builds_without_gpu:  # ahead of time: for the targets asked, else the library's default ones
        targets = options.targets or library.RTX_DEFAULT_TARGETS
    else:  # on the GPU it will run on
        targets = (gpu.compute_capability,) if gpu else ()
    record = BuildRecord(
        library=lib,
        gpu=gpu,
        targets=targets,
        input_name=tensor.name,
        profile=profile_shapes,
        shapes=options.shapes,
        build_seconds=seconds,
        source=onnx_path.name,
        options=options,
    )
    return bytes(memoryview(serialized)), record


def _parse(
    network: trt.INetworkDefinition,
    logger: Any,
    onnx_path: Path,
    lib: library.TensorRTLibrary,
    options: BuildOptions,
    console: Console,
    *,
    outputs: int = 1,
) -> None:
    """Parse the ONNX file into `network`; a refusal is one SegError in the parser's own words. `outputs`: the
    labels (or logits), and a confidence map where the card says the graph has one."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = library.module(lib.name)
    parser = trt.OnnxParser(network, logger)
    if options.dla_core is not None:
        _adjust_parser_for_dla(parser, lib)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(index) for index in range(parser.num_errors)]
        for error in errors[1:]:
            console.print(f"  TensorRT ONNX parser: {parser_error_text(error)}", markup=False, highlight=False)
        first = parser_error_text(errors[0]) if errors else logger.last_error()
        more = f" (and {len(errors) - 1} more above)" if len(errors) > 1 else ""
        raise SegError(
            f"{onnx_path}: {lib.title}'s ONNX parser refused the graph: {first}{more}; re-export it with segexport, "
            f"or try --opset 17"
        )
    if network.num_inputs != 1 or network.num_outputs != outputs:
        raise SegError(
            f"{onnx_path}: expected one input and {outputs} output(s), found {network.num_inputs} and "
            f"{network.num_outputs}"
        )


def parser_error_text(error: Any) -> str:
    """One parser error in one line: the node, its operator and name, and TensorRT's words (CUDA noise that a
    build without a GPU adds to them dropped)."""
    lines = [line.strip() for line in str(error.desc()).splitlines() if line.strip()]
    words = "; ".join(line for line in lines if "catchCudaError" not in line) or "no reason given"
    return f"node {error.node()} ({error.node_operator()} {error.node_name()!r}): {words[:400]}"


def _configure(
    builder: trt.Builder,
    lib: library.TensorRTLibrary,
    options: BuildOptions,
    input_name: str,
    profile_shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]],
    console: Console,
) -> trt.IBuilderConfig:
    """The builder config: the profile, memory, optimization level, and what only one library has (TensorRT:
    DLA, timing cache; TensorRT-RTX: compute capability targets)."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = library.module(lib.name)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *(trt.Dims(list(shape)) for shape in profile_shapes))
    config.add_optimization_profile(profile)
    if options.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    if options.builder_opt_level is not None:
        config.builder_optimization_level = options.builder_opt_level
    if lib.builds_without_gpu:
        _set_targets(library.module(lib.name), config, options.targets)
    if options.dla_core is not None and lib.has_dla:
        _use_dla(builder, config, options.dla_core)
    if lib.has_timing_cache:
        _load_timing_cache(config, read_timing_cache(options.timing_cache), options.timing_cache, console)
    return config


def _set_targets(rtx: Any, config: Any, targets: tuple[str, ...]) -> None:
    """TensorRT-RTX: build for these compute capabilities ("8.6" -> ComputeCapability.SM86); none: its default."""
    if not targets:
        return
    config.num_compute_capabilities = len(targets)
    for index, target in enumerate(targets):
        config.set_compute_capability(getattr(rtx.ComputeCapability, "SM" + target.replace(".", "")), index)


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
        console.print(
            f"timing cache {path} is unreadable or from another GPU or TensorRT; starting a new one", markup=False
        )
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def _console_logger(lib: library.TensorRTLibrary, console: Console, verbosity: int, failures: list[str]) -> Any:
    """A TensorRT logger printing at `verbosity` on the console and keeping errors for exception texts.

    TensorRT calls it from its own threads through a noexcept C++ method: a failure to print is
    recorded in `failures`, never raised.
    """
    from rich.text import Text

    from segrt.backends.tensorrt_log import tensorrt_logger

    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = library.module(lib.name)

    threshold = int(getattr(trt.ILogger, severity_name(verbosity)))

    def emit(severity: trt.ILogger.Severity, msg: str) -> None:
        try:
            if int(severity) <= threshold:
                console.print(Text.assemble((f"TensorRT {severity.name}:", "dim"), f" {msg}"), highlight=False)
        except BaseException as exc:  # nothing may cross TensorRT's noexcept boundary
            failures.append(f"log: {first_line(exc, with_type=True)}")

    return tensorrt_logger(trt, emit, "; run with -vv for its log")


# How often the main thread wakes from waiting on the build to see whether it was cancelled.
_WAIT_SLICE_S = 0.1


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
        if received:
            interrupt(received[0])  # inside a command, the signals after it do nothing (segrt.signals)
        raise KeyboardInterrupt("cancelled")
    return outcome.get("engine")


@contextmanager
def _progress_monitor(lib: library.TensorRTLibrary, console: Console, failures: list[str]) -> Iterator[Any]:
    """A TensorRT IProgressMonitor drawing each build phase as a rich progress bar, cancellable.

    TensorRT calls it from several of its own threads (its docs ask for a thread-safe monitor)
    through noexcept C++ methods: every callback holds one lock and catches everything, recording
    what failed in `failures`; a broken progress bar never breaks the build.
    """
    import threading

    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = library.module(lib.name)

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
            failures.append(f"{where}: {first_line(exc, with_type=True)}")

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

    # phase names are TensorRT's words: text, not markup
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        yield RichProgressMonitor(progress)
