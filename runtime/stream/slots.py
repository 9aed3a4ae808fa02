"""Hand frames between threads: a bounded queue that keeps every frame in order (a file), or one slot where
the newest frame wins and the ones it replaces are counted (a live source: a camera, a stream, a ROS topic).

Both may share a `threading.Event` that every `put` sets, so one taker can wait on several of them at once.
"""

from __future__ import annotations

import collections
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Closed(Exception):
    """The producer has finished and nothing is left to take."""


class _Handover(Generic[T]):
    """What both hand-overs share: a lock and condition, closing (never blocking), and the shared event."""

    def __init__(self, notify: threading.Event | None) -> None:
        self._closed = False
        self._cond = threading.Condition()
        self._notify = notify

    def _waiting(self) -> bool:
        raise NotImplementedError

    def _wake(self) -> None:
        if self._notify is not None:
            self._notify.set()

    def close(self) -> None:
        """No more items: what waits can still be taken, then `take` raises `Closed`. Never blocks."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._wake()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def finished(self) -> bool:
        """Closed and nothing left to take."""
        with self._cond:
            return self._closed and not self._waiting()


class NewestSlot(_Handover[T]):
    """One waiting item; `put` replaces an item not yet taken and counts it in `dropped`.

    A reader that is slower than its source thus always takes the newest frame, never a queue of stale ones.
    """

    def __init__(self, notify: threading.Event | None = None) -> None:
        super().__init__(notify)
        self._item: T | None = None
        self._full = False
        self.dropped = 0
        self.put_count = 0

    def put(self, item: T) -> None:
        with self._cond:
            if self._full:
                self.dropped += 1
            self._item, self._full = item, True
            self.put_count += 1
            self._cond.notify_all()
        self._wake()

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
        """The waiting item, or None at once (also once closed: see `finished`)."""
        with self._cond:
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def _waiting(self) -> bool:
        return self._full


class OrderedQueue(_Handover[T]):
    """A bounded FIFO that keeps every item: `put` blocks while `maxsize` items wait (back-pressure on the
    reader, so a fast decoder cannot fill memory); `close` lets the taker drain it and then get `Closed`.

    `close` never blocks, even when the queue is full and its taker has died; a `put` after `close` (or one
    waiting when it comes) raises `Closed`, so a producer whose consumer gave up stops instead of hanging.
    """

    def __init__(self, maxsize: int = 8, notify: threading.Event | None = None) -> None:
        super().__init__(notify)
        self._items: collections.deque[T] = collections.deque()
        self._maxsize = maxsize

    def put(self, item: T, timeout: float | None = None) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._items) < self._maxsize or self._closed, timeout):
                raise TimeoutError
            if self._closed:
                raise Closed
            self._items.append(item)
            self._cond.notify_all()
        self._wake()

    def take(self, timeout: float | None = None) -> T:
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                raise TimeoutError
            if not self._items:
                raise Closed
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def poll(self) -> T | None:
        """The oldest item, or None at once."""
        with self._cond:
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def _waiting(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)
