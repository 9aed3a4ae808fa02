"""The image shapes an engine takes (min, opt, max N x H x W) and the optimization profile they give its input.

Pure arithmetic on the model card, no TensorRT: a fused graph takes the images themselves, an
unfused one the network-size tensors the card's resize gives for them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from segrt.errors import SegError
from segrt.meta import ModelCard

Shape = tuple[int, int, int]  # N, H, W of the images the engine takes

# The default profile covers the common camera frames: 64x64 tiles up to 1080p in either
# orientation (1920x1080 and 1080x1920), tuned for 720p, one image at a time. A fused graph
# resizes to the network size inside the engine, so a wide H x W range costs only the
# input/output buffers (1920x1920x3 uint8 is 11 MB); batching is opt-in (--max-shape 8x...)
# because activation memory grows with N, which matters on an 8 GB Jetson.
DEFAULT_MIN_SHAPE: Shape = (1, 64, 64)
DEFAULT_OPT_SHAPE: Shape = (1, 720, 1280)
DEFAULT_MAX_SHAPE: Shape = (1, 1920, 1920)

_SHAPE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)\s*$", re.I)


def parse_shape(text: str) -> Shape:
    """ "1x480x640" -> (1, 480, 640): images per batch x height x width. ValueError names the format.

    The one NxHxW reader: engine profiles (--min-shape ...), segbench's shapes, segbench served's --shape.
    """
    match = _SHAPE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not NxHxW (images x height x width, e.g. 1x480x640)")
    shape = (int(match[1]), int(match[2]), int(match[3]))
    if min(shape) < 1:
        raise ValueError(f"{text!r}: every dimension of NxHxW must be at least 1, e.g. 1x480x640")
    return shape


@dataclass(frozen=True)
class ShapeRange:
    """The N x H x W image shapes an engine accepts (min, opt, max)."""

    min: Shape = DEFAULT_MIN_SHAPE
    opt: Shape = DEFAULT_OPT_SHAPE
    max: Shape = DEFAULT_MAX_SHAPE

    def __post_init__(self) -> None:
        for axis, name in enumerate(("N", "H", "W")):
            low, best, high = self.min[axis], self.opt[axis], self.max[axis]
            if not low <= best <= high:
                raise SegError(
                    f"--min-shape/--opt-shape/--max-shape: {name} must grow from min to opt to max, got "
                    f"{low}, {best}, {high}; e.g. --min-shape 1x64x64 --opt-shape 1x720x1280 --max-shape 1x1920x1920"
                )


def shape_range(low: Shape | None = None, best: Shape | None = None, high: Shape | None = None) -> ShapeRange:
    """The profile from the shapes given (None: not given); defaults bend to fit the given ones.

    `--max-shape 1x480x640` alone gives opt 1x480x640 (the 720p default clamped), and
    `--min-shape 1x1080x1920` alone raises max to cover it; shapes given that contradict
    each other are refused (SegError).
    """
    given = [s for s in (low, best, high) if s is not None]
    if high is None:
        high = _elementwise(max, DEFAULT_MAX_SHAPE, *given)
    if low is None:
        low = _elementwise(min, DEFAULT_MIN_SHAPE, *given)
    if best is None:
        best = _elementwise(min, _elementwise(max, DEFAULT_OPT_SHAPE, low), high)
    return ShapeRange(low, best, high)


def _elementwise(pick: Any, *shapes: Shape) -> Shape:
    n, h, w = (pick(values) for values in zip(*shapes, strict=True))
    return n, h, w


def fit_size(height: int, width: int, shapes: ShapeRange) -> tuple[int, int]:
    """An image size inside the profile's H x W range, keeping the aspect ratio where the range allows."""
    (_, min_h, min_w), (_, max_h, max_w) = shapes.min[:3], shapes.max[:3]
    scale = min(1.0, max_h / height, max_w / width)
    scale = max(scale, min_h / height, min_w / width)
    fitted_h = min(max(round(height * scale), min_h), max_h)
    fitted_w = min(max(round(width * scale), min_w), max_w)
    return fitted_h, fitted_w


def input_profile(
    card: ModelCard, shapes: ShapeRange, static_dims: Sequence[int] | None = None
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The (min, opt, max) shapes of the network input for image shapes `shapes`.

    A fused graph takes the images themselves (N x H x W x 3 uint8). An unfused graph takes
    N x 3 x h x w at the network size the card gives for those images: one size for a fixed
    resize, the range spanned by min/opt/max images for a shorter-side resize. Dimensions the
    graph fixes (`static_dims`, -1 where dynamic) win over the requested ones.
    """
    profile: list[tuple[int, ...]]
    if card.fused:
        profile = [(n, h, w, 3) for n, h, w in (shapes.min, shapes.opt, shapes.max)]
    else:
        sizes = [card.network_size(h, w) for _, h, w in (shapes.min, shapes.opt, shapes.max)]
        low = (min(s[0] for s in sizes), min(s[1] for s in sizes))
        high = (max(s[0] for s in sizes), max(s[1] for s in sizes))
        best = (min(max(sizes[1][0], low[0]), high[0]), min(max(sizes[1][1], low[1]), high[1]))
        batches = (shapes.min[0], shapes.opt[0], shapes.max[0])
        profile = [(n, 3, h, w) for n, (h, w) in zip(batches, (low, best, high), strict=True)]
    if static_dims is not None:
        if len(static_dims) != 4:
            raise SegError(f"the graph's input has {len(static_dims)} dimensions; a segexport graph has 4")
        profile = [tuple(d if d >= 0 else s for s, d in zip(shape, static_dims, strict=True)) for shape in profile]
    return profile[0], profile[1], profile[2]
