"""Recorded drives: a rosbag2 made here with `rosbags` (raw rgb8 and bgr8 images, JPEG CompressedImages, a topic
that is not images), segmented into NAME.segmented.mcap and read back: every message kept, the masks equal segrt's
labels for the same images, headers and log times unchanged; the bad bags and topics refused in one line."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pytest

import segrt
from segrt.cli import main as segrun_main
from segrt.errors import SegError
from segrt.ros.bag_run import segment_bag
from segrt.ros.bag_source import BagImages
from segrt.stream.names import is_bag

rosbags_highlevel = pytest.importorskip("rosbags.highlevel", reason="rosbags is in segexport[ros] and [dev]")
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.rosbag2.storage_mcap import McapReader  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

TS = get_typestore(Stores.ROS2_HUMBLE)
RAW, COMPRESSED = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
TOPICS = ["/cam/rgb", "/cam/bgr", "/cam/jpeg/compressed"]
HEIGHT, WIDTH = 36, 48


def _header(stamp_ns: int, frame_id: str):
    stamp = TS.types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return TS.types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def _image_msg(rgb: np.ndarray, encoding: str, header, *, step: int | None = None, data: np.ndarray | None = None):
    pixels = rgb[..., ::-1] if encoding == "bgr8" else rgb
    flat = np.ascontiguousarray(pixels).reshape(-1) if data is None else data
    return TS.types[RAW](
        header=header,
        height=rgb.shape[0],
        width=rgb.shape[1],
        encoding=encoding,
        is_bigendian=0,
        step=rgb.shape[1] * 3 if step is None else step,
        data=flat,
    )


def _jpeg_msg(rgb: np.ndarray, header) -> tuple[object, np.ndarray]:
    """The message, and the RGB pixels a decoder gets back from it (JPEG is lossy)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
    data = np.frombuffer(buffer.getvalue(), np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return TS.types[COMPRESSED](header=header, format="jpeg", data=data), decoded


def _frames(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    base[:, : WIDTH // 2] = (200, 40, 40)  # halves of different colour give the model something to tell apart
    return [np.clip(base.astype(int) + rng.integers(0, 60, base.shape), 0, 255).astype(np.uint8) for _ in range(count)]


def write_drive(
    path: Path, storage: StoragePlugin = StoragePlugin.MCAP, extra: list | None = None, status_bytes: int = 0
) -> dict:
    """A drive of 3 rgb8, 2 bgr8 and 2 JPEG frames and 4 String messages, interleaved at distinct log times; its
    header stamps are not its log times; `status_bytes` pads the Strings (MCAP chunks are 1 MiB). Returns what a
    test checks against: topic -> [(log_ns, stamp_ns, frame_id, rgb)]."""
    expected: dict[str, list] = {topic: [] for topic in TOPICS}
    writer = Writer(path, version=9, storage_plugin=storage)
    writer.open()
    conns = {
        "/cam/rgb": writer.add_connection("/cam/rgb", RAW, typestore=TS),
        "/cam/bgr": writer.add_connection("/cam/bgr", RAW, typestore=TS),
        "/cam/jpeg/compressed": writer.add_connection("/cam/jpeg/compressed", COMPRESSED, typestore=TS),
        "/status": writer.add_connection("/status", "std_msgs/msg/String", typestore=TS),
    }
    plan = [("/cam/rgb", "rgb8"), ("/status", ""), ("/cam/bgr", "bgr8"), ("/cam/jpeg/compressed", "jpeg")] * 2
    plan += [("/cam/rgb", "rgb8"), ("/status", ""), ("/status", ""), *(extra or [])]
    images = iter(_frames(len(plan), seed=1))
    for step, (topic, encoding) in enumerate(plan):
        log_ns = 1_700_000_000_000_000_000 + step * 33_000_000
        stamp_ns = log_ns - 5_000_000 - step  # captured 5 ms before it was logged
        header = _header(stamp_ns, f"{topic.strip('/')}_frame")
        if topic == "/status":
            msg, msgtype = TS.types["std_msgs/msg/String"](data=f"ok {step}".ljust(status_bytes)), "std_msgs/msg/String"
        elif encoding == "jpeg":
            msg, rgb = _jpeg_msg(next(images), header)
            msgtype = COMPRESSED
            expected[topic].append((log_ns, stamp_ns, header.frame_id, rgb))
        elif callable(encoding):  # a malformed message a test adds
            msg, msgtype = encoding(next(images), header), RAW
        else:
            rgb = next(images)
            msg, msgtype = _image_msg(rgb, encoding, header), RAW
            expected[topic].append((log_ns, stamp_ns, header.frame_id, rgb))
        writer.write(conns[topic], log_ns, TS.serialize_cdr(msg, msgtype))
    writer.close()
    return expected


def read_bag(path: Path) -> dict[str, list[tuple[int, object]]]:
    """topic -> [(log_ns, message)] in log order."""
    messages: dict[str, list] = {}
    with rosbags_highlevel.AnyReader([path], default_typestore=TS) as reader:
        for connection, log_ns, raw in reader.messages():
            messages.setdefault(connection.topic, []).append((log_ns, reader.deserialize(raw, connection.msgtype)))
    return messages


def pixels(msg) -> np.ndarray:
    channels = {"mono8": 1, "rgb8": 3}[msg.encoding]
    assert msg.step == msg.width * channels
    return np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width, channels).squeeze()


@pytest.fixture(scope="module")
def seg(exported):
    with segrt.load(exported("unet")) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bags") / "drive"
    return folder, write_drive(folder)


@pytest.fixture(scope="module")
def segmented(seg, drive, tmp_path_factory):
    folder, expected = drive
    out = tmp_path_factory.mktemp("out")
    run = segment_bag(seg, folder, TOPICS, out, stats=True)
    return run, read_bag(run.out_path), expected


def test_segmented_bag_keeps_every_message_and_adds_masks_equal_to_segrts_labels(seg, drive, segmented):
    run, written, expected = segmented
    assert run.out_path.name == "drive.segmented.mcap" and run.out_path.is_file()
    assert run.exit_code == 0 and run.frames == 7 and run.copied == 11
    original = read_bag(drive[0] / "drive.mcap")
    for topic, messages in original.items():  # every input message, same log time, same content
        assert [(t, repr(m)) for t, m in written[topic]] == [(t, repr(m)) for t, m in messages]
    for topic in TOPICS:
        labels_msgs, color_msgs = written[f"{topic}/labels"], written[f"{topic}/color"]
        assert len(labels_msgs) == len(color_msgs) == len(expected[topic])
        for (log_ns, labels_msg), (color_ns, color_msg), (want_ns, stamp_ns, frame_id, rgb) in zip(
            labels_msgs, color_msgs, expected[topic], strict=True
        ):
            assert log_ns == color_ns == want_ns
            for msg in (labels_msg, color_msg):
                assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp_ns
                assert msg.header.frame_id == frame_id
            assert labels_msg.encoding == "mono8" and color_msg.encoding == "rgb8"
            want = seg(rgb)
            np.testing.assert_array_equal(pixels(labels_msg), want)
            np.testing.assert_array_equal(pixels(color_msg), segrt.colorize(want, seg.palette))
    log_times = [t for messages in written.values() for t, _ in messages]
    assert len(log_times) == 11 + 2 * 7


def test_the_segmented_bag_is_in_log_time_order_with_masks_right_after_their_image(segmented):
    run, _, _ = segmented
    with rosbags_highlevel.AnyReader([run.out_path], default_typestore=TS) as reader:
        order = [(connection.topic, log_ns) for connection, log_ns, _ in reader.messages()]
    assert [t for _, t in order] == sorted(t for _, t in order)
    for index, (topic, log_ns) in enumerate(order):
        if topic in TOPICS:
            assert order[index + 1 : index + 3] == [(f"{topic}/labels", log_ns), (f"{topic}/color", log_ns)]


def test_stats_csv_has_a_row_per_frame_at_the_header_stamps(segmented):
    run, _, expected = segmented
    with open(run.stats_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["source"] for row in rows] == [  # named as segrun names a video's frames: SOURCE#INDEX
        "/cam/rgb#0", "/cam/bgr#0", "/cam/jpeg/compressed#0", "/cam/rgb#1", "/cam/bgr#1", "/cam/jpeg/compressed#1",
        "/cam/rgb#2",
    ]  # fmt: skip
    stamps = [f"{stamp / 1e9:.3f}" for topic in TOPICS for _, stamp, _, _ in expected[topic]]
    assert sorted(row["time_s"] for row in rows) == sorted(stamps)
    assert {row["frame"] for row in rows if row["source"].startswith("/cam/rgb#")} == {"0", "1", "2"}


def test_a_single_mcap_file_and_a_sqlite_bag_read_the_same(seg, drive, segmented, tmp_path):
    _, written, _ = segmented
    single = segment_bag(seg, drive[0] / "drive.mcap", ["/cam/rgb"], tmp_path / "single")
    sqlite_folder = tmp_path / "sq"
    write_drive(sqlite_folder, StoragePlugin.SQLITE3)
    sqlite = segment_bag(seg, sqlite_folder, ["/cam/rgb"], tmp_path / "sqlite")
    for run in (single, sqlite):
        assert run.frames == 3 and run.exit_code == 0
        again = read_bag(run.out_path)
        assert [repr(m) for _, m in again["/cam/rgb/labels"]] == [repr(m) for _, m in written["/cam/rgb/labels"]]
        assert "/cam/bgr/labels" not in again and len(again["/cam/bgr"]) == 2


def test_topics_are_checked_before_the_model_loads(drive, tmp_path, capsys):
    folder, _ = drive
    missing_model = str(tmp_path / "no-model.onnx")
    assert segrun_main([missing_model, str(folder), "--topic", "/cam/left", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "no topic /cam/left" in err
    assert "/cam/bgr (Image), /cam/jpeg/compressed (CompressedImage), /cam/rgb (Image)" in err
    assert segrun_main([missing_model, str(folder), "--topic", "/status", "-o", str(tmp_path / "o")]) == 2
    assert "topic /status is std_msgs/msg/String, not images" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_unwritable_output_is_refused_before_any_frame_runs(seg, drive, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SegError, match="cannot write to the output folder") as caught:
        segment_bag(seg, drive[0], TOPICS, blocker / "out")
    assert "\n" not in str(caught.value) and caught.value.exit_code == 2


def test_segrun_can_tell_a_bag_from_a_video_or_a_folder_of_images(drive, tmp_path):
    folder, _ = drive
    (tmp_path / "photos").mkdir()
    (tmp_path / "clip.mp4").write_bytes(b"")
    assert is_bag(folder) and is_bag(folder / "drive.mcap")
    assert not is_bag(tmp_path / "photos") and not is_bag(tmp_path / "clip.mp4") and not is_bag(tmp_path / "x.mcap")


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda path: None, "no such bag"),
        (lambda path: path.write_bytes(b""), "not a readable ROS 2 bag"),
        (lambda path: path.write_bytes(b"\x89MCAP0\r\n" + b"\0" * 40), "not a readable ROS 2 bag"),
    ],
    ids=["missing", "empty", "garbage"],
)
def test_a_path_that_is_not_a_bag_is_one_line(tmp_path, make, problem):
    path = tmp_path / "drive.mcap"
    make(path)
    with pytest.raises(SegError, match=problem) as caught:
        BagImages(path, ["/cam/rgb"])
    assert "\n" not in str(caught.value)


def test_malformed_image_messages_are_skipped_counted_and_still_copied(seg, tmp_path):
    def bad_encoding(rgb, header):
        return _image_msg(rgb, "yuv422", header)

    def short_data(rgb, header):
        return _image_msg(rgb, "rgb8", header, data=rgb.reshape(-1)[:100])

    def bad_step(rgb, header):
        return _image_msg(rgb, "rgb8", header, step=WIDTH)

    def empty(rgb, header):
        return _image_msg(rgb[:0, :0], "rgb8", header, data=np.zeros(0, np.uint8))

    folder = tmp_path / "bad"
    extra = [("/cam/rgb", make) for make in (bad_encoding, short_data, bad_step, empty, bad_encoding)]
    write_drive(folder, extra=extra)
    run = segment_bag(seg, folder, ["/cam/rgb"], tmp_path / "out")
    assert run.frames == 3 and run.exit_code == 1
    assert run.skipped == {"encoding": 2, "short": 1, "step": 1, "empty": 1}
    assert "yuv422" in run.problems["encoding"] and "\n" not in run.problems["encoding"]
    assert len(read_bag(run.out_path)["/cam/rgb"]) == 3 + 5


def test_ctrl_c_leaves_a_readable_bag_with_what_came_before(seg, drive, tmp_path):
    folder, expected = drive
    seen = []

    def stop_after_two(frame):
        seen.append(frame)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        segment_bag(seg, folder, TOPICS, tmp_path / "out", on_frame=stop_after_two)
    written = read_bag(tmp_path / "out" / "drive.segmented.mcap")
    assert len(written["/cam/rgb/labels"]) == len(written["/cam/bgr/labels"]) == 1
    assert "/cam/jpeg/compressed/labels" not in written
    assert max(t for messages in written.values() for t, _ in messages) == expected["/cam/bgr"][0][0]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["drive.segmented.mcap"]  # no temporary left


@pytest.fixture
def two_chunk_drive(tmp_path):
    """The drive with 700 kB Strings, so its MCAP file holds two chunks; returns the file and its chunks."""
    folder = tmp_path / "drive"
    write_drive(folder, status_bytes=700_000)
    reader = McapReader(folder / "drive.mcap")
    reader.open()
    chunks = list(reader.chunks)
    reader.close()
    assert len(chunks) == 2
    return folder / "drive.mcap", chunks


def test_a_bag_broken_mid_way_keeps_what_was_read_and_exits_1(exported, two_chunk_drive, tmp_path, capsys):
    path, chunks = two_chunk_drive
    data = bytearray(path.read_bytes())
    first_record = chunks[1].chunk_start_offset + 9 + 40  # the chunk's first record: opcode, then its length
    data[first_record : first_record + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    out = tmp_path / "out"
    code = segrun_main([str(exported("unet")), str(path), "-o", str(out), *[f"--topic={topic}" for topic in TOPICS]])
    assert code == 1
    err = capsys.readouterr().err
    assert "the bag breaks off after 4 messages" in err and "the frames before it are written" in err
    written = read_bag(out / "drive.segmented.mcap")
    assert [len(written[f"{topic}/labels"]) for topic in TOPICS] == [2, 1, 1]  # the first chunk's frames
    assert sum(len(messages) for topic, messages in written.items() if "/labels" not in topic) == 5 + 4


def test_a_truncated_mcap_is_refused_in_one_line_naming_the_repair(seg, two_chunk_drive, tmp_path):
    path, _ = two_chunk_drive
    os.truncate(path, path.stat().st_size * 2 // 3)  # a recording cut off: no summary, no footer
    with pytest.raises(SegError, match=r"ends early.*mcap recover") as caught:
        segment_bag(seg, path, TOPICS, tmp_path / "out")
    assert "\n" not in str(caught.value) and caught.value.exit_code == 2
    assert not (tmp_path / "out").exists()  # refused before the output folder was made
