"""Where files are written: atomically (a temporary name beside the target, then a rename), two files published
as a pair, and an output folder proved writable and held by one writer at a time.

An interrupted or failed write leaves no half file at the target, and an old file there stays intact until the
new one is complete. Two files that belong together (a graph or an engine and its card) are renamed with signals
held, so an interrupt never leaves one beside the other's predecessor. A folder a run writes into is locked for
the run (`output_folder_lock`): a second segrun or segexport writing there is refused, naming the first.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shlex
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from segrt.errors import SegError
from segrt.signals import interrupt, signals_caught

LOCK_NAME = ".segexport.lock"  # in an output folder while a segrun or segexport writes there


def write_problem(exc: OSError, path: Path | str, where: str = "another output directory", what: str = "") -> str:
    """Why `path` could not be written and what to do, from the error's errno (a full disk, a folder in the way,
    no permission, a read-only file system); `where` is what to choose instead, `what` names the file (" the
    engine")."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{path}: cannot write{what} ({reason}); free some space or choose {where}"
    if exc.errno == errno.EISDIR:
        return f"{path}: cannot write{what}, a folder of that name is in the way; move it or choose {where}"
    return f"{path}: cannot write{what} ({reason}); choose {where}"


@contextmanager
def temporary_beside(path: Path) -> Iterator[Path]:
    """A new, empty temporary file beside `path` (hidden, readable like any file the user writes); removed when
    the block fails or is interrupted, left for the block to rename into place when it succeeds.

    The name is chosen before the file is created, inside the block that removes it, so an interrupt at any
    point leaves no temporary file.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666))
        yield tmp
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it into place.

    An interrupted or failed write leaves no half file at `path`, and an old file
    there stays intact until the new one is complete.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegError(f"{path.parent}: cannot write here ({exc.strerror}); choose another output directory") from None
    try:
        with temporary_beside(path) as tmp:
            write(tmp)
            os.replace(tmp, path)
    except OSError as exc:
        raise SegError(write_problem(exc, path)) from None
    return path


def publish_together(moves: Sequence[tuple[Path, Path]], what: str = "", flag: str = "--out") -> None:
    """Rename each (temporary, target) pair in order, as one step: under the target folder's lock, with SIGINT
    and SIGTERM held between the renames (one that arrives is raised as KeyboardInterrupt once all are in place).

    What no handler can hold (SIGKILL, a power cut) can still stop it between two renames; segrt then refuses the
    pair, whose card's sha256 no longer matches. If a rename fails after the first, every target is removed (the
    new file, and the old card whose file it replaced), so no files that do not belong together stay side by side.
    A failure is a SegError naming the first target (`what` names it in words: " the engine").
    """
    first = moves[0][1]
    with output_folder_lock(first.parent, flag), signals_caught(lambda signum: None) as received:
        moved = False
        try:
            for tmp, target in moves:
                os.replace(tmp, target)
                moved = True
        except OSError as exc:
            if moved:
                for _, target in moves:
                    target.unlink(missing_ok=True)
            raise SegError(write_problem(exc, first, f"another output directory ({flag})", what)) from None
    if received:
        interrupt(received[0])


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


# --- one writer per output folder -------------------------------------------------------------------------------

_held: dict[str, list[int]] = {}  # real folder path -> [lock file descriptor, depth]: this process's locks
_held_guard = threading.Lock()


@contextmanager
def output_folder_lock(folder: str | os.PathLike[str], flag: str = "--out") -> Iterator[Path]:
    """Hold `folder` for this run: an advisory lock (flock) on `folder/.segexport.lock`, which records this
    process's id and command line. Another process holding it is refused in one line naming the folder and that
    process; a lock left by a process that died does not block (the kernel releases it with the process).

    Re-entrant within one process (the export holds its folder, and each pair it publishes there asks again).
    Where flock is missing (not POSIX) the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks of this kind; one writer is the user's care there
        yield Path(folder)
        return
    folder = Path(folder)
    key = os.path.realpath(folder)
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            mine = True
        else:
            mine = False
    if mine:
        try:
            yield folder
        finally:
            with _held_guard:
                _held[key][1] -= 1
        return
    lock_path = folder / LOCK_NAME
    fd = _acquire(fcntl, lock_path, folder, flag)
    with _held_guard:
        _held[key] = [fd, 1]
    try:
        yield folder
    finally:
        with _held_guard:
            del _held[key]
        # removed while still locked: a process that opened this file meanwhile finds it gone and takes a new one
        try:
            lock_path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _acquire(fcntl: object, lock_path: Path, folder: Path, flag: str) -> int:
    """Lock `lock_path` (creating it) and write this process's id and command line into it; return its fd."""
    for _ in range(10):  # a file unlinked by its holder between our open and our lock is retried
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            raise SegError(
                f"{folder}: cannot write to the output folder ({exc.strerror}); choose another with {flag}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # type: ignore[attr-defined]
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise SegError(
                f"{folder}: in use by another run ({holder}); wait for it to end, or choose another {flag}"
            ) from None
        except OSError:  # a file system without locks (some network mounts): write unlocked, as before
            return fd
        try:
            current = os.stat(lock_path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n{_command_line()}\n".encode())
            return fd
        os.close(fd)
    raise SegError(f"{folder}: its lock file {LOCK_NAME} keeps changing; is another run starting there?")


def _holder(fd: int) -> str:
    """'pid 1234: segrun m1 photos -o out', read from the holder's lock file (it writes it just after locking)."""
    import time

    for _ in range(20):
        text = os.pread(fd, 4096, 0).decode(errors="replace")
        pid, _, command = text.partition("\n")
        if pid.strip():
            return f"pid {pid.strip()}: {command.strip() or 'command unknown'}"
        time.sleep(0.01)
    return "a process that has not written its id yet"


def _command_line() -> str:
    """This process's command line as a shell would show it, the program by its name only."""
    argv = list(sys.argv) or ["python"]
    argv[0] = Path(argv[0]).name or "python"
    return shlex.join(argv).replace("\n", " ")[:500]
