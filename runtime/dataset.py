"""The Pascal-VOC segmentation reader behind `segbench --dataset DIR` and `segexport --val DIR` (numpy + Pillow only).

A VOC folder holds JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette or
grayscale PNG whose values are class ids; 255 is VOC's "void", kept as 255 for
the accuracy code to ignore) and ImageSets/Segmentation/<split>.txt listing the
ids. The whole folder is checked when the dataset is opened -- every id has an
image and a label map of the same size -- so a broken folder fails in one clear
sentence before any benchmark time is spent. Where the folder names its classes (`dataset.json`, as
`python -m segbench.data.shapes` writes it, or CVAT's `labelmap.txt`), `classes` gives them, so a model
scored on it can be checked to mean the same thing by each id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segrt.errors import SegError
from segrt.image import read_image, read_labels_png

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VOID_LABEL = 255


@dataclass(frozen=True)
class Sample:
    """One labelled image: uint8 H x W x 3 RGB and uint8 H x W class ids (255 = void)."""

    name: str
    image: np.ndarray
    labels: np.ndarray


class VocDataset:
    """The samples of one split of a Pascal-VOC style folder, in the order of the split file.

    `names` are the ids of the split; `len(dataset)` counts them; iterating reads
    each image with `segrt.image.read_image` and its labels with
    `segrt.image.read_labels_png`. Raises SegError naming the first problem found.
    """

    def __init__(self, root: str | os.PathLike[str], split: str = "val") -> None:
        self.root = Path(root)
        self.split = split
        self.names = self._read_split()
        self._image_paths = [self._image_path(name) for name in self.names]
        self._label_paths = [self._label_path(name) for name in self.names]
        self._check_sizes()

    def __len__(self) -> int:
        return len(self.names)

    @property
    def image_paths(self) -> tuple[Path, ...]:
        """The split's image files, in its order (what calibration must never be drawn from for a val split)."""
        return tuple(self._image_paths)

    def __iter__(self) -> Iterator[Sample]:
        for index in range(len(self.names)):
            yield self[index]

    def __getitem__(self, index: int) -> Sample:
        name = self.names[index]
        image = read_image(self._image_paths[index])
        labels = read_labels_png(self._label_paths[index])
        if labels.shape != image.shape[:2]:
            raise SegError(self._size_message(name, image.shape[:2], labels.shape))
        return Sample(name=name, image=image, labels=labels)

    @property
    def classes(self) -> tuple[str, ...] | None:
        """The class names the folder records (`dataset.json` "classes", else `labelmap.txt`), or None."""
        return read_class_names(self.root)

    def __repr__(self) -> str:
        return f"VocDataset({str(self.root)!r}, split={self.split!r}, {len(self)} samples)"

    # --- checks -------------------------------------------------------------------------------------

    def _read_split(self) -> tuple[str, ...]:
        root = self.root
        if not root.is_dir():
            raise SegError(f"{root}: no such dataset folder; pass a Pascal-VOC folder (with JPEGImages/)")
        layout = "expected JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/<split>.txt"
        for folder in ("JPEGImages", "SegmentationClass"):
            if not (root / folder).is_dir():
                hint = "".join(
                    f"; did you mean {child}?" for child in sorted(root.glob("VOC*")) if (child / folder).is_dir()
                )
                raise SegError(f"{root}: not a Pascal-VOC folder, {folder}/ is missing ({layout}){hint}")
        split_file = root / "ImageSets" / "Segmentation" / f"{self.split}.txt"
        if not split_file.is_file():
            present = sorted(p.stem for p in (root / "ImageSets" / "Segmentation").glob("*.txt"))
            known = f"; splits present: {', '.join(present)}" if present else ""
            raise SegError(f"{split_file}: split file missing ({layout}){known}")
        try:
            lines = split_file.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SegError(f"{split_file}: cannot read the split file ({exc})") from None
        names = tuple(line.split()[0] for line in lines if line.strip())
        if not names:
            raise SegError(f"{split_file}: the split file lists no ids; write one image id per line")
        return names

    def _image_path(self, name: str) -> Path:
        for suffix in IMAGE_SUFFIXES:
            path = self.root / "JPEGImages" / f"{name}{suffix}"
            if path.is_file():
                return path
        raise SegError(
            f"{self.root / 'JPEGImages' / name}.jpg: no image for id {name!r} listed in {self.split}.txt; "
            f"add the image or remove the id from the split file"
        )

    def _label_path(self, name: str) -> Path:
        path = self.root / "SegmentationClass" / f"{name}.png"
        if not path.is_file():
            raise SegError(
                f"{path}: no label map for id {name!r} listed in {self.split}.txt; "
                f"add the PNG or remove the id from the split file"
            )
        return path

    def _check_sizes(self) -> None:
        """Compare image and label sizes from the file headers (cheap: no pixel is decoded)."""
        from PIL import Image, UnidentifiedImageError

        for name, image_path, label_path in zip(self.names, self._image_paths, self._label_paths, strict=True):
            sizes = []
            for path in (image_path, label_path):
                try:
                    with Image.open(path) as img:
                        width, height = img.size
                        if path is image_path and _exif_turns(img):
                            width, height = height, width  # read_image applies the EXIF rotation
                        sizes.append((height, width))
                except (UnidentifiedImageError, OSError) as exc:
                    raise SegError(f"{path}: cannot read it ({exc})") from None
            if sizes[0] != sizes[1]:
                raise SegError(self._size_message(name, sizes[0], sizes[1]))

    def _size_message(self, name: str, image_hw: tuple[int, ...], labels_hw: tuple[int, ...]) -> str:
        return (
            f"{self.root / 'SegmentationClass' / name}.png: label map is {labels_hw[1]}x{labels_hw[0]} but its image "
            f"is {image_hw[1]}x{image_hw[0]} (width x height); each label map must match its image"
        )


def _exif_turns(img: object) -> bool:
    """Whether the EXIF orientation swaps width and height (values 5-8)."""
    try:
        return img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # type: ignore[attr-defined]
    except Exception:
        return False


def read_class_names(root: Path) -> tuple[str, ...] | None:
    """Class names of a VOC folder, in id order: `dataset.json`'s "classes" list, else the names of CVAT's
    `labelmap.txt` (`name:r,g,b:parts:actions` per line); None when it records none. A file that is there but
    cannot be read is a SegError naming it: a wrong class check is worse than none."""
    described = root / "dataset.json"
    if described.is_file():
        try:
            names = json.loads(described.read_text(encoding="utf-8")).get("classes")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
            raise SegError(f"{described}: cannot read its class names ({exc}); fix or remove the file") from None
        if names is not None:
            if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
                raise SegError(f'{described}: "classes" must be a list of names; fix or remove the file')
            return tuple(names)
    labelmap = root / "labelmap.txt"
    if labelmap.is_file():
        try:
            lines = labelmap.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SegError(f"{labelmap}: cannot read its class names ({exc}); fix or remove the file") from None
        return tuple(line.split(":")[0].strip() for line in lines if line.strip() and not line.startswith("#"))
    return None
