"""One HTTP request to the view: the page, a source's MJPEG stream, or the stats as JSON."""

from __future__ import annotations

import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from segrt.view.feeds import FeedBoard
from segrt.view.page import PAGE_HTML

BOUNDARY = "segrtframe"
STREAM_PATH = re.compile(r"^/stream/(\d+)\.mjpg$")
SEND_TIMEOUT_S = 10.0  # a viewer that has read nothing for this long is dropped (its own thread, nobody waits)


class ViewRequestHandler(BaseHTTPRequestHandler):
    """Answers GET /, /stats.json and /stream/N.mjpg from the server's `board`; anything else is 404."""

    server_version = "segrt-view"
    timeout = SEND_TIMEOUT_S

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        board: FeedBoard = self.server.board  # type: ignore[attr-defined]
        if path in ("/", "/index.html"):
            self._send_body(PAGE_HTML.encode(), "text/html; charset=utf-8")
        elif path == "/stats.json":
            body = json.dumps({"sources": plain_json(board.stats())}, allow_nan=False).encode()
            self._send_body(body, "application/json")
        elif match := STREAM_PATH.match(path):
            self._stream(board, int(match.group(1)))
        else:
            self.send_error(404, "the view serves /, /stats.json and /stream/N.mjpg")

    def _send_body(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, board: FeedBoard, index: int) -> None:
        """The source's JPEGs as multipart/x-mixed-replace, the newest each time, until the viewer leaves or the
        server closes. A broken pipe or a send that times out ends this viewer only."""
        feed = board.feed(index)
        if feed is None:
            self.send_error(404, f"no source {index} yet")
            return
        threading.current_thread().name = f"view-viewer-{index}"
        with board.lock:
            board.connections[self.connection] = threading.current_thread()
        board.watch(feed)
        try:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            sent_seq = 0
            while (part := board.next_jpeg(feed, sent_seq)) is not None:
                jpeg, sent_seq = part
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                self.wfile.write(head.encode() + jpeg + b"\r\n")
        except (ConnectionError, TimeoutError, OSError):
            pass  # the viewer left, stalled or was cut by close(): only this connection ends
        finally:
            board.unwatch(feed)
            with board.lock:
                board.connections.pop(self.connection, None)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a viewer's requests are not segrun's output."""


def plain_json(value: Any) -> Any:
    """Stats as strict JSON, which browsers parse: numpy scalars and arrays as numbers and lists, a NaN or an
    infinity (an FPS before the second frame) as null, anything else unknown as its text."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(key): plain_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)
