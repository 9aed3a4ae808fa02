"""Hand frames between threads: a bounded queue that keeps every frame in order (a file), or one slot where
the newest frame wins and the ones it replaces are counted (a live source: a camera, a stream, a ROS topic).
"""

from __future__ import annotations

import queue
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Closed(Exception):
    """The producer has finished and nothing is left to take."""


class NewestSlot(Generic[T]):
    """One waiting item; `put` replaces an item not yet taken and counts it in `dropped`.

    A reader that is slower than its source thus always takes the newest frame, never a queue of stale ones.
    """

    def __init__(self) -> None:
        self._item: T | None = None
        self._full = False
        self._closed = False
        self._cond = threading.Condition()
        self.dropped = 0
        self.put_count = 0

    def put(self, item: T) -> None:
        with self._cond:
            if self._full:
                self.dropped += 1
            self._item, self._full = item, True
            self.put_count += 1
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> T:
        """The waiting item; blocks until there is one. Raises `Closed` once closed and empty, `TimeoutError`
        after `timeout` seconds with nothing."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout):
                raise TimeoutError
            if not self._full:
                raise Closed
            item, self._item, self._full = self._item, None, False
            return item  # type: ignore[return-value]

    def poll(self) -> T | None:
        """The waiting item, or None at once."""
        with self._cond:
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def close(self) -> None:
        """No more items: a waiting `take` gets the last one, then `Closed`."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


class OrderedQueue(Generic[T]):
    """A bounded FIFO that keeps every item: `put` blocks while `maxsize` items wait (back-pressure on the
    reader, so a fast decoder cannot fill memory); `close` lets the taker drain it and then get `Closed`."""

    _END = object()

    def __init__(self, maxsize: int = 8) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize)
        self._closed = False

    def put(self, item: T, timeout: float | None = None) -> None:
        self._queue.put(item, timeout=timeout)

    def take(self, timeout: float | None = None) -> T:
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None
        if item is self._END:
            self._queue.put(self._END)  # every later take sees the end too
            raise Closed
        return item  # type: ignore[return-value]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(self._END)
