"""segrun's newer outputs, end to end through its pipeline: `--save confidence` (images and a video), `--view`
(a live page served while a stream is segmented, read by a real HTTP client), and a recorded drive
(`segrun MODEL drive.mcap --topic T`) written back as NAME.segmented.mcap."""

from __future__ import annotations

import csv
import json
import socket
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segrt
from segrt.cli import main

av = pytest.importorskip("av")

from stream_servers import MjpegServer  # noqa: E402


def _write_clip(path: Path, frames: list[np.ndarray]) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "bgr0"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def _scenes(count: int, size=(48, 64)) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 255, (*size, 3), dtype=np.uint8) for _ in range(count)]


def test_save_confidence_writes_the_models_maps_for_images_and_a_video(exported, tmp_path, capsys):
    model = exported("unet-confidence")
    images = _scenes(3)
    for index, image in enumerate(images[:2]):
        Image.fromarray(image).save(tmp_path / f"photo{index}.png")
    _write_clip(tmp_path / "clip.mkv", images)
    out = tmp_path / "out"
    argv = [str(model), str(tmp_path / "photo0.png"), str(tmp_path / "photo1.png"), str(tmp_path / "clip.mkv")]
    assert main([*argv, "-o", str(out), "--save", "labels,confidence", "-q"]) == 0, capsys.readouterr().err
    seg = segrt.load(model, backend="ort-cpu")
    with seg:
        for index, image in enumerate(images[:2]):
            labels, confidence = seg(image, confidence=True)
            assert np.array_equal(np.asarray(Image.open(out / f"photo{index}.confidence.png")), confidence)
            assert np.array_equal(np.asarray(Image.open(out / f"photo{index}.png")), labels)
        with av.open(str(out / "clip.confidence.mkv")) as container:  # FFV1: the maps exactly, frame by frame
            maps = [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]
        assert len(maps) == len(images)
        for image, written in zip(images, maps, strict=True):
            assert np.array_equal(written, seg(image, confidence=True)[1])


