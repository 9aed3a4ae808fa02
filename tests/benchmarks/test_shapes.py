"""The generated shapes set: deterministic files, labels that sit exactly on the pixels they name."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from segbench.data import scenes, shapes
from segbench.data.scenes import CLASSES, Scene, Shape, render
from segrt.image import read_image, read_labels_png


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shapes.generate(tmp_path_factory.mktemp("shapes") / "a", train=6, val=2, seed=11)


def test_same_seed_gives_byte_identical_files(small_set: Path, tmp_path: Path) -> None:
    again = shapes.generate(tmp_path / "b", train=6, val=2, seed=11)
    first, second = _files(small_set), _files(again)
    assert len(first) == 6 + 2 + 6 + 2 + 2 + 1  # images, labels, two split files, dataset.json
    assert first.keys() == second.keys()
    assert [k for k in first if k != "dataset.json" and first[k] != second[k]] == []


def test_different_seed_gives_different_images(small_set: Path, tmp_path: Path) -> None:
    other = _files(shapes.generate(tmp_path / "c", train=6, val=2, seed=12))
    first = _files(small_set)
    changed = [k for k in first if k.startswith(("JPEGImages", "SegmentationClass")) and first[k] != other[k]]
    assert len(changed) == 16


def test_voc_layout_and_split_files(small_set: Path) -> None:
    split = (small_set / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    assert split == [f"train_{i:05d}" for i in range(6)]
    assert (small_set / "ImageSets" / "Segmentation" / "val.txt").read_text().split() == ["val_00000", "val_00001"]
    sizes = set()
    for name in split:
        image = read_image(small_set / "JPEGImages" / f"{name}.jpg")
        labels = read_labels_png(small_set / "SegmentationClass" / f"{name}.png")
        assert image.shape[:2] == labels.shape
        assert labels.max() < len(CLASSES)
        sizes.add(labels.shape)
        assert all(scenes.SIDE_RANGE[0] <= side <= scenes.SIDE_RANGE[1] for side in labels.shape)
    assert len(sizes) == 6 and any(h != w for h, w in sizes)


def test_axis_aligned_rectangle_covers_exactly_its_pixels() -> None:
    """Pixel (row i, col j) is the point (j + 0.5, i + 0.5); a rectangle spanning x 10..50, y 20..40
    owns rows 20..39 and columns 10..49 and nothing else -- an off-by-one or a swapped axis fails."""
    colour, background = (200, 100, 50), (10, 20, 30)
    scene = Scene(
        height=60, width=80, background=background, shapes=(Shape("rectangle", (30, 30), (20, 10), colour=colour),)
    )
    image, labels = render(scene, clean=True)
    expected = np.zeros((60, 80), np.uint8)
    expected[20:40, 10:50] = CLASSES.index("rectangle")
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(image[expected > 0], np.broadcast_to(colour, ((expected > 0).sum(), 3)))
    np.testing.assert_array_equal(image[expected == 0], np.broadcast_to(background, ((expected == 0).sum(), 3)))


def test_rotated_and_curved_shapes_put_labels_where_geometry_says() -> None:
    def label_at(shape: Shape, x: float, y: float) -> int:
        _, labels = render(Scene(height=100, width=120, shapes=(shape,)), clean=True)
        return int(labels[int(y), int(x)])

    # A triangle with its apex up (-y), turned by +90 degrees: the shape's own x axis points along
    # the image's +y, so the apex points to +x and the base lies on the left, at x = 60 - 30.
    triangle = Shape("triangle", (60, 50), (20, 30), angle=np.pi / 2)
    assert label_at(triangle, 35, 65) == CLASSES.index("triangle")  # near the base, 15 px off the axis
    assert label_at(triangle, 85, 60) == 0  # near the apex, 10 px off the axis
    assert label_at(triangle, 86, 50) == CLASSES.index("triangle")  # the apex itself
    ring = Shape("ring", (60, 50), (30, 30), inner=0.5)
    assert label_at(ring, 60, 50) == 0 and label_at(ring, 60 + 22, 50) == CLASSES.index("ring")
    star = Shape("star", (60, 50), (40, 40), inner=0.4, points=5)
    assert label_at(star, 60, 50 - 37) == CLASSES.index("star")  # the upper tip
    assert label_at(star, 60, 50 + 37) == 0  # between the two lower tips
    band = Shape("band", (60, 50), (5, 0), angle=0.0)  # a horizontal strip rows 45..54
    _, labels = render(Scene(height=100, width=120, shapes=(band,)), clean=True)
    rows = np.flatnonzero(labels[:, 0])
    assert rows.tolist() == list(range(45, 55)) and (labels[45:55] == CLASSES.index("band")).all()


def test_later_shapes_own_the_pixels_they_cover() -> None:
    below = Shape("ellipse", (40, 40), (25, 25), colour=(255, 0, 0))
    above = Shape("rectangle", (55, 40), (12, 30), colour=(0, 0, 255))
    image, labels = render(Scene(height=80, width=100, shapes=(below, above)), clean=True)
    overlap = scenes.shape_mask(below, 80, 100) & scenes.shape_mask(above, 80, 100)
    assert overlap.sum() > 100
    assert (labels[overlap] == CLASSES.index("rectangle")).all()
    assert (image[overlap] == (0, 0, 255)).all()


def test_random_scenes_paint_each_label_with_its_shape() -> None:
    """With flat fills and no light or noise, each pixel's colour says which shape owns it: it must
    match the label map everywhere, over many random scenes with rotation, overlap and clutter."""
    for index in range(12):
        scene = scenes.random_scene(np.random.default_rng([99, index]))
        flat = replace(
            scene,
            background_texture="flat",
            shapes=tuple(replace(s, texture="flat", colour=(index, k + 1, 250)) for k, s in enumerate(scene.shapes)),
            clutter=tuple(replace(s, colour=(index, 0, 0)) for s in scene.clutter),
            background=(index, 0, 0),
        )
        image, labels = render(flat, clean=True)
        owner = image[..., 1].astype(int)  # 0: background or clutter, k + 1: shape k
        expected = np.array([0] + [s.label for s in scene.shapes], np.uint8)[owner]
        np.testing.assert_array_equal(labels, expected)


def test_written_files_hold_the_rendered_sample(small_set: Path) -> None:
    """The PNG is the rendered label map and the JPEG decodes to the rendered image up to JPEG loss, unflipped."""
    for split, index in (("train", 0), ("train", 5), ("val", 1)):
        _, image, labels = scenes.sample(11, split, index)
        name = f"{split}_{index:05d}"
        np.testing.assert_array_equal(read_labels_png(small_set / "SegmentationClass" / f"{name}.png"), labels)
        decoded = read_image(small_set / "JPEGImages" / f"{name}.jpg").astype(np.float32)
        loss = np.abs(decoded - image).mean()  # JPEG mostly removes the sensor noise
        mirrored = min(np.abs(decoded[::-1] - image).mean(), np.abs(decoded[:, ::-1] - image).mean())
        assert loss < 10.0 and loss < 0.6 * mirrored, (name, loss, mirrored)


def _grow(mask: np.ndarray, steps: int) -> np.ndarray:
    for _ in range(steps):
        grown = mask.copy()
        grown[1:] |= mask[:-1]
        grown[:-1] |= mask[1:]
        grown[:, 1:] |= mask[:, :-1]
        grown[:, :-1] |= mask[:, 1:]
        mask = grown
    return mask


def test_written_labels_line_up_with_image_edges(small_set: Path) -> None:
    """After light, blur, noise and JPEG the image still changes most where the labels change, clearly
    more than where a label map moved by 3 pixels or mirrored says (so a misplaced one would fail)."""

    def edge_ratio(image: np.ndarray, labels: np.ndarray) -> float:
        dy, dx = np.gradient(image.astype(np.float32), axis=(0, 1))
        gradient = np.sqrt((dx**2 + dy**2).sum(axis=2))
        boundary = np.zeros(labels.shape, bool)
        boundary[:, 1:] |= labels[:, 1:] != labels[:, :-1]
        boundary[1:, :] |= labels[1:, :] != labels[:-1, :]
        return float(gradient[_grow(boundary, 1)].mean() / gradient[~_grow(boundary, 3)].mean())

    for index in range(6):
        name = f"train_{index:05d}"
        image = read_image(small_set / "JPEGImages" / f"{name}.jpg")
        labels = read_labels_png(small_set / "SegmentationClass" / f"{name}.png")
        aligned = edge_ratio(image, labels)
        misplaced = max(edge_ratio(image, np.roll(labels, 3, axis=1)), edge_ratio(image, labels[::-1]))
        assert aligned > 1.5 and aligned > 1.2 * misplaced, (name, aligned, misplaced)


def test_every_class_appears_and_colour_does_not_give_it_away() -> None:
    counts = np.zeros(len(CLASSES), int)
    colours: dict[int, list[tuple[int, int, int]]] = {}
    for index in range(40):
        scene = scenes.random_scene(np.random.default_rng([5, index]))
        for shape in scene.shapes:
            counts[shape.label] += 1
            colours.setdefault(shape.label, []).append(shape.colour)
    assert (counts[1:] >= 5).all(), counts
    for label, seen in colours.items():  # every class shows dark and bright, red and blue shapes
        spread = np.ptp(np.asarray(seen), axis=0)
        assert (spread > 150).all(), (CLASSES[label], spread)


def test_command_writes_the_set_and_refuses_an_empty_one(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert shapes.main([str(tmp_path / "d"), "--train", "1", "--val", "1", "--seed", "3"]) == 0
    assert (tmp_path / "d" / "JPEGImages" / "val_00000.jpg").is_file()
    assert shapes.main([str(tmp_path / "e"), "--train", "0", "--val", "0"]) == 2
    assert "at least one sample" in capsys.readouterr().err
