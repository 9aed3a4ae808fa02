"""sensor_msgs/Image and CompressedImage to uint8 RGB arrays, and label maps back to Image fields.

Works on any object with the messages' field names: rclpy's generated classes and the dataclasses `rosbags`
deserializes alike. Every way a message can be malformed is its own `BadImageMessage` kind, so a node can log
each kind once and count the rest.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

# encoding -> (channels, the channel order that gives RGB from the message's bytes)
RAW_ENCODINGS: dict[str, tuple[int, tuple[int, ...]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}


class BadImageMessage(ValueError):
    """An image message segrt cannot read; `kind` names the fault ("encoding", "step", ...), the text says which."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class ImageFields:
    """What a sensor_msgs/Image carries besides its header: ready to set on an rclpy or rosbags message."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray  # uint8, flat


def image_to_rgb(msg: object) -> np.ndarray:
    """A sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) as a uint8 H x W x 3 RGB array.

    Rows may be padded (`step` > width * channels); the padding is dropped. Raises `BadImageMessage`.
    """
    encoding = str(msg.encoding).lower()  # type: ignore[attr-defined]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)  # type: ignore[attr-defined]
    if encoding not in RAW_ENCODINGS:
        raise BadImageMessage(
            "encoding",
            f"unsupported encoding {msg.encoding!r}; segrt reads {', '.join(RAW_ENCODINGS)}",  # type: ignore[attr-defined]
        )
    if height == 0 or width == 0:
        raise BadImageMessage("empty", f"empty image, {width}x{height}")
    channels, order = RAW_ENCODINGS[encoding]
    if step < width * channels:
        raise BadImageMessage("step", f"step {step} is less than width {width} x {channels} bytes ({encoding})")
    data = _as_bytes_array(msg.data)  # type: ignore[attr-defined]
    if data.size < step * height:
        raise BadImageMessage(
            "short", f"data has {data.size} bytes, fewer than step {step} x height {height} = {step * height}"
        )
    rows = data[: step * height].reshape(height, step)[:, : width * channels]
    pixels = rows.reshape(height, width, channels)
    if order == (0, 1, 2) and channels == 3:
        return np.ascontiguousarray(pixels)
    return np.ascontiguousarray(pixels[:, :, list(order)])


def compressed_to_rgb(msg: object) -> np.ndarray:
    """A sensor_msgs/CompressedImage (JPEG or PNG; grey, palette and alpha images made RGB) as uint8 H x W x 3.

    The data decides the codec (the `format` string varies between publishers). Raises `BadImageMessage`.
    """
    from PIL import Image, UnidentifiedImageError

    data = _as_bytes_array(msg.data)  # type: ignore[attr-defined]
    if data.size == 0:
        raise BadImageMessage("compressed", f"empty CompressedImage (format {msg.format!r})")  # type: ignore[attr-defined]
    try:
        with Image.open(io.BytesIO(data.tobytes())) as opened:
            if opened.format not in ("JPEG", "PNG"):
                raise BadImageMessage(
                    "compressed",
                    f"CompressedImage holds {opened.format}, not JPEG or PNG (format {msg.format!r})",  # type: ignore[attr-defined]
                )
            opened.load()
            if opened.mode not in ("RGB", "L", "P", "RGBA", "LA", "PA", "CMYK", "YCbCr", "1"):
                raise BadImageMessage("compressed", f"CompressedImage of Pillow mode {opened.mode}, not 8-bit")
            rgb = opened if opened.mode == "RGB" else opened.convert("RGB")
            array = np.asarray(rgb, dtype=np.uint8)
    except BadImageMessage:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise BadImageMessage(
            "compressed",
            f"undecodable CompressedImage (format {msg.format!r}): {exc}",  # type: ignore[attr-defined]
        ) from None
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise BadImageMessage("empty", f"empty image, {array.shape[1]}x{array.shape[0]}")
    return np.ascontiguousarray(array)


def message_to_rgb(msg: object) -> np.ndarray:
    """Either kind of image message (a CompressedImage has `format`, an Image has `encoding`) as RGB."""
    return compressed_to_rgb(msg) if hasattr(msg, "format") else image_to_rgb(msg)


def labels_fields(labels: np.ndarray) -> ImageFields:
    """A uint8 H x W label map as mono8 Image fields (pixel values are class ids)."""
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    height, width = labels.shape
    return ImageFields(height, width, "mono8", 0, width, labels.reshape(-1))


def rgb_fields(rgb: np.ndarray) -> ImageFields:
    """A uint8 H x W x 3 RGB array (a colour mask, an overlay) as rgb8 Image fields."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    return ImageFields(height, width, "rgb8", 0, width * 3, rgb.reshape(-1))


def _as_bytes_array(data: object) -> np.ndarray:
    """A message's `data` (numpy array, array.array, bytes or list of ints) as a flat uint8 array, no copy where
    it can be avoided."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.astype(np.uint8).reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, np.uint8)
    try:
        return np.frombuffer(memoryview(data), np.uint8)  # type: ignore[arg-type]  # array.array('B') from rclpy
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)
