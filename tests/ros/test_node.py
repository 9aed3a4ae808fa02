"""The segros node on a real ROS 2 graph: a test node publishes images and reads the masks back (equal to segrt's
labels for the same images, headers kept); a fast publisher's extra frames are dropped and counted; malformed
messages are logged once per kind and skipped; bad parameters end the command before it spins; SIGINT and SIGTERM
stop it cleanly."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import segrt
from segrt.segmenter import Segmenter

rclpy = pytest.importorskip("rclpy")  # conftest turns a missing rclpy into a failure under SEGROS_REQUIRED=1
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from segrt.ros.node import SegmentationNode  # noqa: E402

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
HEIGHT, WIDTH = 40, 56


def frames(count: int, seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    base[HEIGHT // 2 :] = (30, 160, 220)
    return [np.clip(base + rng.integers(0, 70, base.shape), 0, 255).astype(np.uint8) for _ in range(count)]


def image_msg(rgb: np.ndarray, stamp_ns: int, encoding: str = "rgb8", pad: int = 0) -> Image:
    pixels = rgb[..., ::-1] if encoding == "bgr8" else rgb
    rows = np.concatenate([pixels.reshape(HEIGHT, -1), np.zeros((HEIGHT, pad), np.uint8)], axis=1)
    msg = Image(height=HEIGHT, width=WIDTH, encoding=encoding, step=rows.shape[1])
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.header.frame_id = f"camera_{stamp_ns % 1000}"
    msg.data = rows.tobytes()
    return msg


def png_msg(rgb: np.ndarray, stamp_ns: int) -> CompressedImage:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format="PNG")
    msg = CompressedImage(format="png", data=buffer.getvalue())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.header.frame_id = "camera_png"
    return msg


def stamp_of(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def pixels(msg: Image) -> np.ndarray:
    channels = {"mono8": 1, "rgb8": 3}[msg.encoding]
    assert msg.step == msg.width * channels
    return np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, channels).squeeze()


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Poll until `condition()`; the timeout only bounds a broken run, it is no claim about speed."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting on the ROS graph"
        time.sleep(0.01)


class Graph:
    """A ROS context of its own with the segros node under test and a test node that feeds and reads it, spun
    by a multi-threaded executor in a background thread."""

    def __init__(self, seg: Segmenter, parameters: dict[str, object]) -> None:
        self.context = rclpy.context.Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        overrides = [Parameter(name, value=value) for name, value in parameters.items()]
        self.node = SegmentationNode(seg=seg, context=self.context, parameter_overrides=overrides)
        self.tester = rclpy.create_node("segros_tester", context=self.context)
        self.received: dict[str, list] = {"labels": [], "color": [], "overlay": [], "class_info": [], "diag": []}
        for output in ("labels", "color", "overlay"):
            self.tester.create_subscription(Image, f"/segros/{output}", self.received[output].append, RELIABLE)
        self.tester.create_subscription(String, "/segros/class_info", self.received["class_info"].append, LATCHED)
        self.tester.create_subscription(DiagnosticArray, "/diagnostics", self.received["diag"].append, 10)
        self.images = self.tester.create_publisher(Image, "/image", RELIABLE)
        self.compressed = self.tester.create_publisher(CompressedImage, "/image/compressed", RELIABLE)
        self.executor = MultiThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.tester)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()
        wait_for(lambda: self.images.get_subscription_count() > 0)

    def close(self) -> None:
        self.node.stop()
        self.executor.shutdown()
        self.node.destroy_node()
        self.tester.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.spinner.join(timeout=10)


@pytest.fixture(scope="module")
def seg(exported):
    with segrt.load(exported("unet")) as loaded:
        yield loaded


@pytest.fixture
def graph(seg) -> Iterator[Callable[..., Graph]]:
    made: list[Graph] = []

    def make(segmenter: Segmenter | None = None, **parameters: object) -> Graph:
        made.append(Graph(segmenter or seg, {"reliable": True, **parameters}))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_masks_equal_segrts_labels_with_the_input_headers(graph, seg):
    g = graph(outputs=["labels", "color", "overlay"], alpha=0.3, compressed=True, ignore_classes=[0])
    wait_for(lambda: g.compressed.get_subscription_count() > 0)
    sent = []
    for index, rgb in enumerate(frames(3)):
        stamp_ns = 1_700_000_000_123_000_000 + index * 33_333_333
        if index == 2:
            msg = png_msg(rgb, stamp_ns)
            g.compressed.publish(msg)
        else:  # rgb8, then bgr8 with padded rows
            msg = image_msg(rgb, stamp_ns, *(("rgb8", 0) if index == 0 else ("bgr8", 4)))
            g.images.publish(msg)
        sent.append((msg, rgb))
        wait_for(lambda n=index + 1: len(g.received["overlay"]) == n)  # one at a time: none dropped
    assert g.node.dropped == 0 and g.node.segmented == 3
    for output in ("labels", "color", "overlay"):
        assert len(g.received[output]) == 3
        for got, (msg, _) in zip(g.received[output], sent, strict=True):
            assert stamp_of(got) == stamp_of(msg) and got.header.frame_id == msg.header.frame_id
    for labels_msg, color_msg, overlay_msg, (_, rgb) in zip(
        g.received["labels"], g.received["color"], g.received["overlay"], sent, strict=True
    ):
        want = seg(rgb)
        assert labels_msg.encoding == "mono8" and color_msg.encoding == overlay_msg.encoding == "rgb8"
        np.testing.assert_array_equal(pixels(labels_msg), want)
        np.testing.assert_array_equal(pixels(color_msg), segrt.colorize(want, seg.palette, ignore=[0]))
        want_overlay = segrt.overlay(rgb, want, 0.3, palette=seg.palette, ignore=[0])
        np.testing.assert_array_equal(pixels(overlay_msg), want_overlay)
    wait_for(lambda: g.received["class_info"])
    info = json.loads(g.received["class_info"][0].data)
    assert info["classes"] == list(seg.classes) and info["palette"][1] == list(seg.palette[1])
    assert info["outputs"]["labels"] == "/segros/labels" and info["ignored"] == [0]


class SlowSegmenter(Segmenter):
    """The real model, 0.5 s slower per call: a publisher at any rate outpaces it (and a busy machine's executor
    still runs the callback more than once during a call)."""

    def __call__(self, images, **options):
        time.sleep(0.5)
        return super().__call__(images, **options)


def test_a_fast_publisher_gets_the_newest_frames_and_the_drops_are_counted(graph, seg):
    slow = SlowSegmenter(seg.backend, seg.card, seg.path)
    g = graph(slow, diagnostics_period=0.1)
    stamps = [1_700_000_100_000_000_000 + index * 1_000_000 for index in range(12)]
    for stamp_ns, rgb in zip(stamps, frames(12), strict=True):
        g.images.publish(image_msg(rgb, stamp_ns))
        time.sleep(0.05)  # 20 Hz against 2 Hz: frames arrive while one is segmented
    wait_for(lambda: g.received["labels"] and stamp_of(g.received["labels"][-1]) == stamps[-1])  # the newest runs
    # what the callback saw was either segmented or replaced by a newer one in the slot (frames the keep-last-1
    # queue replaced before the callback ran never reach the node: a publisher-side count sees those)
    assert g.node.segmented + g.node.dropped == g.node.received <= 12
    assert g.node.dropped >= 1
    got = [stamp_of(msg) for msg in g.received["labels"]]
    assert len(got) == g.node.segmented and got == sorted(got) and set(got) <= set(stamps)

    def reported() -> dict[str, str]:
        return {kv.key: kv.value for kv in g.received["diag"][-1].status[0].values} if g.received["diag"] else {}

    # the run has settled: the next report carries its counts
    wait_for(lambda: (reported().get("dropped"), reported().get("segmented")) == (str(g.node.dropped), str(len(got))))
    assert "received to labels p99 ms" in reported() and "stamp to labels p50 ms" in reported()


def test_malformed_messages_are_logged_once_per_kind_and_skipped(graph, capfd):
    g = graph()
    good, *_ = frames(1)
    bad_encoding = image_msg(good, 1)
    bad_encoding.encoding = "yuv422"
    short = image_msg(good, 2)
    short.data = bytes(100)
    for count, msg in enumerate((bad_encoding, short, bad_encoding, image_msg(good, 3)), start=1):
        g.images.publish(msg)  # one at a time: the node's keep-last-1 queue would keep only the last of a burst
        wait_for(lambda n=count: g.node.segmented + sum(g.node.skipped.values()) == g.node.received == n)
    wait_for(lambda: len(g.received["labels"]) == 1)
    assert stamp_of(g.received["labels"][0]) == 3
    assert g.node.skipped == {"encoding": 2, "short": 1}
    log = capfd.readouterr().err
    assert log.count("skipping a message (encoding)") == 1 and "yuv422" in log
    assert log.count("skipping a message (short)") == 1


def segros(model: str, *ros_args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "segrt.ros.node_cli", model, "--ros-args", "-r", "__node:=segros_cli", *ros_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    ("ros_args", "says"),
    [
        (("-p", "alpha:=1.5"), "-p alpha:=1.5: expected a number from 0"),
        (("-p", "outputs:=[labels,mask]"), "-p outputs:=['labels', 'mask']: expected one or more of"),
        (("-p", "aplha:=0.3"), "unknown parameter 'aplha'"),
        (("-p", "model:=/nonexistent/model.onnx"), "/nonexistent/model.onnx: no such file"),
        (("-p", "alpha"), "--ros-args: Couldn't parse parameter override rule"),
    ],
    ids=["alpha", "outputs", "unknown", "model", "malformed"],
)
def test_a_bad_parameter_is_one_line_and_exit_2_before_the_node_spins(exported, ros_args, says):
    process = segros(str(exported("unet")), *ros_args)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    assert err.strip().count("\n") == 0 and says in err and err.startswith("segros: error: ")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_stop_the_node_cleanly(exported, signum):
    process = segros(str(exported("unet")))
    assert process.stderr is not None
    os.set_blocking(process.stderr.fileno(), True)
    started = process.stderr.readline()  # the node's first log line, written once it spins
    assert "segmenting with" in started, started
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Exception" not in err
    assert "segros: 0 segmented, 0 dropped, 0 skipped" in err and "segros: interrupted" in err
