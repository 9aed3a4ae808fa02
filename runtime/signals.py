"""Where signals are held: SIGTERM made a Ctrl-C, and SIGINT/SIGTERM held while a step must not be cut.

Python runs signal handlers in the main thread only, so both helpers act only there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def interrupt_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt, so `finally` blocks and atomic writes clean up as on Ctrl-C."""
    import signal

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


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
