"""The ROS 2 segmentation node: `image` (and `image/compressed`) in; `~/labels` (mono8 class ids), `~/color`
(rgb8) and `~/overlay` out, each with its input's header unchanged; the class names and palette once on the latched
`~/class_info`; latency and drops on `/diagnostics`.

The subscription callback only puts the message into a `NewestSlot`; the topic is a live source of segrun's
frame pipeline (segrt.stream.pipeline, run by one worker thread), which decodes, segments and publishes through a
sink, so the executor never waits on the model, and while a frame is segmented a newer one replaces the waiting
one (counted as a drop). Imported only once rclpy is known to be there (`segrt.ros.node_cli`); uses only rclpy
APIs that ROS 2 Humble has.
"""

from __future__ import annotations

import array
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from segrt.errors import first_line
from segrt.image import colorize
from segrt.ros.image_msg import BadImageMessage, ImageFields, labels_fields, message_to_rgb, rgb_fields
from segrt.ros.node_settings import NodeSettings, settings_from_parameters
from segrt.segmenter import Segmenter
from segrt.stream.frame import Frame
from segrt.stream.paint import Painter
from segrt.stream.pipeline import Pipeline, PipelineResult
from segrt.stream.slots import Closed, NewestSlot
from segrt.stream.sources import FrameSource

WINDOW = 600  # latency samples /diagnostics summarises (20 s at 30 Hz)


