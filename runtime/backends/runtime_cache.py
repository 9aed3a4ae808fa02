"""The TensorRT-RTX runtime cache beside an engine: the kernels its first run compiled, so a second start does not.

TensorRT-RTX compiles an engine's kernels just in time on the GPU ("Working with Runtime Cache"):
the cache it fills is saved to `<engine>.runtime-cache` when the backend closes and handed back on
the next load. The file starts with a header naming the engine (its sha256), so a cache left from
another engine is never handed to this one; TensorRT-RTX itself refuses a blob from another GPU,
driver or release. A cache that cannot be used costs one warning and a compile, never a refusal.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from segrt.files import write_bytes_atomic

MAGIC = b"SEGRTRC1"  # segrt runtime cache, format 1
_HEADER = len(MAGIC) + 32


def cache_path(engine: str | os.PathLike[str]) -> Path:
    """`model.fp16.rtx.engine` -> `model.fp16.rtx.engine.runtime-cache`."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".runtime-cache")


def read_runtime_cache(path: Path, engine_sha256: bytes) -> bytes:
    """The cache blob saved for the engine whose sha256 digest is `engine_sha256`, or b"" (with a warning
    naming the file) where it is missing, unreadable, corrupt or from another engine."""
    if not path.exists():
        return b""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _unusable(path, f"cannot be read ({exc.strerror or exc})")
    if len(data) < _HEADER or not data.startswith(MAGIC):
        return _unusable(path, "is not a segrt runtime cache (corrupt or truncated)")
    if data[len(MAGIC) : _HEADER] != engine_sha256:
        return _unusable(path, "belongs to another engine")
    return data[_HEADER:]


def write_runtime_cache(path: Path, engine_sha256: bytes, blob: bytes) -> None:
    """Save `blob` for this engine, atomically (a crash leaves the old file or none)."""
    write_bytes_atomic(path, MAGIC + engine_sha256 + blob)


def refused_by_tensorrt(path: Path) -> None:
    """Say that TensorRT-RTX refused a cache with a valid header (another GPU, driver or release)."""
    _unusable(path, "was made on another GPU, driver or TensorRT-RTX release")


def _unusable(path: Path, why: str) -> bytes:
    warnings.warn(
        f"{path}: the runtime cache {why}; compiling the engine's kernels again and replacing it "
        f"(delete the file to silence this)",
        RuntimeWarning,
        stacklevel=3,
    )
    return b""
