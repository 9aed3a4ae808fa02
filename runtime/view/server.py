"""`ViewServer`: the live view segrun holds. Bound when made (so `--view` is refused before a model loads),
served from daemon threads, fed by `publish`, which never waits on a viewer."""

from __future__ import annotations

import socketserver
import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Any

import numpy as np

from segrt.view.address import bind_error, parse_view_address, url_of
from segrt.view.feeds import FeedBoard
from segrt.view.handler import ViewRequestHandler

JOIN_TIMEOUT_S = 5.0


class _ViewHTTPServer(ThreadingHTTPServer):
    """The standard library's threading HTTP server, on the address family the host resolved to, holding the
    board its handlers read."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, family: int, board: FeedBoard) -> None:
        self.address_family = family
        self.board = board
        super().__init__(("", 0), ViewRequestHandler, bind_and_activate=False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A viewer that leaves mid-reply is no error of segrun's: only other failures print their traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def server_bind(self) -> None:
        # HTTPServer's own server_bind asks for the host's fully qualified name, a DNS look-up that can hang on a
        # machine without a network; the view needs no such name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])


class ViewServer:
    """The live view at `[HOST:]PORT` (127.0.0.1 unless a host is given; port 0 takes any free port).

    server = ViewServer("8080")    # bound now: a SegError naming --view for a port in use or not allowed
    server.start()                 # serves / (the page), /stream/N.mjpg (MJPEG per source), /stats.json
    server.publish("cam0", overlay_rgb, {"fps": 29.8, "latency_ms": 41.0, "dropped": 3,
                                         "class_shares": {"road": 0.41}, "frame": 118})
    server.close()
    """

    def __init__(self, address: str) -> None:
        parsed = parse_view_address(address)
        self._board = FeedBoard()
        self._http = _ViewHTTPServer(parsed.family, self._board)
        try:
            self._http.server_address = parsed.sockaddr
            self._http.server_bind()
            self._http.server_activate()
        except OSError as exc:
            self._http.server_close()
            raise bind_error(address, parsed, exc) from None
        self.host, self.port = parsed.host, self._http.server_port
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """The page's address, with the port actually bound (`http://HOST:PORT/`; loopback for 0.0.0.0 or ::)."""
        return url_of(self.host, self.port)

    def start(self) -> None:
        """Serve and encode in daemon threads; returns at once."""
        if self._threads:
            return
        self._threads = [
            threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.2}, name="view-http"),
            threading.Thread(target=self._board.run_encoder, name="view-encoder"),
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def publish(self, source: str, overlay_rgb: np.ndarray, stats: dict[str, Any]) -> None:
        """The newest overlay (uint8 H x W x 3 RGB) and stats of `source`; never blocks on a viewer or the encoder.

        The array is kept, not copied, until a newer one replaces it: publish a new array per frame (as
        `segrt.overlay` makes) and do not write into it afterwards. It is JPEG-encoded at most once, and only
        while someone watches that source; frames published faster than they are encoded are skipped.
        """
        self._board.publish(source, overlay_rgb, stats)

    @property
    def encoded_frames(self) -> int:
        """JPEGs made so far, all sources together (at most one per published frame, whatever the viewers)."""
        with self._board.lock:
            return self._board.encoded

    @property
    def encode_cpu_s(self) -> float:
        """CPU seconds the encoder thread has spent making JPEGs."""
        with self._board.lock:
            return self._board.encode_cpu_s

    def viewers(self) -> int:
        """Stream connections open now, all sources together."""
        with self._board.lock:
            return sum(feed.viewers for feed in self._board.feeds)

    def close(self) -> None:
        """Stop serving, cut every viewer's connection and join the threads (each a few seconds at most)."""
        viewer_threads = self._board.close()
        if self._threads:
            self._http.shutdown()
        self._http.server_close()
        for thread in [*self._threads, *viewer_threads]:
            thread.join(JOIN_TIMEOUT_S)
        self._threads = []

    def __enter__(self) -> ViewServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
