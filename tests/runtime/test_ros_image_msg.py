"""Image messages to RGB and back: every encoding segrt reads gives the same pixels, padded rows included, and
every malformed message is its own kind with a one-line message. Plain objects with the messages' field names
stand for both rclpy's classes and rosbags' dataclasses (the functions read only those fields)."""

from __future__ import annotations

import array
import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from segrt.ros.image_msg import BadImageMessage, image_to_rgb, labels_fields, message_to_rgb, rgb_fields

RGB = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


def raw(pixels: np.ndarray, encoding: str, pad: int = 0, data_type=bytes) -> SimpleNamespace:
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    padded = np.concatenate([rows, np.full((height, pad), 9, np.uint8)], axis=1)
    data = data_type(padded.tobytes()) if data_type is bytes else data_type("B", padded.tobytes())
    return SimpleNamespace(height=height, width=width, encoding=encoding, step=padded.shape[1], data=data)


@pytest.mark.parametrize("data_type", [bytes, array.array], ids=["rosbags-bytes", "rclpy-array"])
@pytest.mark.parametrize("pad", [0, 3])
def test_every_raw_encoding_gives_the_same_rgb(pad, data_type):
    alpha = np.full((5, 7, 1), 77, np.uint8)
    cases = {
        "rgb8": RGB,
        "bgr8": RGB[..., ::-1],
        "rgba8": np.concatenate([RGB, alpha], axis=2),
        "bgra8": np.concatenate([RGB[..., ::-1], alpha], axis=2),
    }
    for encoding, pixels in cases.items():
        np.testing.assert_array_equal(image_to_rgb(raw(pixels, encoding, pad, data_type)), RGB, err_msg=encoding)
    grey = image_to_rgb(raw(RGB[..., :1], "mono8", pad, data_type))
    np.testing.assert_array_equal(grey, np.repeat(RGB[..., :1], 3, axis=2))


def test_compressed_png_and_jpeg_decode_to_rgb():
    for fmt in ("PNG", "JPEG"):
        buffer = io.BytesIO()
        Image.fromarray(RGB).save(buffer, format=fmt)
        msg = SimpleNamespace(format=fmt.lower(), data=buffer.getvalue())
        decoded = message_to_rgb(msg)
        assert decoded.shape == RGB.shape and decoded.dtype == np.uint8
        if fmt == "PNG":
            np.testing.assert_array_equal(decoded, RGB)


@pytest.mark.parametrize(
    ("msg", "kind", "words"),
    [
        (SimpleNamespace(height=5, width=7, encoding="yuv422", step=14, data=b"\0" * 70), "encoding", "yuv422"),
        (SimpleNamespace(height=5, width=7, encoding="rgb8", step=20, data=b"\0" * 105), "step", "step 20"),
        (SimpleNamespace(height=5, width=7, encoding="rgb8", step=21, data=b"\0" * 100), "short", "100 bytes"),
        (SimpleNamespace(height=0, width=0, encoding="rgb8", step=0, data=b""), "empty", "0x0"),
        (SimpleNamespace(format="jpeg", data=b"\xff\xd8 not a jpeg"), "compressed", "undecodable"),
        (SimpleNamespace(format="png", data=b""), "compressed", "empty"),
    ],
    ids=["encoding", "step", "short", "empty", "undecodable", "no-bytes"],
)
def test_each_malformed_message_is_its_own_kind_in_one_line(msg, kind, words):
    with pytest.raises(BadImageMessage, match=words) as caught:
        message_to_rgb(msg)
    assert caught.value.kind == kind and "\n" not in str(caught.value)


def test_masks_become_mono8_and_rgb8_fields():
    labels = RGB[..., 0] % 4
    fields = labels_fields(labels)
    assert (fields.encoding, fields.step, fields.height, fields.width) == ("mono8", 7, 5, 7)
    np.testing.assert_array_equal(fields.data.reshape(5, 7), labels)
    colour = rgb_fields(RGB)
    assert (colour.encoding, colour.step) == ("rgb8", 21)
    np.testing.assert_array_equal(image_to_rgb(SimpleNamespace(**vars(colour))), RGB)
