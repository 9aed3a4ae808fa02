"""segrt.image: decoding every kind of file users have, the host resize arithmetic, colorize and overlay."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segrt.errors import SegError
from segrt.image import (
    check_image,
    colorize,
    overlay,
    png_bit_depth,
    postprocess,
    preprocess,
    read_image,
    read_labels_png,
    resize_bilinear,
    voc_palette,
    write_labels_png,
)
from segrt.meta import ModelCard


def _nhwc(values: list[list[float]]) -> np.ndarray:
    return np.asarray(values, np.float32)[None, :, :, None]


def test_upsampling_uses_half_pixel_centres_and_clamps_edges():
    out = resize_bilinear(_nhwc([[0.0, 1.0]]), 1, 4)
    np.testing.assert_allclose(out[0, 0, :, 0], [0.0, 0.25, 0.75, 1.0])


def test_downsampling_by_two_averages_pairs_without_antialiasing():
    out = resize_bilinear(_nhwc([[0.0, 2.0, 4.0, 10.0]]), 1, 2)
    np.testing.assert_allclose(out[0, 0, :, 0], [1.0, 7.0])


def test_resize_is_separable_in_either_order_and_identity_at_same_size():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, 9, 5)).astype(np.float32)
    assert resize_bilinear(x, 7, 9) is x
    up, down = resize_bilinear(x, 20, 31), resize_bilinear(x, 3, 4)
    assert up.shape == (2, 20, 31, 5) and down.shape == (2, 3, 4, 5)
    # a constant field stays constant, whatever the scale
    const = np.full((1, 5, 6, 2), 3.5, np.float32)
    np.testing.assert_allclose(resize_bilinear(const, 13, 2), 3.5, rtol=1e-6)


def test_postprocess_upsamples_then_takes_the_argmax():
    logits = np.zeros((1, 3, 2, 2), np.float32)
    logits[0, 1, 0, :] = 1.0  # top row class 1
    logits[0, 2, 1, :] = 1.0  # bottom row class 2
    labels = postprocess(logits, 8, 4)
    assert labels.dtype == np.uint8 and labels.shape == (1, 8, 4)
    assert (labels[0, :4] == 1).all() and (labels[0, 4:] == 2).all()


def _save(tmp_path, name, image: Image.Image, **kwargs) -> str:
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


RGB = np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)


def test_rgb_png_round_trips_exactly(tmp_path):
    assert (read_image(_save(tmp_path, "a.png", Image.fromarray(RGB))) == RGB).all()


def test_grayscale_is_expanded_to_three_equal_channels(tmp_path):
    gray = RGB[..., 0]
    image = read_image(_save(tmp_path, "g.png", Image.fromarray(gray, mode="L")))
    assert image.shape == (12, 10, 3) and (image == gray[..., None]).all()


def test_rgba_drops_alpha(tmp_path):
    rgba = np.dstack([RGB, np.full((12, 10), 7, np.uint8)])
    assert (read_image(_save(tmp_path, "a.png", Image.fromarray(rgba, mode="RGBA"))) == RGB).all()


def test_palette_png_is_converted_to_its_colours(tmp_path):
    img = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    img.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * 759)
    image = read_image(_save(tmp_path, "p.png", img))
    assert image[0, 1].tolist() == [40, 50, 60] and image[1, 0].tolist() == [70, 80, 90]


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    cmyk = Image.fromarray(RGB).convert("CMYK")
    image = read_image(_save(tmp_path, "c.jpg", cmyk, quality=95))
    assert image.shape == (12, 10, 3) and np.abs(image.astype(int) - RGB).mean() < 20


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(RGB)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "r.jpg"
    img.save(path, exif=exif, quality=100)
    assert read_image(path).shape == (10, 12, 3)


def test_sixteen_bit_images_are_refused_with_the_reason(tmp_path):
    deep = Image.fromarray(np.full((4, 4), 40000, np.uint16))
    with pytest.raises(SegError, match=r"d\.png: 16/32-bit integer image .* convert it to 8-bit RGB"):
        read_image(_save(tmp_path, "d.png", deep))


@pytest.mark.parametrize("channels", [3, 4])
def test_sixteen_bit_rgb_and_rgba_pngs_are_refused_not_truncated(tmp_path, png16, channels):
    """Pillow opens them as 8-bit RGB/RGBA (dropping the low byte); the IHDR bit depth gives them away."""
    deep = np.random.default_rng(3).integers(0, 65536, (6, 5, channels), dtype=np.uint16)
    path = png16(tmp_path / "deep.png", deep)
    with Image.open(path) as img:  # the trap: Pillow reports an ordinary 8-bit mode
        assert img.mode == ("RGB", "RGBA")[channels - 3]
    assert png_bit_depth(path) == 16
    with pytest.raises(
        SegError, match=r"deep\.png: 16-bit-per-channel image \(PNG bit depth 16.*convert it to 8-bit RGB"
    ):
        read_image(path)


def test_eight_bit_png_depth_is_read_and_other_files_have_none(tmp_path):
    assert png_bit_depth(_save(tmp_path, "a.png", Image.fromarray(RGB))) == 8
    assert png_bit_depth(_save(tmp_path, "a.jpg", Image.fromarray(RGB))) is None
    (tmp_path / "short.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert png_bit_depth(tmp_path / "short.png") is None


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"", "empty file"), (b"hello, not an image", "not an image"), (None, "no such file")],
)
def test_unreadable_files_name_the_file(tmp_path, content, words):
    path = tmp_path / "x.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SegError, match=rf"x\.jpg: {words}"):
        read_image(path)


def test_truncated_jpeg_is_a_clear_error(tmp_path):
    path = _save(tmp_path, "t.jpg", Image.fromarray(np.repeat(RGB, 20, axis=0)), quality=90)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(SegError, match=r"t\.jpg: cannot decode"):
        read_image(path)


def test_one_pixel_image_is_fine(tmp_path):
    assert read_image(_save(tmp_path, "1.png", Image.fromarray(RGB[:1, :1]))).shape == (1, 1, 3)


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (RGB.astype(np.float32), "expected dtype uint8, got float32"),
        (RGB[..., 0], "expected an H x W x 3 RGB array, got shape (12, 10)"),
        (np.dstack([RGB, RGB[..., :1]]), "got shape (12, 10, 4)"),
        (np.zeros((0, 5, 3), np.uint8), "empty image"),
        ([[1, 2, 3]], "expected a numpy array, got list"),
    ],
)
def test_check_image_refuses_wrong_arrays(array, words):
    with pytest.raises(SegError, match=rf"^cam0: .*{__import__('re').escape(words)}"):
        check_image(array, "cam0")


def test_check_image_makes_views_contiguous():
    view = RGB[:, ::-1]
    checked = check_image(view)
    assert checked.flags.c_contiguous and (checked == view).all()


def test_colorize_uses_the_palette_and_voc_colours_by_default():
    labels = np.array([[0, 1], [2, 15]], np.uint8)
    assert colorize(labels)[1, 1].tolist() == [192, 128, 128]  # VOC "person"
    assert colorize(labels, [(1, 2, 3), (4, 5, 6), (7, 8, 9)])[1, 0].tolist() == [7, 8, 9]
    assert voc_palette(3) == ((0, 0, 0), (128, 0, 0), (0, 128, 0))


def test_overlay_keeps_background_and_blends_classes():
    image = np.full((2, 2, 3), 100, np.uint8)
    labels = np.array([[0, 1], [1, 0]], np.uint8)
    palette = [(0, 0, 0), (200, 0, 0)]
    blended = overlay(image, labels, 0.5, palette=palette)
    assert blended[0, 0].tolist() == [100, 100, 100]
    assert blended[0, 1].tolist() == [150, 50, 50]
    assert (overlay(image, labels, 0.0, palette=palette) == image).all()
    with pytest.raises(SegError, match="do not match the image"):
        overlay(image, labels[:1], palette=palette)


def test_label_png_round_trip_keeps_class_ids_and_palette(tmp_path):
    labels = np.random.default_rng(2).integers(0, 21, (9, 11), dtype=np.uint8)
    path = write_labels_png(tmp_path / "l.png", labels, voc_palette(21))
    assert (read_labels_png(path) == labels).all()
    with Image.open(path) as img:
        assert img.mode == "P" and img.getpalette()[3:6] == [128, 0, 0]
    assert [p.name for p in tmp_path.iterdir()] == ["l.png"]  # no temporary file left


@pytest.mark.parametrize(
    "batch",
    [RGB, RGB[None].astype(np.float32), RGB[None, ..., :1], np.zeros((0, 4, 4, 3), np.uint8), RGB[None].tolist()],
    ids=["rank 3", "float32", "one channel", "empty", "list"],
)
def test_preprocess_refuses_anything_but_a_uint8_nhwc_batch(batch):
    card = ModelCard(
        model="m", classes=("a",), palette=((0, 0, 0),), mean=(0.5,) * 3, std=(0.5,) * 3, input_size=(8, 8)
    )
    with pytest.raises(SegError, match=r"^batch: expected a (uint8 N x H x W x 3 batch|numpy array)"):
        preprocess(batch, card)
    assert preprocess(RGB[None], card).shape == (1, 3, 8, 8)
