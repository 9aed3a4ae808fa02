"""Real network streams on 127.0.0.1 for the stream tests: an MJPEG HTTP server (http.server in a thread) and
a UDP MPEG-TS sender (PyAV). Small frames, few of them: they must cost the suite little."""

from __future__ import annotations

import http.server
import io
import socket
import socketserver
import threading
import time

import numpy as np
from PIL import Image


def jpeg(index: int, size: tuple[int, int] = (48, 64)) -> bytes:
    """A frame whose red channel is its index (x 10), so a test can tell frames apart."""
    image = np.zeros((*size, 3), np.uint8)
    image[..., 0] = index * 10 % 250
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


class MjpegServer:
    """multipart/x-mixed-replace JPEGs at `fps`. The first connection gets `frames` frames (None: until
    stopped); later ones get 503 when `once`, like a camera that went away."""

    def __init__(self, frames: int | None = 8, *, fps: float = 50.0, once: bool = False, size=(48, 64)) -> None:
        self.frames, self.fps, self.once, self.size = frames, fps, once, size
        self.connections = 0
        self.stopped = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.connections += 1
                if server.once and server.connections > 1:
                    self.send_error(503, "camera gone")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                index = 0
                try:
                    while not server.stopped.is_set() and (server.frames is None or index < server.frames):
                        data = jpeg(index, server.size)
                        head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                        self.wfile.write(head.encode() + data + b"\r\n")
                        self.wfile.flush()
                        index += 1
                        time.sleep(1 / server.fps)
                except OSError:  # the reader went away
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/cam.mjpg"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stopped.set()
        self._server.shutdown()
        self._server.server_close()


class SilentServer:
    """A TCP port that takes connections (the kernel's backlog) and never answers: a URL that does not answer."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(8)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}/cam.mjpg"

    def close(self) -> None:
        self._socket.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class UdpTsSender:
    """MPEG-2 video in MPEG-TS sent to udp://127.0.0.1:PORT at `fps` by PyAV, a key frame every 5, until closed."""

    def __init__(self, port: int, *, fps: int = 25, size=(48, 64)) -> None:
        import av

        self.url = f"udp://127.0.0.1:{port}"
        self.stopped = threading.Event()
        self._av, self.fps, self.size = av, fps, size
        self._thread = threading.Thread(target=self._send, daemon=True)
        self._thread.start()

    def _send(self) -> None:
        av = self._av
        with av.open(f"{self.url}?pkt_size=1316", "w", format="mpegts") as container:
            stream = container.add_stream("mpeg2video", rate=self.fps)
            stream.width, stream.height, stream.pix_fmt = self.size[1], self.size[0], "yuv420p"
            stream.gop_size = 5
            index = 0
            while not self.stopped.is_set() and index < 30 * self.fps:
                image = np.zeros((*self.size, 3), np.uint8)
                image[..., 0] = index * 10 % 250
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
                index += 1
                time.sleep(1 / self.fps)

    def close(self) -> None:
        self.stopped.set()
        self._thread.join(5)
