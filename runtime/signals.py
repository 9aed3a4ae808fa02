"""Where signals are held: SIGINT/SIGTERM interrupt a command once, and are held while a step must not be cut.

Python runs signal handlers in the main thread only, so both helpers act only there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

_STOPPING = (2, 15)  # SIGINT, SIGTERM (numbers, so this module imports `signal` only where it acts)


def _interrupt_once(signum: int, frame: object) -> None:
    """A command's handler: the first SIGINT or SIGTERM raises KeyboardInterrupt and every later one is swallowed,
    so the clean-up it starts (temporary files removed, a CSV closed, the message, exit 130) runs to its end: a
    burst of signals gives one message and no traceback (see `stop_listening`)."""
    stop_listening()
    raise KeyboardInterrupt(f"signal {signum}")


def _already_stopping(signum: int, frame: object) -> None:
    """What a SIGINT or SIGTERM does once the command is stopping: nothing."""


def _ignore_at_exit() -> None:
    import signal

    for signum in _STOPPING:
        signal.signal(signum, signal.SIG_IGN)


@contextmanager
def interrupt_once() -> Iterator[None]:
    """Around a command's work (each CLI's `main`): the first SIGINT or SIGTERM is a KeyboardInterrupt and the
    later ones do nothing (see `stop_listening`). On the way out the previous handlers come back, unless a signal
    came: the command is stopping."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _interrupt_once) for signum in _STOPPING}
    try:
        yield
    finally:
        if all(signal.getsignal(signum) is _interrupt_once for signum in _STOPPING):  # no signal came
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def stop_listening() -> None:
    """The command is stopping: from now on SIGINT and SIGTERM do nothing, until the process ends.

    Until then through a Python handler that does nothing, not SIG_IGN: a signal that arrived a moment earlier is
    still pending for Python, which would report it ignored "due to race condition" (a traceback-like line) if its
    handler were SIG_IGN when it runs. At exit (atexit) they become SIG_IGN, which Python's shutdown keeps; it puts
    the default handlers back in place of Python ones, and a SIGTERM then would kill the process before it exits
    130 (exit -15).
    """
    import atexit
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not _already_stopping:
        atexit.register(_ignore_at_exit)
    for signum in _STOPPING:
        signal.signal(signum, _already_stopping)


def interrupt(signum: int) -> NoReturn:
    """Raise the KeyboardInterrupt that a signal held by `signals_caught` stands for. Inside a command
    (`interrupt_once`), later signals do nothing from here on, as its handler would have arranged."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is _interrupt_once:
        stop_listening()
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def signals_caught(on_signal: Callable[[int], None]) -> Iterator[list[int]]:
    """While the block runs, SIGINT and SIGTERM call `on_signal(signum)` instead of raising; yields the
    signals received, so the caller raises KeyboardInterrupt when it is safe to.

    Handlers can only be installed from the main thread; in another thread the block runs as it is
    (Python delivers signals to the main thread only). Raise a held signal with `interrupt(signum)`.
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
