"""segrt.view: the live view, read by a real HTTP client and a real headless Chromium on 127.0.0.1."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segrt.errors import SegError
from segrt.view import ViewServer, address

STATS = {"fps": 20.0, "latency_ms": 12.5, "dropped": 3, "class_shares": {"road": 0.41, "sky": 0.59}, "frame": 7}
WAIT_S = 30.0  # how long a test waits for something that should happen; a bound on a hang, not a timing claim


@pytest.fixture
def view() -> Iterator[ViewServer]:
    server = ViewServer("127.0.0.1:0")
    server.start()
    yield server
    server.close()


def read_part(stream: io.BufferedIOBase) -> bytes:
    """One JPEG of a multipart/x-mixed-replace body: the boundary line, headers, Content-Length bytes."""
    boundary = stream.readline()
    assert boundary.strip() == b"--segrtframe", boundary
    headers = {}
    while (line := stream.readline().strip()) != b"":
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    jpeg = stream.read(int(headers["content-length"]))
    assert stream.read(2) == b"\r\n"
    return jpeg


def decode(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def blocks_image(height: int = 48, width: int = 64, shift: int = 0) -> np.ndarray:
    """Flat 16x16 colour blocks: JPEG keeps them within a few levels."""
    rows, cols = np.mgrid[0:height, 0:width] // 16
    image = np.stack([(rows * 60 + shift) % 256, (cols * 50) % 256, ((rows + cols) * 35) % 256], axis=-1)
    return image.astype(np.uint8)


# ---- the --view address: each refusal one line, naming --view ----


def test_a_port_in_use_is_refused_in_one_line() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(SegError, match=rf"--view .*port {port} is in use.*pick another port") as caught:
            ViewServer(f"127.0.0.1:{port}")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("eighty", r"not \[HOST:\]PORT"),
        ("127.0.0.1:", r"not \[HOST:\]PORT"),
        ("8080x", r"not \[HOST:\]PORT"),
        ("70000", r"port 70000 is not allowed \(ports go up to 65535"),
        ("192.0.2.1:0", r"host '192.0.2.1' is not an address of this machine"),
    ],
)
def test_bad_view_text_is_refused_in_one_line(text: str, says: str) -> None:
    with pytest.raises(SegError, match=rf"^--view '{text}': {says}") as caught:
        ViewServer(text)
    assert "\n" not in str(caught.value)


def test_a_port_below_1024_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(address, "_geteuid", lambda: 1000)
    with pytest.raises(SegError, match=r"^--view '80': port 80 is not allowed \(ports below 1024 need root"):
        ViewServer("80")


def test_port_0_binds_a_free_port_on_loopback() -> None:
    server = ViewServer("0")
    try:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}/"
    finally:
        server.close()  # never started: closes the bound socket all the same
    everywhere = ViewServer("0.0.0.0:0")
    everywhere.close()
    assert everywhere.url == f"http://127.0.0.1:{everywhere.port}/"  # what a browser here opens


# ---- a real HTTP client ----


def test_stats_and_stream_carry_the_published_overlay(view: ViewServer) -> None:
    first = blocks_image()
    for frame in range(5):
        view.publish("cam0", first, {**STATS, "frame": frame})
    assert view.encoded_frames == 0  # nobody watches: nothing is encoded

    with urllib.request.urlopen(view.url + "stats.json", timeout=WAIT_S) as reply:
        sources = json.load(reply)["sources"]
    assert sources == [
        {
            "index": 0,
            "name": "cam0",
            "stream": "/stream/0.mjpg",
            "published": 5,
            "viewers": 0,
            "stats": {**STATS, "frame": 4},
        }
    ]
    with urllib.request.urlopen(view.url, timeout=WAIT_S) as reply:
        assert b"/stats.json" in reply.read()
    odd = {"fps": float("inf"), "latency_ms": np.float32(2.5), "class_shares": {"road": np.float64("nan")}}
    view.publish("cam1", first, odd)  # strict JSON all the same: a browser's JSON.parse takes no NaN
    with urllib.request.urlopen(view.url + "stats.json", timeout=WAIT_S) as reply:
        assert json.loads(reply.read(), parse_constant=pytest.fail)["sources"][1]["stats"] == {
            "fps": None,
            "latency_ms": 2.5,
            "class_shares": {"road": None},
        }

    with urllib.request.urlopen(view.url + "stream/0.mjpg", timeout=WAIT_S) as stream:
        assert stream.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=segrtframe"
        shown = decode(read_part(stream)).astype(int)  # the newest frame, published before the viewer came
        assert shown.shape == first.shape
        error = np.abs(shown - first)
        assert error.mean() < 2.0 and error.max() < 48, (error.mean(), error.max())  # chroma blurs block edges
        second = blocks_image(shift=100)
        view.publish("cam0", second, STATS)
        error = np.abs(decode(read_part(stream)).astype(int) - second)
        assert error.mean() < 2.0 and error.max() < 48, (error.mean(), error.max())
    assert view.encoded_frames == 2  # one JPEG per frame that was watched, not per publication


def test_missing_stream_and_path_are_404(view: ViewServer) -> None:
    for path in ("stream/3.mjpg", "nothing"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(view.url + path, timeout=WAIT_S)
        assert caught.value.code == 404


class MarkedViewer(threading.Thread):
    """Reads a stream to its end, noting the marker (red level of the top-left block / 4) of each frame it sees."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.stream = urllib.request.urlopen(url, timeout=WAIT_S)
        self.seen = threading.Condition()
        self.marker = -1
        self.bytes = 0

    def run(self) -> None:
        try:
            while True:
                jpeg = read_part(self.stream)
                with self.seen:
                    self.marker = round(decode(jpeg)[8, 8, 0] / 4)
                    self.bytes += len(jpeg)
                    self.seen.notify_all()
        except (AssertionError, OSError, ValueError):
            pass  # the stream ended

    def wait_for(self, marker: int) -> int:
        """Waits until the newest frame seen is the one marked `marker`; returns the bytes read so far."""
        with self.seen:
            assert self.seen.wait_for(lambda: self.marker == marker, WAIT_S), f"frame {marker} never came"
            return self.bytes


