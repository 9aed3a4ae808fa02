"""segbench's stream case: a clip through segrun's pipeline beside the serial loop, and its report table."""

from __future__ import annotations

import numpy as np
import pytest

from segbench.measure.stream import measure_stream
from segbench.report.stream import stream_lines

av = pytest.importorskip("av")


def test_the_stream_case_writes_every_frame_both_ways_and_reports_them(exported, tmp_path):
    video = tmp_path / "clip.avi"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        for index in range(8):
            image = np.full((48, 64, 3), index * 30, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    result = measure_stream(exported("unet"), video)
    assert result["frames"] == 8
    for way in ("serial", "pipeline"):
        figures = result[way]
        assert figures["fps"] > 0 and 0 < figures["written_p50_ms"] <= figures["written_p99_ms"]
        assert figures["vs_model"] == pytest.approx(figures["fps"] / result["model"]["fps"])
    case = {"status": "ok", "label": "unet", "pipeline": "ort-cpu fp32 fused", "stream": result}
    lines = stream_lines({"cases": [case]})
    assert lines[0] == "## Streams: segrun's pipeline beside the serial loop"
    assert any(line.startswith("| unet | ort-cpu fp32 fused |") for line in lines)
