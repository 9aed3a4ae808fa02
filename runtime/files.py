"""Where files are written atomically: under a temporary name beside the target, then renamed into place.

An interrupted or failed write leaves no half file at the target, and an old file there stays
intact until the new one is complete. (Two files published as a pair, an engine and its card,
are renamed with signals held: segexport.engine.files.publish_engine.)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from segrt.errors import SegError

_UMASK = os.umask(0o022)  # read once at import (os.umask can only be read by setting it) ...
os.umask(_UMASK)  # ... and put back at once


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it into place.

    An interrupted or failed write leaves no half file at `path`, and an old file
    there stays intact until the new one is complete.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise SegError(f"{path.parent}: cannot write here ({exc.strerror}); choose another output directory") from None
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result should read like any file the user writes
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise SegError(
                f"{path}: cannot write ({exc.strerror}); free some space or choose another output directory"
            ) from None
        raise
    return path


def prepare_output_folder(folder: str | os.PathLike[str], flag: str) -> Path:
    """Create `folder` and prove it is writable before any work goes into it; `flag` names the option to change."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SegError(
            f"{folder}: cannot write to the output folder ({exc.strerror}); choose another with {flag}"
        ) from None
    return folder


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))
