"""Calibration images for the INT8 passes and AutoCast: found (a folder or a .txt list), decoded as
`segrt.image.read_image` decodes them, and fed one at a time in the form the graph takes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from segexport.defaults import DEFAULT_CALIB_COUNT
from segexport.parity import graph_input
from segrt.errors import SegError
from segrt.image import IMAGE_SUFFIXES, read_image
from segrt.meta import ModelCard


def find_calibration_images(folder: str | os.PathLike[str], count: int) -> list[Path]:
    """Up to `count` image files under `folder` (recursive), spread evenly over the sorted list.

    Spreading, not the first `count`, keeps a folder of consecutive video frames from
    being calibrated on one second of footage.
    """
    folder = Path(folder)
    if folder.is_file() and folder.suffix == ".txt":
        files = list_file_images(folder)
    elif not folder.is_dir():
        what = "is not a folder" if folder.exists() else "no such folder"
        raise SegError(f"--calib {folder}: {what}; give a folder of images like the ones the model will see")
    else:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SegError(
            f"--calib {folder}: no image files ({', '.join(IMAGE_SUFFIXES)}); "
            f"add images like the ones the model will see"
        )
    if count < 1:
        raise SegError(f"--calib-count {count}: must be at least 1")
    if len(files) <= count:
        return files
    picks = np.unique(np.linspace(0, len(files) - 1, count).round().astype(int))
    return [files[i] for i in picks]


def list_file_images(list_file: Path) -> list[Path]:
    """The images a .txt list names, one per line: paths relative to the list, or the ids of a
    Pascal-VOC split file (`ImageSets/Segmentation/train.txt` -> `JPEGImages/<id>.jpg`), so INT8 can be
    calibrated on a dataset's train split and never on the images it is scored on."""
    from segexport.text_lists import read_lines

    names = read_lines(
        list_file,
        f"--calib {list_file}",
        "give a folder of images, or a .txt file with one image path (or Pascal-VOC id) per line",
        reading="it as a list of images",
    )
    split_folder = list_file.absolute().parent  # a relative Segmentation/x.txt has no parents[2] of its own
    is_voc_split = split_folder.name == "Segmentation" and split_folder.parent.name == "ImageSets"
    voc_root = split_folder.parent.parent if is_voc_split else None
    files = []
    for name in names:
        if voc_root is not None and not Path(name).suffix:
            files.append(voc_root / "JPEGImages" / f"{name}.jpg")
        else:
            files.append(list_file.parent / name)
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise SegError(f"--calib {list_file}: names {len(missing)} missing image(s), first {missing[0]}")
    return sorted(files)


def read_calibration_images(
    folder: str | os.PathLike[str], count: int = DEFAULT_CALIB_COUNT
) -> tuple[list[np.ndarray], list[Path]]:
    """Decode up to `count` calibration images with `segrt.image.read_image`; returns (images, unreadable files).

    Unreadable files are skipped (and returned, so the caller can say so); a folder
    with no readable image is a SegError naming it.
    """
    images, unreadable = [], []
    for path in find_calibration_images(folder, count):
        try:
            images.append(read_image(path))
        except SegError:
            unreadable.append(path)
    if not images:
        raise SegError(
            f"--calib {folder}: none of its {len(unreadable)} image files could be read (first: {unreadable[0].name}); "
            f"give 8-bit RGB, grayscale or palette images"
        )
    return images, unreadable


def write_calibration_npz(images: Sequence[np.ndarray], card: ModelCard, folder: Path) -> list[Path]:
    """One NPZ per image, `{card.input_name: batch of one}`: the form AutoCast and the quantizers read."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(images):
        path = folder / f"calib_{index:05d}.npz"
        arrays: dict[str, Any] = {card.input_name: graph_input(image, card)}
        np.savez(path, **arrays)
        paths.append(path)
    return paths


class NpzCalibrationReader(CalibrationDataReader):
    """ONNX Runtime's calibration reader over NPZ files, loaded one at a time.

    `__len__` and `set_range` let `quantize_static` collect ranges image by image
    (its `CalibStridedMinMax` option), so memory holds one image's activations.
    """

    def __init__(self, files: Sequence[str | os.PathLike[str]]) -> None:
        self.files = [Path(f) for f in files]
        self.set_range(0, len(self.files))

    def _load(self, path: Path) -> dict[str, np.ndarray]:
        with np.load(path) as data:
            return {name: data[name] for name in data.files}

    def get_next(self) -> dict[str, np.ndarray] | None:
        path = next(self._pending, None)
        return None if path is None else self._load(path)

    def rewind(self) -> None:
        self.set_range(0, len(self.files))

    def set_range(self, start_index: int, end_index: int) -> None:
        self._pending = iter(self.files[start_index:end_index])

    def __len__(self) -> int:
        return len(self.files)
