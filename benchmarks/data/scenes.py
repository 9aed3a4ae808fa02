"""The shapes set's pictures: seven classes of shapes and regions drawn as a scene, rendered with texture, uneven
light, blur and noise, and the label map beside it. Deterministic per seed (numpy only).

Colour and texture are drawn independently of the class, so only geometry tells the classes apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segrt.image import voc_palette

CLASSES = ("background", "ellipse", "rectangle", "triangle", "star", "ring", "band")
PALETTE = voc_palette(len(CLASSES))
SHAPE_KINDS = CLASSES[1:6]  # the compact shapes; "band" is a wavy strip across the whole image
TEXTURES = ("flat", "gradient", "stripes", "speckle", "checker")  # of shapes, drawn independently of the class
BACKGROUND_TEXTURES = ("flat", "gradient", "clouds", "speckle")  # a backdrop: smoother, like walls and floors
SIDE_RANGE = (192, 320)  # image height and width are drawn from this range independently
MIN_VISIBLE = 0.75  # a shape is redrawn elsewhere if a later one would hide more than a quarter of it
MIN_COLOUR_DISTANCE = 90.0  # RGB distance of a shape's colour from the background's and earlier shapes'


@dataclass(frozen=True)
class Shape:
    """One labelled region. Lengths are in pixels, `angle` in radians, (x, y) with y down.

    ellipse, rectangle: semi-axes / half sides `radii` = (along the rotated x, along y).
    triangle: base from (-rx, ry) to (rx, ry), apex at (skew * rx, -ry), then rotated.
    star: `points` tips at radius rx (ry along the rotated y), inner corners at `inner` of that.
    ring: an ellipse with a hole of `inner` times its semi-axes.
    band: a strip of half width rx whose centre line, along the rotated x through `centre`,
    waves with amplitude ry and period `period`; it crosses the whole image.
    """

    kind: str
    centre: tuple[float, float]
    radii: tuple[float, float]
    angle: float = 0.0
    colour: tuple[int, int, int] = (255, 255, 255)
    texture: str = "flat"
    inner: float = 0.5
    points: int = 5
    skew: float = 0.0
    period: float = 100.0
    phase: float = 0.0
    texture_seed: int = 0

    @property
    def label(self) -> int:
        return CLASSES.index(self.kind)


@dataclass(frozen=True)
class Scene:
    """Everything an image is made of; `render` turns it into pixels and labels."""

    height: int
    width: int
    background: tuple[int, int, int] = (0, 0, 0)
    background_texture: str = "flat"
    shapes: tuple[Shape, ...] = ()
    clutter: tuple[Shape, ...] = ()  # thin strokes and dots drawn on the background, labelled background
    light: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)  # gain, slope, direction, vignette
    cast: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel gain
    blur: float = 0.0  # Gaussian radius in pixels
    noise: float = 0.0  # Gaussian sigma in grey levels
    seed: int = 0  # texture and noise randomness
    extras: dict[str, float] = field(default_factory=dict)
    noise_seed: int | None = None  # the noise's own seed (a clip's frames share textures, not noise); None: seed
    textures_move: bool = False  # paint each shape's texture in its own frame, so it moves and turns with it


# --- geometry: masks at pixel centres ---------------------------------------------------------------


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: pixel (row i, column j) is the point (j + 0.5, i + 0.5)."""
    ys = np.arange(height, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(width, dtype=np.float64)[None, :] + 0.5
    return xs, ys


def _local(shape: Shape, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in the shape's own frame: origin at its centre, axes turned by its angle."""
    dx, dy = xs - shape.centre[0], ys - shape.centre[1]
    cos, sin = np.cos(shape.angle), np.sin(shape.angle)
    return cos * dx + sin * dy, -sin * dx + cos * dy


def polygon_mask(vertices: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of the points (xs, ys) against a closed polygon of K x 2 vertices."""
    inside = np.zeros(np.broadcast_shapes(xs.shape, ys.shape), dtype=bool)
    for (x1, y1), (x2, y2) in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        if y1 == y2:
            continue  # a horizontal edge never crosses a horizontal ray
        crosses = (y1 > ys) != (y2 > ys)
        x_at_y = x1 + (ys - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (xs < x_at_y)
    return inside


def star_vertices(shape: Shape) -> np.ndarray:
    """The 2 * points corners of a star in its own frame, first tip pointing up."""
    count = 2 * shape.points
    angles = -np.pi / 2 + np.arange(count) * np.pi / shape.points
    scale = np.where(np.arange(count) % 2 == 0, 1.0, shape.inner)
    return np.stack([shape.radii[0] * scale * np.cos(angles), shape.radii[1] * scale * np.sin(angles)], axis=1)


def shape_mask(shape: Shape, height: int, width: int) -> np.ndarray:
    """Boolean H x W mask of the pixels whose centres lie inside `shape` (edges count as inside)."""
    xs, ys = _grid(height, width)
    u, v = _local(shape, xs, ys)
    rx, ry = shape.radii
    if shape.kind == "ellipse":
        return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    if shape.kind == "ring":
        radius2 = (u / rx) ** 2 + (v / ry) ** 2
        return (radius2 <= 1.0) & (radius2 > shape.inner**2)
    if shape.kind == "rectangle":
        return (np.abs(u) <= rx) & (np.abs(v) <= ry)
    if shape.kind == "triangle":
        corners = np.array([(-rx, ry), (rx, ry), (shape.skew * rx, -ry)])
        return polygon_mask(corners, u, v)
    if shape.kind == "star":
        return polygon_mask(star_vertices(shape), u, v)
    if shape.kind == "band":
        centre_line = ry * np.sin(2 * np.pi * u / shape.period + shape.phase)
        return np.abs(v - centre_line) <= rx
    raise ValueError(f"unknown shape kind {shape.kind!r}")


# --- appearance --------------------------------------------------------------------------------------


def _texture(
    kind: str,
    colour: tuple[int, int, int],
    seed: int,
    height: int,
    width: int,
    coords: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Float H x W x 3 fill of one region; its mean stays near `colour`.

    The pattern is laid out on `coords` (x, y of every pixel; default the image's own grid),
    so a shape's local coordinates make its stripes and checks move with it.
    """
    rng = np.random.default_rng(seed)
    base = np.asarray(colour, dtype=np.float32)
    fill = np.broadcast_to(base, (height, width, 3)).copy()
    if kind == "flat":
        return fill
    xs, ys = coords if coords is not None else _grid(height, width)
    angle = rng.uniform(0, np.pi)
    along = (np.cos(angle) * xs + np.sin(angle) * ys).astype(np.float32)
    if kind == "gradient":
        span = rng.uniform(0.25, 0.5)
        ramp = (along - along.mean()) / max(float(np.ptp(along)), 1.0)
        return fill * (1.0 + 2 * span * ramp)[..., None]
    other = _partner_colour(base, rng)
    if kind == "stripes":
        period = rng.uniform(5, 14)
        on = (along % period) < period / 2
        return np.where(on[..., None], fill, other)
    if kind == "checker":
        cell = rng.uniform(5, 12)
        across = (-np.sin(angle) * xs + np.cos(angle) * ys).astype(np.float32)
        on = ((np.floor(along / cell) + np.floor(across / cell)) % 2) == 0
        return np.where(on[..., None], fill, other)
    if kind == "speckle":
        return fill + rng.normal(0, rng.uniform(12, 28), size=(height, width, 1)).astype(np.float32)
    if kind == "clouds":  # smooth blotches: coarse noise enlarged with bicubic interpolation
        from PIL import Image

        coarse = rng.normal(0, 1, size=(int(rng.integers(3, 8)), int(rng.integers(3, 8)))).astype(np.float32)
        smooth = np.asarray(Image.fromarray(coarse, mode="F").resize((width, height), Image.Resampling.BICUBIC))
        tint = rng.uniform(0.6, 1.0, size=3).astype(np.float32)
        return fill + rng.uniform(20, 45) * smooth[..., None] * tint
    raise ValueError(f"unknown texture {kind!r}")


def _partner_colour(base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The second colour of a two-tone texture: the same hue, darker or lighter."""
    if rng.random() < 0.5:
        return base * rng.uniform(0.55, 0.75)
    return base + (255 - base) * rng.uniform(0.3, 0.5)


def _lighting(scene: Scene) -> np.ndarray:
    """Multiplicative H x W light field: a linear slope plus a darkening towards the corners."""
    gain, slope, direction, vignette = scene.light
    xs, ys = _grid(scene.height, scene.width)
    xn, yn = xs / scene.width - 0.5, ys / scene.height - 0.5
    ramp = np.cos(direction) * xn + np.sin(direction) * yn
    field = gain * (1.0 + slope * ramp) * (1.0 - vignette * (xn**2 + yn**2))
    return field.astype(np.float32)


def render(scene: Scene, *, clean: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Draw a scene: uint8 H x W x 3 RGB and uint8 H x W labels (class ids).

    Shapes are painted in order, each over the ones before it, and the label map
    follows the same masks. `clean=True` skips light, colour cast, blur and
    noise, so every pixel is exactly its region's fill (what the tests check).
    """
    from PIL import Image, ImageFilter

    height, width = scene.height, scene.width
    pixels = _texture(scene.background_texture, scene.background, scene.seed, height, width)
    labels = np.zeros((height, width), dtype=np.uint8)
    for stroke in scene.clutter:
        mask = shape_mask(stroke, height, width)
        pixels[mask] = _texture(stroke.texture, stroke.colour, stroke.texture_seed, height, width)[mask]
    for shape in scene.shapes:
        mask = shape_mask(shape, height, width)
        coords = _local(shape, *_grid(height, width)) if scene.textures_move else None
        pixels[mask] = _texture(shape.texture, shape.colour, shape.texture_seed, height, width, coords)[mask]
        labels[mask] = shape.label
    if not clean:
        pixels = pixels * _lighting(scene)[..., None] * np.asarray(scene.cast, np.float32)
    image = np.clip(pixels + 0.5, 0, 255).astype(np.uint8)
    if not clean and scene.blur > 0:
        blurred = Image.fromarray(image).filter(ImageFilter.GaussianBlur(scene.blur))
        image = np.asarray(blurred, dtype=np.uint8)
    if not clean and scene.noise > 0:
        noise_seed = scene.seed if scene.noise_seed is None else scene.noise_seed
        noise = np.random.default_rng([noise_seed, 1]).normal(0, scene.noise, size=image.shape)
        image = np.clip(image + noise + 0.5, 0, 255).astype(np.uint8)
    return image, labels


# --- random scenes -----------------------------------------------------------------------------------


def distinct_colour(rng: np.random.Generator, avoid: Sequence[tuple[int, int, int]]) -> tuple[int, int, int]:
    """A random colour at least MIN_COLOUR_DISTANCE from each colour in `avoid` (best of 50 tries)."""
    best, best_distance = (0, 0, 0), -1.0
    for _ in range(50):
        candidate = tuple(int(v) for v in rng.integers(0, 256, size=3))
        distance = min((float(np.linalg.norm(np.subtract(candidate, a))) for a in avoid), default=1e9)
        if distance >= MIN_COLOUR_DISTANCE:
            return candidate  # type: ignore[return-value]
        if distance > best_distance:
            best, best_distance = candidate, distance  # type: ignore[assignment]
    return best


def drawn_shape(
    kind: str, centre: tuple[float, float], radii: tuple[float, float], rng: np.random.Generator, **look: Any
) -> Shape:
    """A shape of `kind` at `centre`, its inner radius (star, ring), points (star) and skew drawn from `rng`, in
    that order (the generators' files depend on it)."""
    return Shape(
        kind,
        centre,
        radii,
        inner=float(rng.uniform(0.38, 0.5) if kind == "star" else rng.uniform(0.45, 0.65)),
        points=int(rng.integers(5, 7)),
        skew=float(rng.uniform(-0.6, 0.6)),
        **look,
    )


def _random_shape(
    kind: str, rng: np.random.Generator, height: int, width: int, avoid: Sequence[tuple[int, int, int]]
) -> Shape:
    side = min(height, width)
    common = {
        "angle": float(rng.uniform(0, 2 * np.pi)),
        "colour": distinct_colour(rng, avoid),
        "texture": str(rng.choice(TEXTURES)),
        "texture_seed": int(rng.integers(2**31)),
    }
    if kind == "band":
        centre = (float(rng.uniform(0.2, 0.8) * width), float(rng.uniform(0.2, 0.8) * height))
        half_width = float(rng.uniform(0.05, 0.1) * side)
        amplitude = float(rng.uniform(0.0, 0.08) * side)
        period = float(rng.uniform(0.6, 1.4) * side)
        return Shape(
            kind, centre, (half_width, amplitude), period=period, phase=float(rng.uniform(0, 2 * np.pi)), **common
        )
    radius = float(side * rng.uniform(0.11, 0.28))
    aspect = {"ellipse": (0.45, 1.0), "rectangle": (0.35, 1.0), "triangle": (0.7, 1.2), "ring": (0.65, 1.0)}
    low, high = aspect.get(kind, (0.85, 1.0))
    radii = (radius, radius * float(rng.uniform(low, high)))
    margin = 0.6 * radius  # mostly inside the frame: a shape cut in half by the border is no longer its class
    centre = (float(rng.uniform(margin, width - margin)), float(rng.uniform(margin, height - margin)))
    return drawn_shape(kind, centre, radii, rng, **common)


def background_clutter(
    rng: np.random.Generator, height: int, width: int, background: tuple[int, int, int]
) -> list[Shape]:
    """Thin strokes and small dots: edges and blobs that are background, so edges alone do not mean shape."""
    side = min(height, width)
    clutter = []
    for _ in range(int(rng.integers(0, 5))):
        common = {
            "colour": distinct_colour(rng, [background]),
            "texture": "flat",
            "angle": float(rng.uniform(0, 2 * np.pi)),
        }
        centre = (float(rng.uniform(0, width)), float(rng.uniform(0, height)))
        if rng.random() < 0.6:  # a thin straight line across the image
            clutter.append(Shape("band", centre, (float(rng.uniform(0.6, 2.0)), 0.0), **common))
        else:  # a small dot
            radius = float(side * rng.uniform(0.015, 0.035))
            clutter.append(Shape("ellipse", centre, (radius, radius * float(rng.uniform(0.6, 1.0))), **common))
    return clutter


def random_scene(rng: np.random.Generator) -> Scene:
    """Draw one scene: 2-6 shapes (and a band in 40 % of images), each at least 75 % visible."""
    height, width = (int(v) for v in rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1, size=2))
    background = tuple(int(v) for v in rng.integers(0, 256, size=3))
    kinds = [str(k) for k in rng.choice(SHAPE_KINDS, size=int(rng.integers(2, 7)))]
    if rng.random() < 0.4:
        kinds.insert(int(rng.integers(0, len(kinds) + 1)), "band")
    shapes: list[Shape] = []
    masks: list[np.ndarray] = []
    for kind in kinds:
        for _ in range(20):  # try placements until every shape keeps MIN_VISIBLE of itself
            shape = _random_shape(kind, rng, height, width, [background, *(s.colour for s in shapes)])
            mask = shape_mask(shape, height, width)
            if mask.sum() < 0.003 * height * width:
                continue
            if all(((m & ~mask).sum() >= MIN_VISIBLE * m.sum()) for m in _visible(masks)):
                shapes.append(shape)
                masks.append(mask)
                break
    return Scene(
        height=height,
        width=width,
        background=background,  # type: ignore[arg-type]
        background_texture=str(rng.choice(BACKGROUND_TEXTURES)),
        shapes=tuple(shapes),
        clutter=tuple(background_clutter(rng, height, width, background)),  # type: ignore[arg-type]
        light=(
            float(rng.uniform(0.7, 1.15)),
            float(rng.uniform(0.0, 0.6)),
            float(rng.uniform(0, 2 * np.pi)),
            float(rng.uniform(0.0, 1.2)),
        ),
        cast=tuple(float(v) for v in rng.uniform(0.85, 1.15, size=3)),  # type: ignore[arg-type]
        blur=float(rng.uniform(0.0, 1.2)),
        noise=float(rng.uniform(0.0, 10.0)),
        seed=int(rng.integers(2**31)),
        extras={"jpeg_quality": int(rng.integers(75, 96))},
    )


def _visible(masks: list[np.ndarray]) -> list[np.ndarray]:
    """What is left in view of each mask once the later ones are painted over it."""
    visible = []
    for index, mask in enumerate(masks):
        covered = np.zeros_like(mask)
        for later in masks[index + 1 :]:
            covered |= later
        visible.append(mask & ~covered)
    return visible


def sample(seed: int, split: str, index: int) -> tuple[Scene, np.ndarray, np.ndarray]:
    """The scene, image and labels of sample `index` of `split`; independent of how many are drawn."""
    rng = np.random.default_rng([seed, ("train", "val").index(split), index])
    scene = random_scene(rng)
    image, labels = render(scene)
    return scene, image, labels
