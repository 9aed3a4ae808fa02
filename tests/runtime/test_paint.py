"""segrt.stream.paint: the table-driven overlay (segrun's, segros's and segrt.overlay's) against a float blend
written out here, and its colour map."""

from __future__ import annotations

import numpy as np
import pytest

from segrt.image import colorize, overlay
from segrt.stream.paint import Painter


def float_blend(image, labels, alpha, palette, ignore):
    """The definition: image x (1 - alpha) + colour x alpha, rounded, where the class is shown; else the image."""
    colours = colorize(labels, palette).astype(np.float64)
    blended = np.clip(image * (1 - alpha) + colours * alpha + 0.5, 0, 255).astype(np.uint8)
    return np.where(np.isin(labels, [0, *ignore])[..., None], image, blended)


@pytest.mark.parametrize(("alpha", "ignore"), [(0.5, ()), (0.3, (2,)), (1.0, (0, 5)), (0.0, ())])
def test_overlay_is_the_float_blend_within_one_level(alpha: float, ignore: tuple[int, ...]) -> None:
    rng = np.random.default_rng(7)
    palette = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(8)]
    image = rng.integers(0, 256, (31, 45, 3), dtype=np.uint8)
    labels = rng.integers(0, 8, (31, 45), dtype=np.uint8)
    painted = Painter(palette, alpha, ignore).overlay(image, labels)
    reference = float_blend(image, labels, alpha, palette, ignore)
    assert painted.dtype == np.uint8 and painted.shape == image.shape
    assert np.abs(painted.astype(int) - reference).max() <= 1
    assert np.array_equal(overlay(image, labels, alpha, palette=palette, ignore=ignore), painted)  # one blend
    kept = np.isin(labels, [0, *ignore])
    assert (painted[kept] == image[kept]).all()  # background and ignored classes keep the image exactly


def test_overlay_takes_a_strided_image_and_colorize_blacks_out_ignored_classes() -> None:
    palette = [(0, 0, 0), (200, 10, 30), (5, 250, 90)]
    image = np.full((8, 12, 3), 100, np.uint8)[::2, ::3]  # a view, not contiguous
    labels = np.array([[0, 1, 2, 1]] * 4, np.uint8)
    painter = Painter(palette, 0.5, ignore=(2,))
    assert painter.overlay(image, labels)[0].tolist() == [[100, 100, 100], [150, 55, 65], [100] * 3, [150, 55, 65]]
    assert (painter.colorize(labels) == np.where(labels[..., None] == 2, 0, colorize(labels, palette))).all()
