"""Property-based: whatever bytes or arrays arrive, segrt returns a valid label map or raises SegError."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from PIL import Image

import segrt
from segrt.errors import SegError
from segrt.image import postprocess, preprocess, read_image, resize_bilinear
from segrt.meta import ModelCard

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _valid_image_bytes(fmt: str, mode: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color=7 if mode in ("L", "P", "I;16", "I", "F", "1") else (7,) * len(mode)).save(
        buffer, format=fmt
    )
    return buffer.getvalue()


@st.composite
def image_files(draw: st.DrawFn) -> bytes:
    """Random bytes, valid images of many modes, and valid images cut short or with bytes flipped."""
    kind = draw(st.sampled_from(["random", "valid", "truncated", "flipped"]))
    if kind == "random":
        return draw(st.binary(max_size=2048))
    fmt, modes = draw(
        st.sampled_from(
            [
                ("PNG", ["RGB", "L", "P", "RGBA", "LA", "I;16", "1"]),
                ("JPEG", ["RGB", "L", "CMYK"]),
                ("BMP", ["RGB", "L", "P"]),
                ("TIFF", ["RGB", "I;16", "F", "RGBA"]),
            ]
        )
    )
    data = _valid_image_bytes(fmt, draw(st.sampled_from(modes)), (draw(st.integers(1, 40)), draw(st.integers(1, 40))))
    if kind == "truncated":
        return data[: draw(st.integers(0, len(data)))]
    if kind == "flipped":
        position = draw(st.integers(0, len(data) - 1))
        return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]
    return data


@SETTINGS
@given(data=image_files())
def test_read_image_returns_rgb_uint8_or_raises_seg_error(tmp_path, data):
    path = tmp_path / "input.img"
    path.write_bytes(data)
    try:
        image = read_image(path)
    except SegError as exc:
        assert "input.img" in str(exc)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 1


@pytest.fixture(scope="module", params=["unet", "unet-unfused"])
def segmenter(request, exported):
    """The fused graph, and the unfused one that goes through the host pre- and post-processing."""
    return segrt.load(exported(request.param))


DTYPES = st.sampled_from([np.uint8, np.int8, np.uint16, np.float32, np.float64, np.bool_])
ANY_ARRAY = arrays(DTYPES, array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=24))
IMAGE = arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24), st.just(3)))
BATCH = arrays(np.uint8, st.tuples(st.integers(1, 3), st.integers(1, 24), st.integers(1, 24), st.just(3)))
# mostly anything, often a valid image or batch (a random array rarely is one), sometimes a mirrored view
ARRAYS = st.one_of(ANY_ARRAY, IMAGE, BATCH, IMAGE.map(lambda image: image[:, ::-1]))
CARD = ModelCard(
    model="m",
    classes=("a", "b"),
    palette=((0, 0, 0), (1, 1, 1)),
    mean=(0.5, 0.5, 0.5),
    std=(0.2, 0.2, 0.2),
    input_size=(16,),
    resize="shorter",
    size_divisor=4,
)


def _is_image(array: np.ndarray) -> bool:
    return array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3 and 0 not in array.shape


@SETTINGS
@given(array=ARRAYS)
def test_segmenter_returns_labels_of_the_image_shape_or_raises_seg_error(segmenter, array):
    try:
        labels = segmenter(array)
    except SegError:
        assert not (_is_image(array) or (array.ndim == 4 and len(array) and _is_image(array[0])))
        return
    assert array.dtype == np.uint8 and array.shape[-1] == 3
    assert labels.dtype == np.uint8 and labels.shape == array.shape[:-1]
    assert int(labels.max()) < len(segmenter.classes)


@SETTINGS
@given(images=st.lists(st.one_of(ARRAYS, IMAGE), max_size=3))
def test_segmenter_on_a_list_returns_one_label_map_per_image_or_raises_seg_error(segmenter, images):
    try:
        results = segmenter(images)
    except SegError:
        assert not images or not all(_is_image(image) for image in images)
        return
    assert all(_is_image(image) for image in images) and len(results) == len(images)
    for image, labels in zip(images, results, strict=True):
        assert labels.dtype == np.uint8 and labels.shape == image.shape[:2]
        assert int(labels.max()) < len(segmenter.classes)


@SETTINGS
@given(array=st.one_of(ANY_ARRAY, BATCH))
def test_preprocess_returns_the_network_tensor_or_raises_seg_error(array):
    try:
        tensor = preprocess(array, CARD)
    except SegError:
        assert not (array.ndim == 4 and 0 not in array.shape and _is_image(array[0]))
        return
    assert array.dtype == np.uint8 and array.ndim == 4 and array.shape[3] == 3
    batch, height, width = array.shape[:3]
    assert tensor.shape == (batch, 3, *CARD.network_size(height, width)) and tensor.dtype == np.float32
    assert np.isfinite(tensor).all() and tensor.flags.c_contiguous


@SETTINGS
@given(
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    batch=st.integers(1, 3),
    fixed=st.booleans(),
    side=st.integers(2, 24).map(lambda v: 4 * v),
)
def test_host_steps_produce_the_right_shapes(height, width, batch, fixed, side):
    card = ModelCard(
        model="m",
        classes=("a", "b"),
        palette=((0, 0, 0), (1, 1, 1)),
        mean=(0.5, 0.5, 0.5),
        std=(0.2, 0.2, 0.2),
        input_size=(side, side + 8) if fixed else (side,),
        resize="fixed" if fixed else "shorter",
        size_divisor=4,
    )
    images = np.random.default_rng(height * width).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
    tensor = preprocess(images, card)
    net_h, net_w = card.network_size(height, width)
    assert tensor.shape == (batch, 3, net_h, net_w) and tensor.dtype == np.float32 and net_h % 4 == 0
    labels = postprocess(np.random.default_rng(0).standard_normal((batch, 2, net_h, net_w), np.float32), height, width)
    assert labels.shape == (batch, height, width) and labels.dtype == np.uint8


@SETTINGS
@given(
    array=arrays(
        np.float32,
        st.tuples(st.just(1), st.integers(1, 12), st.integers(1, 12), st.just(2)),
        elements=st.floats(-1e3, 1e3, width=32),
    ),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
)
def test_bilinear_resize_never_leaves_the_input_range(array, height, width):
    out = resize_bilinear(array, height, width)
    assert out.shape == (1, height, width, 2)
    assert out.min() >= array.min() - 1e-3 and out.max() <= array.max() + 1e-3
