"""Images in and out: decoding, validation, host pre/post-processing, colorize and overlay.

The host steps here are the ones the fused graph runs on the accelerator
(bilinear resize with half-pixel centres and no antialiasing, as
`F.interpolate(..., align_corners=False)`; normalization; argmax), so an unfused
model gives the same labels as a fused one. Decoding uses Pillow.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from segrt.errors import SegError
from segrt.files import atomic_write
from segrt.meta import ModelCard

if TYPE_CHECKING:
    from segrt.stream.paint import Painter

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Pillow modes converted to RGB without loss of meaning; anything else is refused.
_CONVERTIBLE_MODES = {"RGB", "L", "P", "RGBA", "LA", "PA", "RGBX", "CMYK", "YCbCr", "1", "La", "RGBa"}


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to a uint8 H x W x 3 RGB array.

    EXIF orientation is applied. Grayscale and palette images are expanded to RGB,
    the alpha channel of RGBA images is dropped, CMYK is converted; 16-bit and
    floating-point images are refused, because mapping them to 8 bits needs a
    range only the user knows.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise SegError(f"{path}: empty file, not an image")
        with Image.open(path) as opened:
            _refuse_deep_pixels(path, opened.mode, opened.format)
            img = ImageOps.exif_transpose(opened)
            img.load()
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            array = np.asarray(rgb, dtype=np.uint8)
    except SegError:
        raise
    except FileNotFoundError:
        raise SegError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SegError(f"{path}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise SegError(f"{path}: not an image Pillow can read") from None
    except OSError as exc:
        if exc.errno is not None:  # the file system's refusal (no permission, an I/O error), not the data's
            raise SegError(f"{path}: cannot read the file ({exc.strerror})") from None
        raise SegError(f"{path}: cannot decode the image ({exc})") from None  # truncated or corrupt data
    except (ValueError, SyntaxError) as exc:
        raise SegError(f"{path}: cannot decode the image ({exc})") from None
    except Image.DecompressionBombError as exc:
        raise SegError(f"{path}: refused, too many pixels ({exc})") from None
    return check_image(array, str(path))


def _refuse_deep_pixels(path: Path, mode: str, file_format: str | None) -> None:
    """Refuse pixels of more than 8 bits or of floats: mapping them to 8 bits needs a range only the user knows."""
    if mode not in _CONVERTIBLE_MODES:
        raise SegError(f"{path}: {_mode_words(mode)} image (Pillow mode {mode}); convert it to 8-bit RGB first")
    if file_format == "PNG" and png_bit_depth(path) == 16:  # Pillow opens RGB(A) 16 as 8-bit, dropping a byte
        raise SegError(
            f"{path}: 16-bit-per-channel image (PNG bit depth 16, Pillow mode {mode}); convert it to 8-bit RGB first"
        )


def png_bit_depth(path: str | os.PathLike[str]) -> int | None:
    """The bit depth byte of a PNG's IHDR chunk (always the first chunk), or None if the header is not there."""
    with open(path, "rb") as fh:
        header = fh.read(26)
    if len(header) < 26 or header[:8] != _PNG_SIGNATURE or header[12:16] != b"IHDR":
        return None
    return header[24]


def _mode_words(mode: str) -> str:
    if mode.startswith("I;16") or mode == "I":
        return "16/32-bit integer"
    if mode == "F":
        return "32-bit floating-point"
    return "unsupported"


