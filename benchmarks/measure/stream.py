"""A clip through segrun's pipeline, beside the serial loop: how much of the model's own rate survives once
frames are decoded, coloured and encoded to a video.

Both write the overlay as an H.264 video (segrun --save overlay). The serial loop decodes, segments, colours and
encodes one frame after another; the pipeline (segrt.stream.pipeline) overlaps the three stages. Figures:
frames/s over the whole clip, capture-to-written latency per frame (decoded -> its overlay encoded), and the
model's own rate (1 / p50 of the model call alone, on the decoded frames) that the two are held against.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from segrt.timing import LatencyStats

WORDS = (
    "overlay written as an H.264 video; frames/s over the whole clip; capture to written = a frame decoded -> its "
    "overlay encoded; model rate = 1 / p50 of the model call alone on the same frames"
)


def measure_stream(file: str | Path, video: str | Path, *, backend: str | None = None,
                   threads: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Model alone, serial loop and pipeline over `video` with the model `file`; see the module's words."""
    import segrt
    from segrt.stream.paint import Painter
    from segrt.stream.sources import open_source

    seg = segrt.load(file, backend=backend, threads=threads, spin=False)  # as segrun loads it
    with seg, tempfile.TemporaryDirectory(prefix="segbench-stream-") as tmp:
        painter = Painter(seg.palette)
        with open_source(str(video)) as source:
            frames = [frame.image for frame in source]
        seg(frames[0])  # warm-up
        model_ms = []
        for image in frames:
            began = time.perf_counter_ns()
            seg(image)
            model_ms.append((time.perf_counter_ns() - began) / 1e6)
        model = LatencyStats.from_samples(model_ms)
        serial = _serial(seg, painter, video, Path(tmp) / "serial.overlay.mp4")
        piped = _pipeline(seg, painter, video, Path(tmp))
    model_fps = 1000 / model.p50
    return {
        "words": WORDS,
        "frames": len(frames),
        "model": {"p50_ms": model.p50, "fps": model_fps},
        "serial": {**serial, "vs_model": serial["fps"] / model_fps},
        "pipeline": {**piped, "vs_model": piped["fps"] / model_fps},
    }


def _figures(frames: int, wall_s: float, written_ms: list[float]) -> dict[str, float]:
    return {"fps": frames / wall_s, "written_p50_ms": float(np.percentile(written_ms, 50)),
            "written_p99_ms": float(np.percentile(written_ms, 99))}  # fmt: skip


def _serial(seg: Any, painter: Any, video: str | Path, out: Path) -> dict[str, float]:
    from segrt.stream.sources import open_source
    from segrt.stream.video_sink import VideoSink

    with open_source(str(video)) as source:
        sink = VideoSink(out, "overlay", source.rate, painter)
        written_ms = []
        began = time.perf_counter()
        for frame in source:
            labels = seg(frame.image)
            sink.write(frame, labels, painter.overlay(frame.image, labels))
            written_ms.append((time.monotonic_ns() - frame.read_ns) / 1e6)
        sink.close()
        wall = time.perf_counter() - began
    return _figures(len(written_ms), wall, written_ms)


def _pipeline(seg: Any, painter: Any, video: str | Path, out: Path) -> dict[str, float]:
    from segrt.stream.pipeline import FileInput, Pipeline
    from segrt.stream.sources import open_source
    from segrt.stream.video_sink import VideoSink

    def make_sinks(source: Any) -> list[Any]:
        return [VideoSink(out / "pipeline.overlay.mp4", "overlay", source.rate, painter)]

    pipeline = Pipeline(seg, make_sinks, painter, files=[FileInput(str(video), lambda: open_source(str(video)))])
    began = time.perf_counter()
    result = pipeline.run()
    wall = time.perf_counter() - began
    if result.failures:
        raise RuntimeError(f"the stream pipeline failed: {result.failures[0]}")
    return _figures(result.frames, wall, result.written_ms)