def marked_noise(marker: int, rng: np.random.Generator) -> np.ndarray:
    """240x320 noise (a JPEG of ~100 KB, so a viewer that never reads fills its socket in a few dozen frames)
    with a flat top-left block whose red level says which frame it is."""
    image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    image[:16, :16] = (marker * 4 % 256, 0, 0)
    return image


def test_a_stuck_viewer_and_one_that_leaves_slow_nothing_down(view: ViewServer) -> None:
    rng = np.random.default_rng(0)
    view.publish("cam0", marked_noise(0, rng), STATS)
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # never reads: the server's sends to it block
    stuck.connect(("127.0.0.1", view.port))
    stuck.sendall(b"GET /stream/0.mjpg HTTP/1.1\r\nHost: view\r\n\r\n")
    leaving = urllib.request.urlopen(view.url + "stream/0.mjpg", timeout=WAIT_S)
    read_part(leaving)
    leaving.close()  # disconnects mid-stream: its next send breaks the pipe
    healthy = MarkedViewer(view.url + "stream/0.mjpg")
    healthy.start()

    # More bytes than the kernel can hold for the stuck viewer (its send buffer's ceiling, twice over).
    send_buffer_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    published = threading.Event()
    count = [0]
    failures: list[AssertionError] = []

    def publish_loop() -> None:
        marker = 0
        try:
            while healthy.wait_for(marker) < 2 * send_buffer_max + 2**20:
                marker = (marker + 1) % 64
                view.publish("cam0", marked_noise(marker, rng), STATS)
                count[0] += 1
        except AssertionError as exc:  # the healthy viewer stopped getting frames
            failures.append(exc)
        published.set()

    publisher = threading.Thread(target=publish_loop, daemon=True)
    publisher.start()
    assert published.wait(WAIT_S * 4), "publish was held up by a viewer"
    assert not failures, failures[0]
    # The viewer that left is gone once a send to it failed; the stuck one is still there.
    deadline = time.monotonic() + WAIT_S
    while view.viewers() != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert view.viewers() == 2
    assert view.encoded_frames <= count[0] + 1  # once per frame, with three viewers
    view.close()  # cuts the stuck viewer's blocked send too
    stuck.close()
    healthy.join(WAIT_S)
    assert not healthy.is_alive()
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("view-")]


# ---- a real browser ----


def test_headless_chromium_shows_the_overlay_and_the_figures(view: ViewServer, tmp_path: Path, chromium: str) -> None:
    magenta = np.empty((96, 128, 3), np.uint8)
    magenta[:] = (255, 0, 200)
    stop = threading.Event()

    def publish_loop() -> None:
        frame = 0
        while not stop.is_set():
            view.publish("camera one", magenta.copy(), {**STATS, "frame": frame})
            frame += 1
            stop.wait(0.02)

    publisher = threading.Thread(target=publish_loop, daemon=True)
    publisher.start()
    screenshot = tmp_path / "view.png"
    try:
        browser = subprocess.run(
            [
                chromium,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}",
                f"--screenshot={screenshot}",
                "--dump-dom",
                "--window-size=480,360",
                "--virtual-time-budget=2000",
                view.url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        stop.set()
        publisher.join()
    assert browser.returncode == 0, browser.stderr[-2000:]
    assert "camera one" in browser.stdout
    assert "20.0 FPS | latency 12.5 ms | dropped 3" in browser.stdout
    assert "sky 59.0 % | road 41.0 %" in browser.stdout
    pixels = np.asarray(Image.open(screenshot).convert("RGB")).astype(int)
    near_magenta = (np.abs(pixels - (255, 0, 200)).max(axis=-1) <= 24).sum()
    assert near_magenta >= 0.9 * 96 * 128, f"the overlay is not on the page ({near_magenta} magenta pixels)"