class SegmentationNode(Node):
    """Segments every image it can keep up with; see the module docstring for its topics.

    `cli_values` are defaults from the command line (segros MODEL --backend ...) that `--ros-args -p` overrides.
    `seg` is a Segmenter already loaded (tests); otherwise the `model` parameter is loaded here, after the
    parameters are checked and before any topic is created. A bad parameter or model raises SegError.
    """

    def __init__(
        self,
        cli_values: Mapping[str, object] | None = None,
        *,
        seg: Segmenter | None = None,
        name: str = "segros",
        **node_options: Any,
    ) -> None:
        super().__init__(name, automatically_declare_parameters_from_overrides=True, **node_options)
        try:
            given = {key: getattr(p, "value", p) for key, p in self.get_parameters_by_prefix("").items()}
            given = {key: value for key, value in given.items() if not key.startswith("qos_overrides.")}
            values = {key: value for key, value in (cli_values or {}).items() if value is not None}
            values.update({key: value for key, value in given.items() if value is not None})
            if seg is not None:
                values.setdefault("model", seg.where)
            self.settings: NodeSettings = settings_from_parameters(values)
            if seg is None:
                import segrt

                seg = segrt.load(self.settings.model, self.settings.backend, precision=self.settings.precision)
            self.seg = seg
            self._make_topics()
        except BaseException:
            self.destroy_node()
            raise
        self.received = 0
        self.segmented = 0
        self.skipped: Counter[str] = Counter()
        self.stamp_latency_ms: deque[float] = deque(maxlen=WINDOW)  # header stamp -> labels published
        self.node_latency_ms: deque[float] = deque(maxlen=WINDOW)  # message received -> labels published
        self.segment_ms: deque[float] = deque(maxlen=WINDOW)  # segrt's own call
        self.node_work_ms: deque[float] = deque(maxlen=WINDOW)  # decode, colour, publish: the node's own cost
        self._slot: NewestSlot[tuple[Any, int]] = NewestSlot()
        self._source = FrameSource(self._frames(), name="image", out_stem=Path("image"), live=True, kind="ros",
                                   one_size=False)  # fmt: skip
        settings = self.settings
        painter = Painter(self.seg.palette, settings.alpha, settings.ignore_classes)
        self._pipeline = Pipeline(self.seg, lambda source: [_Publisher(self)], painter, live=[self._source])
        self._pipeline.result = _NodeResult(self)
        self._worker = threading.Thread(target=self._pipeline.run, name="segros-worker", daemon=True)
        self._worker.start()
        self._publish_class_info()

    @property
    def dropped(self) -> int:
        """Messages replaced by a newer one before they were segmented (in the callback's slot, or decoded in the
        pipeline's)."""
        return self._slot.dropped + self._source.dropped

    def _make_topics(self) -> None:
        reliability = ReliabilityPolicy.RELIABLE if self.settings.reliable else ReliabilityPolicy.BEST_EFFORT
        incoming = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=reliability)
        # reliable, keep last 1: best-effort and reliable subscribers both connect, and a slow one never blocks us
        outgoing = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self.image_subscription = self.create_subscription(Image, "image", self._on_message, incoming)
        if self.settings.compressed:
            self.compressed_subscription = self.create_subscription(
                CompressedImage, "image/compressed", self._on_message, incoming
            )
        self.publishers_by_output = {
            output: self.create_publisher(Image, f"~/{output}", outgoing) for output in self.settings.outputs
        }
        self.class_info_publisher = self.create_publisher(String, "~/class_info", latched)
        self.diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self.settings.diagnostics_period, self._publish_diagnostics)

    def _publish_class_info(self) -> None:
        """The model's classes and palette as JSON, once; late subscribers get it too (transient local)."""
        card = self.seg.card
        info = {
            "model": card.model,
            "classes": list(card.classes),
            "palette": [list(colour) for colour in card.palette],
            "ignored": list(self.settings.ignore_classes),
            "outputs": {output: self.publishers_by_output[output].topic_name for output in self.settings.outputs},
        }
        self.class_info_publisher.publish(String(data=json.dumps(info)))

    def _on_message(self, msg: Any) -> None:
        """The executor's only work per image: hand it to the worker (the newest wins)."""
        self.received += 1
        self._slot.put((msg, time.monotonic_ns()))

    def _frames(self) -> Iterator[Frame]:
        """The pipeline's live source: each message the callback left, decoded; one that cannot be is skipped."""
        index = 0
        while True:
            try:
                msg, received_ns = self._slot.take()
            except Closed:
                return
            started = time.monotonic_ns()
            try:
                image = message_to_rgb(msg)
            except BadImageMessage as exc:
                self._skip(exc.kind, str(exc))
                continue
            except Exception as exc:  # the node keeps running; the kind is logged once and counted
                self._skip("internal", first_line(exc, with_type=True))
                continue
            stamp = msg.header.stamp
            decode_ms = (time.monotonic_ns() - started) / 1e6
            meta = (msg.header, decode_ms)
            yield Frame(image, "image", index, stamp.sec + stamp.nanosec * 1e-9, read_ns=received_ns, meta=meta)
            index += 1

    def _segmented(self, frame: Frame, labels: np.ndarray, overlay_rgb: np.ndarray | None) -> None:
        """Publish one frame's outputs with its header (the pipeline's writer stage calls it)."""
        started = time.monotonic_ns()
        header, decode_ms = frame.meta
        outputs = self.settings.outputs
        if self._pipeline.result.infer_ms:
            self.segment_ms.append(self._pipeline.result.infer_ms[-1])
        # labels first: the stamp-to-labels latency is what a consumer of the class ids waits for
        if "labels" in outputs:
            self._publish("labels", header, labels_fields(labels))
        self._record_latency(header, frame.read_ns)
        if "color" in outputs:
            colours = colorize(labels, self.seg.palette, ignore=self.settings.ignore_classes)
            self._publish("color", header, rgb_fields(colours))
        if overlay_rgb is not None:
            self._publish("overlay", header, rgb_fields(overlay_rgb))
        self.node_work_ms.append(decode_ms + (time.monotonic_ns() - started) / 1e6)
        self.segmented += 1

    def _publish(self, output: str, header: Any, fields: ImageFields) -> None:
        message = Image()
        message.header = header  # stamp and frame_id unchanged: the mask lines up with its image
        message.height, message.width = fields.height, fields.width
        message.encoding, message.is_bigendian, message.step = fields.encoding, fields.is_bigendian, fields.step
        data = array.array("B")
        data.frombytes(fields.data)  # one copy; an array.array is the generated setter's fast path (no per-item check)
        message.data = data
        self.publishers_by_output[output].publish(message)

    def _record_latency(self, header: Any, received_ns: int) -> None:
        self.node_latency_ms.append((time.monotonic_ns() - received_ns) / 1e6)
        stamp = Time.from_msg(header.stamp, clock_type=self.get_clock().clock_type)
        if stamp.nanoseconds:  # a publisher that leaves the stamp at 0 has no capture time to measure from
            self.stamp_latency_ms.append((self.get_clock().now() - stamp).nanoseconds / 1e6)

    def _skip(self, kind: str, problem: str) -> None:
        if not self.skipped[kind]:
            self.get_logger().warning(f"skipping a message ({kind}): {problem}; later ones of this kind are counted")
        self.skipped[kind] += 1

    def diagnostic_values(self) -> dict[str, str]:
        """What /diagnostics reports: counts since the start, latencies (ms) over the last WINDOW frames."""
        values = {
            "received": str(self.received),
            "segmented": str(self.segmented),
            "dropped": str(self.dropped),
            "skipped": str(sum(self.skipped.values())),
        }
        values.update({f"skipped {kind}": str(count) for kind, count in sorted(self.skipped.items())})
        for label, samples in (
            ("stamp to labels", self.stamp_latency_ms),
            ("received to labels", self.node_latency_ms),
            ("segment call", self.segment_ms),
            ("node work", self.node_work_ms),
        ):
            if samples:
                p50, p99 = np.percentile(np.asarray(samples), [50, 99])
                values[f"{label} p50 ms"], values[f"{label} p99 ms"] = f"{p50:.2f}", f"{p99:.2f}"
        return values

    def _publish_diagnostics(self) -> None:
        values = self.diagnostic_values()
        status = DiagnosticStatus()
        status.level = DiagnosticStatus.WARN if self.skipped else DiagnosticStatus.OK
        status.name = f"{self.get_fully_qualified_name()}: segmentation"
        status.hardware_id = f"{self.seg.backend.name} {self.seg.backend.device}"
        status.message = f"{self.segmented} segmented, {self.dropped} dropped, {values['skipped']} skipped" + (
            f"; stamp to labels p50 {values['stamp to labels p50 ms']} ms" if self.stamp_latency_ms else ""
        )
        status.values = [KeyValue(key=key, value=value) for key, value in values.items()]
        array_msg = DiagnosticArray()
        array_msg.header.stamp = self.get_clock().now().to_msg()
        array_msg.status = [status]
        self.diagnostics_publisher.publish(array_msg)

    def stop(self) -> None:
        """Let the worker finish the frame it holds, then end it (before the node is destroyed)."""
        self._slot.close()
        self._worker.join(timeout=10)


class _Publisher:
    """The node's sink in the pipeline: each segmented frame's topics, published by the node."""

    files = 0

    def __init__(self, node: SegmentationNode) -> None:
        self.node = node
        self.needs_overlay = "overlay" in node.settings.outputs

    def write(self, frame: Frame, labels: np.ndarray, overlay: np.ndarray | None) -> None:
        self.node._segmented(frame, labels, overlay)

    def close(self) -> None:
        pass


class _NodeResult(PipelineResult):
    """The pipeline's record for the node: a frame the model refused is counted and logged once per kind, not
    kept; its call times are kept for the last WINDOW frames (what /diagnostics reports on)."""

    def __init__(self, node: SegmentationNode) -> None:
        super().__init__()
        self.node = node
        self.infer_ms = deque(maxlen=WINDOW)  # type: ignore[assignment]
        self.written_ms = deque(maxlen=WINDOW)  # type: ignore[assignment]

    def fail(self, message: str, *, missing: bool = False) -> None:
        self.node._skip("model", message)
