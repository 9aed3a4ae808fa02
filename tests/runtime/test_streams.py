"""Streams for real on 127.0.0.1: an MJPEG HTTP server and a UDP MPEG-TS sender, through `segrt.open_source`
and segrun (videos out, reconnects, time-outs, batching, Ctrl-C). Needs PyAV (the [video] extra)."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av")

from stream_servers import MjpegServer, SilentServer, UdpTsSender, free_udp_port  # noqa: E402

from segrt.cli import main  # noqa: E402
from segrt.errors import SegError  # noqa: E402
from segrt.stream.slots import Closed, NewestSlot, OrderedQueue  # noqa: E402
from segrt.stream.sources import open_source  # noqa: E402


@pytest.fixture
def served():
    """served(**MjpegServer options) -> a running server, closed after the test."""
    servers = []

    def start(*args, **kwargs) -> MjpegServer:
        servers.append(MjpegServer(*args, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _decode(path):
    with av.open(str(path)) as container:
        return [frame for frame in container.decode(video=0)]


def test_open_source_yields_an_mjpeg_streams_frames_and_says_why_it_ended(served):
    server = served(6)
    frames = []
    with pytest.raises(SegError, match=r"the stream stopped after 6 frame\(s\).*--reconnect N"), \
            open_source(server.url, timeout=5, reconnect=0) as source:  # fmt: skip
        for frame in source:
            frames.append(frame)
    assert frames and all(frame.image.shape == (48, 64, 3) for frame in frames)
    indices = [frame.index for frame in frames]
    assert indices == sorted(indices) and indices[-1] == 5  # the newest wins: the last frame always comes
    assert len(frames) + source.dropped == 6


def test_a_stream_that_stops_is_reconnected_then_ends_and_the_others_go_on(stand_in_load, served, tmp_path, capsys):
    server = served(6, once=True)  # a second connection is refused: the camera went away
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(image)
    out = tmp_path / "out"
    code = main(["m.onnx", server.url, str(image), "-o", str(out), "--save", "overlay,labels", "--reconnect", "1"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert server.connections == 2
    assert "the stream stopped after 6 frame(s)" in err and "did not come back after 1 reconnect(s)" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.overlay.jpg", "a.png", "cam.labels.mkv", "cam.overlay.mp4"]
    overlay, labels = _decode(out / "cam.overlay.mp4"), _decode(out / "cam.labels.mkv")
    segmented = int(err.split(" frame(s) segmented")[0].rsplit("segrun: ", 1)[1]) - 1  # less the image
    assert len(overlay) == len(labels) == segmented >= 1
    assert (overlay[0].width, overlay[0].height) == (64, 48)
    assert labels[0].to_ndarray(format="gray").max() <= 2  # the stand-in's classes, exact
    assert "cam.mjpg: " in err and "frame(s) dropped" in err


def test_a_url_that_does_not_answer_times_out_before_the_model_loads(stand_in_load, tmp_path, capsys):
    silent = SilentServer()
    try:
        code = main(["m.onnx", silent.url, "-o", str(tmp_path / "out"), "--timeout", "0.5"])
    finally:
        silent.close()
    err = capsys.readouterr().err
    assert code == 2 and stand_in_load.loads == 0
    assert f"segrun: error: no input could be segmented: {silent.url}: no answer within 0.5 s" in err
    assert "--timeout" in err and "Traceback" not in err


def test_a_udp_mpegts_stream_is_segmented_into_a_video(stand_in_load, tmp_path, capsys):
    sender = UdpTsSender(free_udp_port())
    try:
        code = main(["m.onnx", sender.url, "-o", str(tmp_path / "out"), "--save", "color", "--max-frames", "4"])
    finally:
        sender.close()
    assert code == 0, capsys.readouterr().err
    [video] = list((tmp_path / "out").iterdir())
    frames = _decode(video)
    assert video.name.endswith(".color.mp4") and len(frames) == 4 and frames[0].height == 48
    times = [frame.time for frame in frames]
    assert times == sorted(times) and times[-1] > times[0]  # the source's timestamps, carried over


def test_a_camera_that_is_not_there_is_one_line(stand_in_load, tmp_path, capsys):
    pytest.importorskip("cv2")
    code = main(["m.onnx", "97", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and stand_in_load.loads == 0
    assert "camera 97: OpenCV cannot open it (no such camera, or it is busy)" in err and "/dev/videoN" in err


def test_a_folder_where_a_video_goes_is_refused_before_the_model_loads(stand_in_load, served, tmp_path, capsys):
    (tmp_path / "out" / "cam.overlay.mp4").mkdir(parents=True)
    code = main(["m.onnx", served(2).url, "-o", str(tmp_path / "out"), "--save", "overlay"])
    err = capsys.readouterr().err
    assert code == 2 and stand_in_load.loads == 0
    assert "cam.overlay.mp4: is a folder, where this output" in err


def test_live_sources_of_one_size_run_as_one_batch(stand_in_load, served, tmp_path, capsys):
    stand_in_load.backend.delay_s = 0.05  # a busy model: both cameras have a new frame at each call
    stand_in_load.backend.limit = None
    urls = [served(None, fps=50).url.replace("cam.mjpg", f"cam{i}.mjpg") for i in range(2)]
    argv = ["m.onnx", *urls, "-o", str(tmp_path / "out"), "--save", "none", "--stats", "--max-frames", "6"]
    assert main(argv) == 0, capsys.readouterr().err
    assert max(shape[0] for shape in stand_in_load.backend.batch_shapes) == 2
    stand_in_load.backend.batch_shapes.clear()
    assert main([*argv[:-5], "-o", str(tmp_path / "one"), "--save", "none", "--max-frames", "3", "--no-batch"]) == 0
    assert {shape[0] for shape in stand_in_load.backend.batch_shapes} == {1}


def test_sigterm_mid_run_leaves_a_playable_video_and_a_whole_csv(exported, served, tmp_path):
    server = served(None, fps=30)
    out = tmp_path / "out"
    argv = [str(exported("unet")), server.url, "-o", str(out), "--save", "overlay", "--stats"]
    process = subprocess.Popen([sys.executable, "-m", "segrt.cli", *argv], stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while sum(line.startswith("[") for line in lines) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 130, "".join(lines)
    reader.join(5)
    frames = _decode(out / "cam.overlay.mp4")  # decodes to its last frame: the container was finished
    with open(out / "stats.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(frames) == len(rows) >= 5
    assert [int(row["frame"]) for row in rows] == sorted(int(row["frame"]) for row in rows)
    assert "segrun: interrupted" in "".join(lines) and "Traceback" not in "".join(lines)


def test_ordered_queue_close_never_blocks_and_a_later_put_is_refused():
    queue: OrderedQueue[int] = OrderedQueue(1)
    queue.put(1)
    queue.close()  # full, and nobody will take: must return at once
    with pytest.raises(Closed):
        queue.put(2, timeout=1)
    assert queue.take() == 1
    with pytest.raises(Closed):
        queue.take()


def test_newest_slot_keeps_the_last_item_and_counts_the_rest():
    slot: NewestSlot[int] = NewestSlot()
    for item in range(5):
        slot.put(item)
    slot.close()
    assert (slot.take(), slot.dropped) == (4, 4)
    with pytest.raises(Closed):
        slot.take()


def test_a_file_without_a_video_stream_is_one_line_naming_what_ffmpeg_found(stand_in_load, tmp_path, capsys):
    song = tmp_path / "song.mkv"
    with av.open(str(song), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    code = main(["m.onnx", str(song), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and f"no input could be segmented: {song}: no video stream in it (FFmpeg finds audio" in err


class _Collecting:
    """What a live view's server receives (the view itself is segrt.view's, tested there)."""

    def __init__(self):
        self.published = []

    def publish(self, name, overlay, stats):
        self.published.append((name, overlay.shape, stats))


def test_a_publish_sink_hands_on_the_overlay_latency_and_class_shares():
    from segrt.stream.frame import Frame
    from segrt.stream.sinks import PublishSink

    server = _Collecting()
    sink = PublishSink(server, "cam0", ["background", "road"], lambda: 3)
    labels = np.zeros((4, 5), np.uint8)
    labels[:1] = 1
    frame = Frame(np.zeros((4, 5, 3), np.uint8), "cam0", 0)
    sink.write(frame, labels, np.zeros((4, 5, 3), np.uint8))
    [(name, shape, stats)] = server.published
    assert (name, shape) == ("cam0", (4, 5, 3)) and stats["class_shares"] == {"background": 0.75, "road": 0.25}
    assert stats["fps"] == 1.0 and stats["latency_ms"] >= 0 and stats["dropped"] == 3 and stats["frame"] == 0
