"""The labelled set `segexport --val DIR` scores the precision search on (Pascal-VOC, `segrt.dataset`),
checked against the model before any work: the classes must mean the same thing id by id."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from segexport.precision.scoring import EvalImages
from segrt.dataset import VocDataset
from segrt.errors import SegError


def open_val(root: str | os.PathLike[str]) -> VocDataset:
    """The val split of the VOC folder `root`, its layout and image/label sizes checked; SegError naming --val."""
    try:
        return VocDataset(root, split="val")
    except SegError as exc:
        message = str(exc)  # it names a file under `root`, or `root` itself
        raise SegError(f"--val {message if message.startswith(str(root)) else f'{root}: {message}'}") from None


def pick(count: int | None, total: int) -> list[int]:
    """Indices of `count` samples spread evenly over `total` (all of them without a count)."""
    if count is None or count >= total:
        return list(range(total))
    return sorted({int(i) for i in np.linspace(0, total - 1, count).round()})


def check_classes(
    dataset: VocDataset, classes: tuple[str, ...], count: int | None = None, *, every_class: bool = False
) -> None:
    """Refuse a set labelled with other classes than the model's: the names the folder records, when it
    records them, and in any case every label id (255, void, aside) below the model's class count. With
    `every_class` (a per-class budget), also a set where a class has no pixel: its IoU cannot be measured."""
    root = dataset.root
    named = dataset.classes
    if named is not None and tuple(named) != tuple(classes):
        raise SegError(
            f"--val {root}: its classes ({', '.join(named)}) differ from the model's ({', '.join(classes)}); "
            f"score on a set labelled with the model's classes, in its order (or export with --classes)"
        )
    from segrt.image import read_labels_png

    present: set[int] = set()
    chosen = pick(count, len(dataset))
    for index in chosen:
        name = dataset.names[index]
        path = root / "SegmentationClass" / f"{name}.png"
        labels = read_labels_png(path)
        ids = np.unique(labels[labels != 255])
        if ids.size and int(ids.max()) >= len(classes):
            raise SegError(
                f"--val {path}: class id {int(ids.max())}, but the model has {len(classes)} classes "
                f"({', '.join(classes)}); score on a set labelled with the model's classes"
            )
        present.update(int(i) for i in ids)
    missing = [name for index, name in enumerate(classes) if index not in present]
    if every_class and missing:
        images = f"the {len(chosen)} val images scored" if len(chosen) < len(dataset) else "its val split"
        also = f" (nor has {', '.join(missing[1:])})" if missing[1:] else ""
        more = ", or raise --val-count" if len(chosen) < len(dataset) else ""
        raise SegError(
            f"--val {root}: class {missing[0]!r} has no pixels in {images}{also}, so its IoU cannot be measured "
            f"for --max-class-iou-drop; add images showing it{more}"
        )


def val_images(dataset: VocDataset, count: int | None, *, labelled: bool) -> EvalImages:
    """Decode the (spread) samples once: images, and their label maps when `labelled`."""
    chosen = pick(count, len(dataset))
    samples = [dataset[index] for index in chosen]
    where = f"--val {Path(dataset.root)} (val split, {len(samples)} of {len(dataset)} images)"
    truth = tuple(sample.labels for sample in samples) if labelled else None
    return EvalImages(where=where, images=tuple(sample.image for sample in samples), truth=truth)