def test_save_confidence_of_a_graph_without_the_map_is_one_line_before_any_frame(exported, tmp_path, capsys):
    Image.fromarray(_scenes(1)[0]).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    code = main([str(exported("unet")), str(tmp_path / "photo.png"), "-o", str(out), "--save", "confidence"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--confidence" in err.strip().splitlines()[-1]
    assert not list(out.glob("*.png"))


def test_a_view_port_in_use_is_refused_before_the_model_loads(stand_in_load, tmp_path, capsys):
    Image.fromarray(_scenes(1)[0]).save(tmp_path / "photo.png")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["m.onnx", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"), "--view", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and "--view" in err and str(port) in err
    assert stand_in_load.loads == 0


def test_the_view_serves_each_streams_overlay_while_segrun_runs(exported, tmp_path, capsys):
    server = MjpegServer(None, fps=30)
    with socket.socket() as probe:  # a free port, handed to --view
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [str(exported("unet")), server.url, "-o", str(tmp_path / "out"), "--save", "none", "-q"]
    codes: list[int] = []
    run = threading.Thread(target=lambda: codes.append(main([*argv, "--view", str(port), "--max-frames", "150"])))
    run.start()
    try:
        stats: dict = {}
        deadline = time.monotonic() + 60
        while not stats.get("sources") and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats.json", timeout=5) as reply:
                    stats = json.load(reply)
            except OSError:
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stream/0.mjpg", timeout=10) as reply:
            part = _first_jpeg(reply)
    finally:
        run.join(120)
        server.close()
    assert codes == [0], capsys.readouterr().err
    assert server.url in json.dumps(stats)
    assert Image.open(part).size == (64, 48)  # the stream's frames, overlaid


def _first_jpeg(reply) -> object:
    import io

    data = b""
    while b"\xff\xd9" not in data[data.find(b"\xff\xd8") + 2 :] or b"\xff\xd8" not in data:
        chunk = reply.read(4096)
        assert chunk, "the MJPEG stream ended before a whole JPEG"
        data += chunk
    start = data.find(b"\xff\xd8")
    return io.BytesIO(data[start : data.find(b"\xff\xd9", start) + 2])


# --- a recorded drive ---


def test_a_bag_goes_through_segruns_pipeline_into_its_segmented_copy(exported, tmp_path, capsys):
    pytest.importorskip("rosbags.highlevel", reason="rosbags is in segexport[ros] and [dev]")
    from rosbags.highlevel import AnyReader
    from test_ros_bag import TS, write_drive

    drive = tmp_path / "drive"  # a rosbag2 folder (metadata.yaml and drive.mcap)
    expected = write_drive(drive)
    out = tmp_path / "out"
    topics = ["/cam/rgb", "/cam/jpeg/compressed"]
    argv = [str(exported("unet")), str(drive), *(f"--topic={t}" for t in topics), "-o", str(out), "--stats", "-q"]
    assert main(argv) == 0, capsys.readouterr().err
    seg = segrt.load(exported("unet"), backend="ort-cpu")
    with seg, AnyReader([out / "drive.segmented.mcap"], default_typestore=TS) as reader:
        by_topic: dict[str, list] = {}
        for connection, log_ns, raw in reader.messages():
            by_topic.setdefault(connection.topic, []).append((log_ns, reader.deserialize(raw, connection.msgtype)))
        assert len(by_topic["/status"]) == 4 and len(by_topic["/cam/bgr"]) == 2  # every input message kept
        for topic in topics:
            masks = by_topic[f"{topic}/labels"]
            assert len(masks) == len(expected[topic])
            for (log_ns, message), (want_log, stamp_ns, frame_id, rgb) in zip(masks, expected[topic], strict=True):
                assert log_ns == want_log and message.header.frame_id == frame_id
                assert message.header.stamp.sec * 10**9 + message.header.stamp.nanosec == stamp_ns
                labels = np.asarray(message.data).reshape(message.height, message.width)
                assert np.array_equal(labels, seg(rgb))
    with open(out / "stats.csv", newline="") as file:
        assert len(list(csv.DictReader(file))) == sum(len(expected[t]) for t in topics)


def test_a_bag_without_topic_lists_its_image_topics_before_the_model_loads(stand_in_load, tmp_path, capsys):
    pytest.importorskip("rosbags.highlevel", reason="rosbags is in segexport[ros] and [dev]")
    from test_ros_bag import write_drive

    write_drive(tmp_path / "drive")
    bag = str(tmp_path / "drive" / "drive.mcap")  # the MCAP file alone
    assert main(["m.onnx", bag, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--topic" in err[0] and "/cam/rgb" in err[0] and "/status" not in err[0]
    assert main(["m.onnx", bag, "--topic", "/status", "-o", str(tmp_path / "o2")]) == 2
    assert "not images" in capsys.readouterr().err
    Image.fromarray(_scenes(1)[0]).save(tmp_path / "photo.png")
    assert main(["m.onnx", str(tmp_path / "photo.png"), "--topic", "/cam/rgb", "-o", str(tmp_path / "o3")]) == 2
    assert "no input is a bag" in capsys.readouterr().err
    assert stand_in_load.loads == 0


def test_a_long_run_keeps_its_last_frames_times_and_counts_every_frame(stand_in_load, monkeypatch, tmp_path, capsys):
    from segrt.stream import pipeline

    monkeypatch.setattr(pipeline, "KEPT_TIMES", 3)  # a camera's hours, in five frames
    _write_clip(tmp_path / "clip.mkv", _scenes(5))
    assert main(["m.onnx", str(tmp_path / "clip.mkv"), "-o", str(tmp_path / "out"), "--save", "none", "-q"]) == 0
    assert "5 frame(s) segmented" in capsys.readouterr().err
    result = pipeline.PipelineResult()
    result.infer_ms.extend(range(5))
    assert list(result.infer_ms) == [2, 3, 4]
