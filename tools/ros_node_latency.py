"""Measure the segros node at camera rate: publish 640x480 rgb8 images at 30 Hz (each stamped when published) to a
segros process, and report image-stamp-to-labels latency (as the node measures it when it publishes, and as a
subscriber in another process receives it), the drop rate, and segrt's own call time on the same image beside it:
the node's overhead in ms.

    .venv-ros/bin/python tools/ros_node_latency.py build/unet_shapes --rate 30 --seconds 20 \\
        --out benchmarks/results/ros-node/cpu-2core.json

Needs rclpy and the message packages (the ROS 2 pip wheels, or a sourced ROS 2); runs on a domain of its own.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import platform
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--rate", type=float, default=30.0, help="images per second (default 30)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds after a 3 s warm-up")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--backend", default="", help="segros --backend (default: the best installed)")
    parser.add_argument(
        "--reliable", action="store_true", help="reliable QoS both ways (default: sensor data, best effort)"
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    call_ms = segrt_call_ms(args.model, args.backend, image)
    backend = ["--backend", args.backend] if args.backend else []
    ros_args = ["--ros-args", "-r", "image:=/bench/image", "-p", "diagnostics_period:=0.5"]
    ros_args += ["-p", "reliable:=true"] if args.reliable else []
    node = subprocess.Popen(
        [sys.executable, "-m", "segrt.ros.node_cli", args.model, *backend, *ros_args],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        results = publish_and_measure(image, args.rate, args.seconds, node, args.reliable)
    finally:
        node.send_signal(2)
        node.wait(timeout=30)
    results.update(
        {
            "model": args.model,
            "image": f"{width}x{height} rgb8",
            "rate_hz": args.rate,
            "qos": "reliable, keep last 1" if args.reliable else "sensor data (best effort)",
            "seconds": args.seconds,
            "segrt_call_ms_p50_outside_the_node": float(np.percentile(call_ms, 50)),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        }
    )
    if "node work p50 ms" in results["node"]:  # decode, colour, publish per frame, the model's call left out
        results["node_overhead_ms"] = {q: float(results["node"][f"node work {q} ms"]) for q in ("p50", "p99")}
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def segrt_call_ms(model: str, backend: str, image: np.ndarray, calls: int = 60) -> list[float]:
    """segrt's own call on the benchmark image, in this process, before the node starts (they share the CPUs)."""
    import segrt

    with segrt.load(model, backend or None) as seg:
        for _ in range(5):
            seg(image)
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            seg(image)
            times.append((time.perf_counter() - started) * 1e3)
    return times


def publish_and_measure(image: np.ndarray, rate: float, seconds: float, node: subprocess.Popen, reliable: bool) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    bench = rclpy.create_node("segros_bench")
    received: dict[int, float] = {}  # stamp (ns) -> labels received, ROS time (ns)
    diagnostics: list[dict[str, str]] = []

    def on_labels(msg: Image) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        received[stamp] = bench.get_clock().now().nanoseconds

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if "segros" in status.name:
                diagnostics.append({kv.key: kv.value for kv in status.values})

    reliable_10 = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    reliable_1 = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    bench.create_subscription(Image, "/segros/labels", on_labels, reliable_10)
    bench.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    publisher = bench.create_publisher(Image, "/bench/image", reliable_1 if reliable else qos_profile_sensor_data)
    executor = SingleThreadedExecutor()
    executor.add_node(bench)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    template = Image(height=image.shape[0], width=image.shape[1], encoding="rgb8", step=image.shape[1] * 3)
    template.header.frame_id = "camera"
    template.data = array.array("B", image.tobytes())
    deadline = time.monotonic() + 60
    while publisher.get_subscription_count() == 0:
        if node.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"segros did not come up: {node.stderr.read() if node.stderr else ''}")
        time.sleep(0.05)

    def publish_for(duration: float) -> list[int]:
        stamps = []
        period = 1.0 / rate
        start = time.monotonic()
        for index in range(int(duration * rate)):
            time.sleep(max(0.0, start + index * period - time.monotonic()))  # on schedule, not drifting
            template.header.stamp = bench.get_clock().now().to_msg()
            stamps.append(template.header.stamp.sec * 10**9 + template.header.stamp.nanosec)
            publisher.publish(template)
        return stamps

    publish_for(3.0)  # warm-up: the session's first runs, discovery settling
    time.sleep(1.0)
    received.clear()
    first_report = len(diagnostics)
    stamps = publish_for(seconds)
    time.sleep(2.0)
    got = [(received[s] - s) / 1e6 for s in stamps if s in received]
    executor.shutdown()
    bench.destroy_node()
    rclpy.try_shutdown()
    node_report = diagnostics[-1] if len(diagnostics) > first_report else {}
    return {
        "published": len(stamps),
        "labels_received": len(got),
        "drop_rate": 1 - len(got) / len(stamps),
        "stamp_to_labels_received_ms": {
            "p50": float(np.percentile(got, 50)),
            "p99": float(np.percentile(got, 99)),
        }
        if got
        else {},
        "node": node_report,  # the node's /diagnostics: its last WINDOW frames, warm-up included only if few
    }


if __name__ == "__main__":
    sys.exit(main())
