"""Which TensorRT: 10.x, 11.x or TensorRT for RTX, and every way they differ, decided here and nowhere else.

The builder (segexport) and the engine runner (segrt) read these flags instead of testing
versions themselves. Sources: NVIDIA's "Migrating from TensorRT 10.x to 11.x" pages (11.x
networks are always strongly typed and NetworkDefinitionCreationFlag.STRONGLY_TYPED is
deprecated; OnnxParserFlag.ADJUST_FOR_DLA), and TensorRT for RTX's "Porting Guide for TensorRT
Applications", "CPU-Only AOT", "Working with Runtime Cache" and "RTX CUDA Graphs" pages: RTX
networks are always strongly typed, its timing cache is deprecated (using it queries a GPU, which
breaks a build without one), DLA settings do nothing, engines are built ahead of time for chosen
compute capabilities and compiled just in time on the GPU, where a runtime cache keeps that work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import ModuleType

from segrt.errors import MissingDependency, SegError

TENSORRT, TENSORRT_RTX = "tensorrt", "tensorrt-rtx"  # the names cards and messages use
MODULES = {TENSORRT: "tensorrt", TENSORRT_RTX: "tensorrt_rtx"}
INSTALL = {
    TENSORRT: "`pip install segexport[tensorrt]` on a desktop or server, JetPack's TensorRT on a Jetson",
    TENSORRT_RTX: "`pip install segexport[rtx]` (TensorRT for RTX, tensorrt-rtx-cu12; builds on any machine)",
}
# TensorRT-RTX's compute capability targets (its ComputeCapability enum, 1.7): --gpu-arch names -> "major.minor".
RTX_TARGETS = {"sm75": "7.5", "sm80": "8.0", "sm86": "8.6", "sm89": "8.9", "sm120": "12.0", "sm121": "12.1"}
# What TensorRT-RTX builds for when no target is set ("CPU-Only AOT" page): Ampere, Ada and Blackwell GeForce.
RTX_DEFAULT_TARGETS = ("8.0", "8.6", "8.9", "12.0")
_NO_RTX_TARGET = {
    "sm87": "Jetson Orin (SM87) runs JetPack's TensorRT: build on the Jetson without --rtx",
    "sm90": "Hopper (SM90: H100, H200, GH200) has no TensorRT-RTX target: build with full TensorRT, without --rtx",
    "sm100": "data-centre Blackwell (SM100) has no TensorRT-RTX target: build with full TensorRT, without --rtx",
}


@dataclass(frozen=True)
class TensorRTLibrary:
    """One installed (or described) TensorRT library and what segexport does differently on it."""

    name: str  # TENSORRT or TENSORRT_RTX
    version: str
    major: int
    minor: int

    @property
    def rtx(self) -> bool:
        return self.name == TENSORRT_RTX

    @property
    def title(self) -> str:
        """ "TensorRT 10.3.0" or "TensorRT-RTX 1.7.1.116", for messages."""
        return f"{'TensorRT-RTX' if self.rtx else 'TensorRT'} {self.version}"

    @property
    def ask_strongly_typed(self) -> bool:
        """10.x: pass 1 << STRONGLY_TYPED to create_network; 11.x and RTX: pass 0 (always strongly typed)."""
        return not self.rtx and self.major == 10

    @property
    def dla_parser_flag(self) -> bool:
        """11.x: OnnxParserFlag.ADJUST_FOR_DLA ("Strongly Typed Networks for DLA" page)."""
        return not self.rtx and self.major >= 11

    @property
    def has_timing_cache(self) -> bool:
        return not self.rtx  # RTX: deprecated, does nothing, and forces a GPU query

    @property
    def has_dla(self) -> bool:
        return not self.rtx  # RTX: the attributes exist and do nothing

    @property
    def builds_without_gpu(self) -> bool:
        """RTX builds ahead of time for chosen targets (no GPU); TensorRT builds on the GPU it runs on."""
        return self.rtx

    @property
    def has_runtime_cache(self) -> bool:
        """RTX compiles kernels on first run; a runtime cache file keeps them for the next start."""
        return self.rtx

    @property
    def builtin_cuda_graphs(self) -> bool:
        """RTX captures CUDA graphs itself (IRuntimeConfig.cuda_graph_strategy); TensorRT through stream capture."""
        return self.rtx


def describe(name: str, version: str) -> TensorRTLibrary:
    """The library `name` at `version` ("10.3.0", "11.4.1.2", RTX "1.7.1.116"); SegError for TensorRT before 10."""
    if name not in MODULES:
        raise SegError(f"TensorRT library {name!r} is not one of {', '.join(MODULES)}; rebuild the engine")
    match = re.match(r"^(\d+)\.(\d+)", version)
    if not match:
        raise SegError(f"{name} version {version!r} is not MAJOR.MINOR[...]; reinstall it ({INSTALL[name]})")
    major, minor = int(match[1]), int(match[2])
    if name == TENSORRT and major < 10:
        raise SegError(
            f"TensorRT {version} is too old: segexport builds strongly typed networks with the TensorRT 10 API "
            f"(JetPack 6 ships 10.3); install TensorRT 10 or 11 ({INSTALL[TENSORRT]})"
        )
    return TensorRTLibrary(name, version, major, minor)


def import_problem(name: str) -> str | None:
    """Why the library `name` does not import here, or None when it does."""
    import importlib

    try:
        importlib.import_module(MODULES[name])
    except (ImportError, OSError) as exc:  # OSError: a wheel whose native libraries do not load
        return str(exc)
    return None


def installed(name: str, what: object) -> TensorRTLibrary:
    """The installed library `name`, or MissingDependency naming `what` needed it and how to install it."""
    problem = import_problem(name)
    if problem is not None:
        label = "TensorRT-RTX" if name == TENSORRT_RTX else "TensorRT"
        raise MissingDependency(f"{what}: {label} is not installed ({problem}); install it with {INSTALL[name]}")
    return describe(name, str(module(name).__version__))


def module(name: str) -> ModuleType:
    """The imported module of library `name` (`tensorrt` or `tensorrt_rtx`; same class names)."""
    import importlib

    return importlib.import_module(MODULES[name])


def parse_gpu_arch(text: str) -> tuple[str, ...]:
    """--gpu-arch "sm86,sm89" -> ("8.6", "8.9"): TensorRT-RTX targets as compute capabilities; SegError names
    the valid ones, and says which library a GPU without an RTX target (Hopper, Jetson) needs."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    valid = f"TensorRT-RTX's targets are {', '.join(RTX_TARGETS)}, comma-separated"
    if not names:
        raise SegError(f"--gpu-arch {text!r}: name one or more targets, e.g. --gpu-arch sm86,sm89 ({valid})")
    targets: list[str] = []
    for arch in names:
        if arch in _NO_RTX_TARGET:
            raise SegError(f"--gpu-arch {arch}: {_NO_RTX_TARGET[arch]} ({valid})")
        if arch not in RTX_TARGETS:
            raise SegError(
                f"--gpu-arch {arch}: not a TensorRT-RTX target; {valid} "
                f"(sm86: RTX 30xx/A-series, sm89: RTX 40xx, sm120: RTX 50xx)"
            )
        if RTX_TARGETS[arch] not in targets:
            targets.append(RTX_TARGETS[arch])
    return tuple(targets)


def arch_flag(targets: tuple[str, ...] | list[str]) -> str:
    """("8.6", "8.9") -> "sm86,sm89": the --gpu-arch value that gives these targets."""
    return ",".join("sm" + target.replace(".", "") for target in targets)
