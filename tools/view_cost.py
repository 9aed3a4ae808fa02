"""What the live view costs a publishing loop: frames/s and CPU with no view, a view nobody watches, and N viewers.

The loop does the host work segrun does per frame besides inference (blend a label map over the image with
`segrt.overlay`, 240x320 by default) and publishes the overlay; each viewer is a separate process reading
/stream/0.mjpg over 127.0.0.1 as fast as it can, as a browser would. Two ways to run the loop:
- unpaced: as fast as it goes, the worst case for the view (the encoder has a new frame whenever it is free);
- paced at --rate FPS (a camera or the model's rate): whether the loop keeps pace, and the CPU the view adds.
"frame work" is one iteration's blend and publish (the sleep of a paced loop left out).
The JPEG encoder is a thread of the publishing process, so its CPU counts in the process's CPU time.

Run: python tools/view_cost.py [--frames 600] [--rate 30] [--viewers 3] [--size 240x320]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import segrt
from segrt.view import ViewServer

SAMPLE = Path(__file__).resolve().parents[1] / "export" / "weights" / "unet_shapes_sample.jpg"
VIEWER_CODE = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=60) as stream:
    while stream.read(65536):
        pass
"""


def frames_to_show(height: int, width: int, count: int = 8) -> tuple[np.ndarray, list[np.ndarray]]:
    """The bundled sample photo at the size asked, and `count` label maps of moving shapes to blend over it."""
    from PIL import Image

    image = np.asarray(Image.open(SAMPLE).convert("RGB").resize((width, height)))
    rows, cols = np.mgrid[0:height, 0:width]
    labels = []
    for step in range(count):
        label = np.zeros((height, width), np.uint8)
        label[((rows - height / 2) ** 2 + (cols - step * width / count) ** 2) < (height / 4) ** 2] = 1
        label[(rows > height * 0.7) & (cols % 64 < 32)] = 2
        labels.append(label)
    return image, labels


def run_loop(view: ViewServer | None, image: np.ndarray, labels: list[np.ndarray], frames: int, rate: float) -> dict:
    """Blend and publish `frames` overlays (at `rate` FPS, or unpaced at 0); frames/s, CPU and publish() times."""
    publish_us, frame_ms = [], []
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    encoded_before = view.encoded_frames if view else 0
    encode_cpu_before = view.encode_cpu_s if view else 0.0
    next_due = wall_before
    late = 0
    for index in range(frames):
        if rate:
            next_due += 1.0 / rate
        frame_started = time.perf_counter_ns()
        overlay = segrt.overlay(image, labels[index % len(labels)])
        if view is not None:
            started = time.perf_counter_ns()
            view.publish("cam0", overlay, {"fps": rate, "frame": index, "class_shares": {"a": 0.5}})
            publish_us.append((time.perf_counter_ns() - started) / 1000)
        frame_ms.append((time.perf_counter_ns() - frame_started) / 1e6)
        if rate:
            wait = next_due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            else:
                late += 1
    wall = time.perf_counter() - wall_before
    cpu = time.process_time() - cpu_before
    encoded = (view.encoded_frames - encoded_before) if view else 0
    encode_cpu = (view.encode_cpu_s - encode_cpu_before) if view else 0.0
    return {
        "fps": frames / wall,
        "cpu_ms_per_frame": 1000 * cpu / frames,
        "late": late,
        "encoded": encoded,
        "encode_ms": 1000 * encode_cpu / encoded if encoded else 0.0,
        "frame_p50_ms": float(np.percentile(frame_ms, 50)),
        "frame_p99_ms": float(np.percentile(frame_ms, 99)),
        "publish_p50_us": float(np.percentile(publish_us, 50)) if publish_us else 0.0,
        "publish_p99_us": float(np.percentile(publish_us, 99)) if publish_us else 0.0,
    }


def measure(viewers: int | None, image: np.ndarray, labels: list[np.ndarray], frames: int, rate: float) -> dict:
    """One row: no view at all (`viewers` None), or a view with that many viewer processes reading it."""
    if viewers is None:
        return run_loop(None, image, labels, frames, rate)
    with ViewServer("127.0.0.1:0") as view:
        view.start()
        view.publish("cam0", segrt.overlay(image, labels[0]), {})  # the source exists before viewers ask for it
        readers = [
            subprocess.Popen([sys.executable, "-c", VIEWER_CODE, view.url + "stream/0.mjpg"]) for _ in range(viewers)
        ]
        try:
            while view.viewers() < viewers:
                time.sleep(0.05)
            return run_loop(view, image, labels, frames, rate)
        finally:
            view.close()
            for reader in readers:
                reader.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--rate", type=float, default=30.0, help="the paced loop's FPS")
    parser.add_argument("--viewers", type=int, default=3)
    parser.add_argument("--size", default="240x320", help="HEIGHTxWIDTH of the overlays")
    args = parser.parse_args()
    height, width = (int(side) for side in args.size.split("x"))
    image, labels = frames_to_show(height, width)
    python = sys.version.split()[0]
    print(f"# view cost: {args.frames} overlays of {height}x{width}, {os.cpu_count()} CPUs, Python {python}")
    print(
        "| loop | view | frames/s | frame work p50 / p99 ms | CPU ms/frame (process) | late frames | JPEGs made "
        "| encode CPU ms/JPEG | publish() p50 / p99 us |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for rate in (0.0, args.rate):
        for viewers in (None, 0, args.viewers):
            row = measure(viewers, image, labels, args.frames, rate)
            loop = f"paced {rate:g} FPS" if rate else "unpaced"
            view = "none" if viewers is None else f"{viewers} viewers"
            print(
                f"| {loop} | {view} | {row['fps']:.1f} | {row['frame_p50_ms']:.2f} / {row['frame_p99_ms']:.2f} "
                f"| {row['cpu_ms_per_frame']:.2f} | {row['late']} "
                f"| {row['encoded']} | {row['encode_ms']:.2f} "
                f"| {row['publish_p50_us']:.1f} / {row['publish_p99_us']:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
