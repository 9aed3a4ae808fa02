"""What this machine lacks to build engines, in one sentence that says how to get it and the command for later."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from segrt.backends import tensorrt_library as library
from segrt.errors import SegError

_INSTALL = library.INSTALL[library.TENSORRT]
CUDA_PYTHON_INSTALL = (
    "`pip install segexport[tensorrt]` (with JetPack 6 or a driver older than CUDA 13: `pip install 'cuda-python<13'`)"
)


def later_engine_flags(given: Mapping[str, object], *, rtx: bool, targets: tuple[str, ...]) -> list[str]:
    """The engine flags a command line gave (`given`: flag -> value as parsed, None where not given; `targets`:
    --gpu-arch parsed), for the command that builds the engine later."""
    flags: list[str] = ["--rtx"] if rtx else []
    if targets:
        flags += ["--gpu-arch", library.arch_flag(targets)]
    for flag, value in given.items():
        if value is not None:
            flags += [flag, "x".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return flags


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
    later: str | None = None,
) -> str | None:
    """One sentence for a machine that cannot build engines: what is missing, how to get it, the command later.

    `cuda_python_missing`: the GPU could not even be looked for, because cuda-python is not installed.
    `later_flags`: the engine flags of this command line, carried into the command for later.
    """
    if tensorrt_problem is None and gpu_problem is None and not cuda_python_missing:
        return None
    later = later or later_command(sources, later_flags)
    head = "no TensorRT engine was built"
    if tensorrt_problem and cuda_python_missing:
        return (
            f"{head}: TensorRT and cuda-python are not installed ({tensorrt_problem}); on the machine with the "
            f"NVIDIA GPU that will run the engine, install them ({_INSTALL}, and for cuda-python "
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
            f"on the machine with the NVIDIA GPU that will run the engine, install TensorRT ({_INSTALL}) "
            f"and build it with {later}"
        )
    if tensorrt_problem:
        return (
            f"{head}: TensorRT is not installed ({tensorrt_problem}); install it ({_INSTALL}), "
            f"then build the engine with {later}"
        )
    return (
        f"{head}: no CUDA GPU is usable ({gpu_problem}); engines are built on the GPU that runs them, "
        f"so where an NVIDIA GPU and its driver are, build it with {later}"
    )


def gpu_problem_here(device: int = 0) -> tuple[bool, str | None]:
    """(cuda-python is missing, why CUDA device `device` is not usable or None): what stands between this
    machine and running an engine."""
    from segrt.backends import tensorrt as backend

    if backend.cudart is None:
        return True, "cuda-python is not installed"
    try:
        backend.gpu_info(device)
    except backend.NoUsableGpu as exc:
        return False, exc.reason
    except SegError as exc:  # no such device
        return False, str(exc)
    return False, None


def engine_prerequisites(
    sources: Sequence[Path],
    device: int = 0,
    *,
    later_flags: Sequence[str] = (),
    rtx: bool = False,
    later: str | None = None,
) -> str | None:
    """None where the engines can be built here, else one sentence: what is missing and the command for later.

    TensorRT builds on the GPU that runs the engine: it needs TensorRT, cuda-python and that GPU.
    TensorRT-RTX builds ahead of time on any machine: it needs only itself (its engine check needs
    a GPU, and is skipped without one). `later`: the command for later, where it is not
    `segexport SOURCE --engine FLAGS` (a rebuild).
    """
    if rtx:
        problem = library.import_problem(library.TENSORRT_RTX)
        if problem is None:
            return None
        return (
            f"no TensorRT-RTX engine was built: TensorRT-RTX is not installed ({problem}); install it with "
            f"{library.INSTALL[library.TENSORRT_RTX]}, then build the engine with "
            f"{later or later_command(sources, later_flags)}"
        )
    cuda_python_missing, gpu_problem = gpu_problem_here(device)
    return missing_sentence(
        library.import_problem(library.TENSORRT),
        None if cuda_python_missing else gpu_problem,
        sources,
        cuda_python_missing=cuda_python_missing,
        later_flags=later_flags,
        later=later,
    )
