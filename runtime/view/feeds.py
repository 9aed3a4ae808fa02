"""Each source's newest overlay and stats, and the one thread that JPEG-encodes it for every viewer.

The publisher only swaps a reference under a short lock and never waits on a viewer or on the encoder; the
encoder takes the newest unencoded frame of each watched source (the frames it missed are never encoded); each
viewer waits on the `jpeg_made` condition for a JPEG newer than the last one it sent, so a slow viewer skips
frames, a fast one gets every one encoded, and a JPEG is made once whatever the number of viewers.
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

JPEG_QUALITY = 80


@dataclass
class SourceFeed:
    """One source as the view knows it. Guarded by its board's lock."""

    name: str
    index: int
    stats: dict[str, Any] = field(default_factory=dict)
    published: int = 0  # frames published so far
    newest: np.ndarray | None = None  # the newest published overlay (not copied: the publisher hands over a new one)
    newest_seq: int = 0  # which publication `newest` is
    jpeg: bytes = b""
    jpeg_seq: int = 0  # which publication `jpeg` was made from; 0 = none yet
    viewers: int = 0

    def wants_encoding(self) -> bool:
        return self.viewers > 0 and self.newest_seq > self.jpeg_seq


class FeedBoard:
    """Every source's feed, the lock that guards them with its two conditions (a frame to encode: the encoder
    waits; a JPEG made: the viewers wait, so a publication wakes the encoder only), and the viewer connections
    (so that `close` can cut a viewer blocked in a send)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.to_encode = threading.Condition(self.lock)
        self.jpeg_made = threading.Condition(self.lock)
        self.feeds: list[SourceFeed] = []
        self._by_name: dict[str, SourceFeed] = {}
        self.closed = False
        self.encoded = 0  # JPEGs made, all sources together
        self.encode_cpu_s = 0.0  # CPU time the encoder thread spent making them
        self.connections: dict[socket.socket, threading.Thread] = {}  # each stream viewer's socket and thread

    def publish(self, source: str, overlay_rgb: np.ndarray, stats: dict[str, Any]) -> None:
        """Hand over the newest overlay of `source` (uint8 H x W x 3) and its stats; returns at once."""
        if overlay_rgb.dtype != np.uint8 or overlay_rgb.ndim != 3 or overlay_rgb.shape[2] != 3:
            raise ValueError(
                f"view: publish takes uint8 H x W x 3 RGB overlays, not {overlay_rgb.dtype} {overlay_rgb.shape}"
            )
        with self.lock:
            feed = self._by_name.get(source)
            if feed is None:
                feed = SourceFeed(name=source, index=len(self.feeds))
                self.feeds.append(feed)
                self._by_name[source] = feed
            feed.published += 1
            feed.newest, feed.newest_seq, feed.stats = overlay_rgb, feed.published, dict(stats)
            if feed.viewers:
                self.to_encode.notify()

    def feed(self, index: int) -> SourceFeed | None:
        with self.lock:
            return self.feeds[index] if 0 <= index < len(self.feeds) else None

    def stats(self) -> list[dict[str, Any]]:
        """What /stats.json serves: per source its name, stream, stats and counts."""
        with self.lock:
            return [
                {
                    "index": feed.index,
                    "name": feed.name,
                    "stream": f"/stream/{feed.index}.mjpg",
                    "published": feed.published,
                    "viewers": feed.viewers,
                    "stats": feed.stats,
                }
                for feed in self.feeds
            ]

    def watch(self, feed: SourceFeed) -> None:
        with self.lock:
            feed.viewers += 1
            self.to_encode.notify()  # the encoder makes the newest frame's JPEG for the new viewer

    def unwatch(self, feed: SourceFeed) -> None:
        with self.lock:
            feed.viewers -= 1

    def next_jpeg(self, feed: SourceFeed, after_seq: int) -> tuple[bytes, int] | None:
        """The newest JPEG of `feed` made after publication `after_seq`, waiting for one; None once closed."""
        with self.lock:
            self.jpeg_made.wait_for(lambda: self.closed or feed.jpeg_seq > after_seq)
            if self.closed:
                return None
            return feed.jpeg, feed.jpeg_seq

    def close(self) -> list[threading.Thread]:
        """Wake every waiting viewer and the encoder to end, and cut the viewers' connections; returns the viewers'
        threads, for the caller to join."""
        with self.lock:
            self.closed = True
            self.to_encode.notify_all()
            self.jpeg_made.notify_all()
            connections = dict(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already gone
                connection.shutdown(socket.SHUT_RDWR)  # a viewer blocked in sendall to a reader that never reads
        return list(connections.values())

    def run_encoder(self) -> None:
        """The encoder thread: JPEG-encode the newest frame of each watched source, once, until closed."""
        while True:
            with self.lock:
                self.to_encode.wait_for(lambda: self.closed or any(feed.wants_encoding() for feed in self.feeds))
                if self.closed:
                    return
                work = [(feed, feed.newest, feed.newest_seq) for feed in self.feeds if feed.wants_encoding()]
            for feed, overlay_rgb, seq in work:
                started = time.thread_time()
                jpeg = encode_jpeg(overlay_rgb)
                spent = time.thread_time() - started
                with self.lock:
                    feed.jpeg, feed.jpeg_seq = jpeg, seq
                    self.encoded += 1
                    self.encode_cpu_s += spent
                    self.jpeg_made.notify_all()


def encode_jpeg(image_rgb: np.ndarray | None) -> bytes:
    """One frame as a baseline JPEG (Pillow's libjpeg, which releases the GIL while it encodes)."""
    buffer = io.BytesIO()
    Image.fromarray(image_rgb).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