def check_image(image: object, source: str = "image") -> np.ndarray:
    """Validate one RGB image array and return it C-contiguous; raise SegError naming `source`."""
    if not isinstance(image, np.ndarray):
        raise SegError(f"{source}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise SegError(
            f"{source}: expected dtype uint8, got {image.dtype}; convert with "
            f"np.clip(x, 0, 255).astype(np.uint8) if its range is 0..255"
        )
    if image.ndim != 3 or image.shape[2] != 3:
        raise SegError(f"{source}: expected an H x W x 3 RGB array, got shape {tuple(image.shape)}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise SegError(f"{source}: empty image, shape {tuple(image.shape)}")
    return np.ascontiguousarray(image)


def check_batch(batch: object, source: str = "batch") -> None:
    """Refuse anything but a non-empty uint8 N x H x W x 3 array: the host steps compute nonsense on others."""
    if not isinstance(batch, np.ndarray):
        raise SegError(f"{source}: expected a numpy array, got {type(batch).__name__}")
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3 or 0 in batch.shape:
        raise SegError(f"{source}: expected a uint8 N x H x W x 3 batch, got {batch.dtype} {tuple(batch.shape)}")


def resize_weights(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and weights of bilinear resizing one axis from `src` to `dst` samples.

    Half-pixel centres, edge clamping and no antialiasing: the arithmetic of
    PyTorch's `F.interpolate(mode="bilinear", align_corners=False)` and ONNX Resize
    (`half_pixel`), so host and graph agree.
    """
    scale = src / dst
    pos = np.maximum((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(pos).astype(np.int64), src - 1)
    i1 = np.minimum(i0 + 1, src - 1)
    w1 = (pos - i0).astype(np.float32)
    return i0, i1, w1


def resize_bilinear(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a channel-last float32 array N x H x W x C to N x height x width x C.

    Channel-last makes the row pass copy whole contiguous rows, so the row pass
    is the one that touches the larger array: last when enlarging, first when shrinking.
    """
    src_h, src_w = array.shape[1:3]
    if (src_h, src_w) == (height, width):
        return array
    y0, y1, wy = resize_weights(src_h, height)
    x0, x1, wx = resize_weights(src_w, width)

    def rows(a: np.ndarray) -> np.ndarray:
        out = a[:, y0]
        out *= (1 - wy)[:, None, None]
        out += a[:, y1] * wy[:, None, None]
        return out

    def cols(a: np.ndarray) -> np.ndarray:
        out = a[:, :, x0]
        out *= (1 - wx)[:, None]
        out += a[:, :, x1] * wx[:, None]
        return out

    return rows(cols(array)) if height * width >= src_h * src_w else cols(rows(array))


def preprocess(batch: np.ndarray, card: ModelCard) -> np.ndarray:
    """uint8 N x H x W x 3 -> normalized float32 N x 3 x h x w at the network's input size."""
    check_batch(batch)
    height, width = batch.shape[1:3]
    net_h, net_w = card.network_size(height, width)
    resized = resize_bilinear(batch.astype(np.float32), net_h, net_w)
    scale = 1.0 / (255.0 * np.asarray(card.std, np.float32))
    shift = -np.asarray(card.mean, np.float32) / np.asarray(card.std, np.float32)
    return np.ascontiguousarray((resized * scale + shift).transpose(0, 3, 1, 2))


def threshold_logit(threshold: float) -> np.float32:
    """The logit a one-class model's sigmoid `threshold` (0..1) corresponds to: sigmoid(x) > t is x > log(t / (1 - t)),
    in float32 as the fused graph compares (0 for the default 0.5), so the graph and the host label alike."""
    return np.float32(np.log(threshold / (1.0 - threshold)))


def postprocess(logits: np.ndarray, height: int, width: int, *, threshold: float | None = None) -> np.ndarray:
    """float N x C x h x w logits -> uint8 N x height x width labels (upsample, then argmax).

    Works channel-last, where the argmax over classes reads contiguous memory, one
    image and one block of output rows at a time straight into the argmax, so the
    working set stays in cache and the full-size float logits (33 MB per 612x640
    frame of 21 classes) never exist at once. A one-class model (one logit channel,
    the card's `threshold` given) labels 1 where its upsampled logit is above
    `threshold_logit(threshold)`, as its fused graph does.
    """
    if threshold is not None and logits.shape[1] != 1:
        raise SegError(f"a threshold applies to one logit channel, and these logits have {logits.shape[1]}")
    cut = threshold_logit(threshold) if threshold is not None else None
    channel_last = np.ascontiguousarray(logits.transpose(0, 2, 3, 1), dtype=np.float32)
    src_h, src_w = channel_last.shape[1:3]
    y0, y1, wy = resize_weights(src_h, height)
    x0, x1, wx = resize_weights(src_w, width)
    labels = np.empty((len(logits), height, width), np.uint8)
    block_rows = max(4, (1 << 20) // (width * channel_last.shape[3] * 4))  # about 1 MB of upsampled logits
    for source, target in zip(channel_last, labels, strict=True):  # one image, one block of rows at a time
        for start in range(0, height, block_rows):
            rows = slice(start, start + block_rows)
            band = source[y0[rows]]  # block x w x C: the source rows this block reads
            band *= (1 - wy[rows])[:, None, None]
            band += source[y1[rows]] * wy[rows][:, None, None]
            block = band[:, x0]
            block *= (1 - wx)[:, None]
            block += band[:, x1] * wx[:, None]
            target[rows] = block.argmax(axis=-1) if cut is None else block[..., 0] > cut
    return labels


def voc_palette(count: int = 256) -> tuple[tuple[int, int, int], ...]:
    """The Pascal VOC colour map (bit-interleaved class index), extended to `count` entries."""
    colours = []
    for index in range(count):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


def _palette_array(palette: object | None) -> np.ndarray:
    table = np.zeros((256, 3), np.uint8)
    colours = np.asarray(voc_palette() if palette is None else palette, dtype=np.uint8).reshape(-1, 3)
    table[: len(colours)] = colours[:256]
    return table


def colorize(labels: np.ndarray, palette: object | None = None, *, ignore: Collection[int] = ()) -> np.ndarray:
    """uint8 H x W labels -> uint8 H x W x 3 colours (VOC palette if none is given); `ignore`d classes are black."""
    labels = np.asarray(labels)
    if labels.dtype != np.uint8 or labels.ndim != 2:
        raise SegError(f"colorize: expected a uint8 H x W label map, got {labels.dtype} {tuple(labels.shape)}")
    table = _palette_array(palette)
    table[list(ignore)] = 0
    return np.take(table, labels, axis=0)  # as table[labels], 4x faster (14.8 -> 3.5 ms at 640x480 here)


def overlay(
    image: np.ndarray,
    labels: np.ndarray,
    alpha: float = 0.5,
    *,
    palette: object | None = None,
    ignore: Collection[int] = (),
) -> np.ndarray:
    """Blend the colorized labels over the image: alpha 0 is the image, 1 the colours (alpha in 1/256 steps,
    the blend rounded to the nearest level, in integers: see segrt.stream.paint).

    Pixels of class 0 (background) and of the `ignore`d classes keep the image, so the rest stands out.
    """
    image = check_image(image)
    if labels.shape != image.shape[:2]:
        raise SegError(f"overlay: labels {tuple(labels.shape)} do not match the image {tuple(image.shape[:2])}")
    if not 0.0 <= alpha <= 1.0:
        raise SegError(f"overlay: alpha must be within 0..1, got {alpha}")
    if labels.dtype != np.uint8:
        raise SegError(f"overlay: expected uint8 labels, got {labels.dtype}")
    table = _palette_array(palette)
    return _painter(table.tobytes(), alpha, tuple(sorted(set(ignore)))).overlay(image, labels)


@functools.lru_cache(maxsize=8)
def _painter(palette: bytes, alpha: float, ignore: tuple[int, ...]) -> Painter:
    """The blend's tables for one palette, alpha and ignore set, built once (about 1 ms) for a caller's frames."""
    from segrt.stream.paint import Painter  # the one blend: segrun's streams, the ROS node and this call agree

    return Painter(np.frombuffer(palette, np.uint8).reshape(256, 3), alpha, ignore)


def write_labels_png(path: str | os.PathLike[str], labels: np.ndarray, palette: object | None = None) -> Path:
    """Write a label map as a palette PNG (pixel values are class ids, viewers show colours), atomically."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8), mode="P")
    img.putpalette(_palette_array(palette).tobytes())
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def write_confidence_png(path: str | os.PathLike[str], confidence: np.ndarray) -> Path:
    """Write a confidence map (uint8 H x W from `seg(image, confidence=True)`) as an 8-bit grayscale PNG, atomically.

    Pixel values are the map's own: round(255 x the top class's probability), so 255 is white (certain) and a
    pixel's probability is value / 255. Anything but a uint8 H x W array is a SegError naming `path`.
    """
    from PIL import Image

    if not isinstance(confidence, np.ndarray) or confidence.dtype != np.uint8 or confidence.ndim != 2:
        is_array = isinstance(confidence, np.ndarray)
        shown = f"{confidence.dtype} {tuple(confidence.shape)}" if is_array else "not an array"
        raise SegError(f"{path}: a confidence map is uint8 H x W, got {shown}; pass one of seg(image, confidence=True)")
    img = Image.fromarray(np.ascontiguousarray(confidence))  # uint8 H x W: mode L
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def write_image(path: str | os.PathLike[str], rgb: np.ndarray) -> Path:
    """Write an RGB array; the format follows the file suffix. Atomic."""
    from PIL import Image

    img = Image.fromarray(check_image(rgb, str(path)))
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(Path(path).suffix.lower(), "PNG")
    return atomic_write(path, lambda tmp: img.save(tmp, format=fmt))


def read_labels_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a label PNG (palette or grayscale) as uint8 H x W class ids."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise SegError(f"{path}: a label map must be a palette or grayscale PNG, got mode {img.mode}")
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise SegError(f"{path}: cannot read the label map ({exc})") from None
