"""The Pascal-VOC reader: reads a real generated set, keeps void labels, refuses broken folders clearly."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segbench.data import shapes
from segrt.dataset import Sample, VocDataset
from segrt.errors import SegError
from segrt.image import read_image, read_labels_png, write_labels_png


@pytest.fixture(scope="module")
def voc_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shapes.generate(tmp_path_factory.mktemp("voc") / "set", train=3, val=2, seed=4)


@pytest.fixture
def voc(voc_source: Path, tmp_path: Path) -> Path:
    """A private copy each test may break."""
    return Path(shutil.copytree(voc_source, tmp_path / "voc"))


def test_reads_the_split_in_order_with_matching_images_and_labels(voc: Path) -> None:
    dataset = VocDataset(voc, "train")
    assert len(dataset) == 3
    assert list(dataset.names) == ["train_00000", "train_00001", "train_00002"]
    samples = list(dataset)
    assert [s.name for s in samples] == list(dataset.names)
    for sample in samples:
        assert isinstance(sample, Sample)
        assert sample.image.dtype == np.uint8 and sample.image.ndim == 3 and sample.image.shape[2] == 3
        assert sample.labels.dtype == np.uint8 and sample.labels.shape == sample.image.shape[:2]
        np.testing.assert_array_equal(sample.image, read_image(voc / "JPEGImages" / f"{sample.name}.jpg"))
        np.testing.assert_array_equal(sample.labels, read_labels_png(voc / "SegmentationClass" / f"{sample.name}.png"))
    assert len(VocDataset(voc)) == 2  # the default split is val


def test_void_label_255_is_kept(voc: Path) -> None:
    path = voc / "SegmentationClass" / "val_00000.png"
    labels = read_labels_png(path).copy()
    labels[:4] = 255  # VOC marks object borders and unsure pixels as 255
    write_labels_png(path, labels, shapes.PALETTE)
    sample = next(iter(VocDataset(voc, "val")))
    assert (sample.labels[:4] == 255).all()
    assert sample.labels[4:].max() < len(shapes.CLASSES)


def test_split_file_may_carry_extra_columns_and_blank_lines(voc: Path) -> None:
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("val_00001  1\n\nval_00000 -1\n")
    assert VocDataset(voc, "val").names == ("val_00001", "val_00000")


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SegError, match=r"nowhere: no such dataset folder"):
        VocDataset(tmp_path / "nowhere")


@pytest.mark.parametrize("folder", ["JPEGImages", "SegmentationClass"])
def test_missing_image_or_label_folder_is_named(voc: Path, folder: str) -> None:
    shutil.rmtree(voc / folder)
    with pytest.raises(SegError, match=rf"not a Pascal-VOC folder, {folder}/ is missing"):
        VocDataset(voc)


def test_vocdevkit_root_points_to_the_year_folder(voc: Path, tmp_path: Path) -> None:
    devkit = tmp_path / "VOCdevkit"
    devkit.mkdir()
    voc.rename(devkit / "VOC2012")
    with pytest.raises(SegError, match=r"JPEGImages/ is missing .*did you mean .*VOC2012\?"):
        VocDataset(devkit)


def test_missing_split_file_lists_the_splits_present(voc: Path) -> None:
    with pytest.raises(SegError, match=r"trainval\.txt: split file missing .*splits present: train, val"):
        VocDataset(voc, "trainval")


def test_empty_split_file_is_refused(voc: Path) -> None:
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n\n")
    with pytest.raises(SegError, match=r"val\.txt: the split file lists no ids"):
        VocDataset(voc)


def test_id_without_image_is_named(voc: Path) -> None:
    (voc / "JPEGImages" / "val_00001.jpg").unlink()
    with pytest.raises(SegError, match=r"val_00001\.jpg: no image for id 'val_00001' listed in val\.txt"):
        VocDataset(voc)


def test_id_without_label_map_is_named(voc: Path) -> None:
    (voc / "SegmentationClass" / "val_00000.png").unlink()
    with pytest.raises(SegError, match=r"val_00000\.png: no label map for id 'val_00000' listed in val\.txt"):
        VocDataset(voc)


def test_label_map_of_another_size_is_refused_before_reading_pixels(voc: Path) -> None:
    path = voc / "SegmentationClass" / "val_00001.png"
    labels = read_labels_png(path)
    write_labels_png(path, labels[:-1, :-2], shapes.PALETTE)
    height, width = labels.shape
    with pytest.raises(
        SegError, match=rf"val_00001\.png: label map is {width - 2}x{height - 1} but its image is {width}x{height}"
    ):
        VocDataset(voc)


def test_rgb_label_map_is_refused_when_read(voc: Path) -> None:
    path = voc / "SegmentationClass" / "val_00000.png"
    Image.fromarray(np.stack([read_labels_png(path)] * 3, axis=2)).save(path)
    dataset = VocDataset(voc)  # the header check passes: the sizes agree
    with pytest.raises(SegError, match=r"val_00000\.png: a label map must be a palette or grayscale PNG"):
        list(dataset)


def test_unreadable_image_is_named(voc: Path) -> None:
    (voc / "JPEGImages" / "val_00000.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(SegError, match=r"val_00000\.jpg: cannot read it"):
        VocDataset(voc)


def test_classes_come_from_dataset_json_then_labelmap(voc: Path) -> None:
    assert VocDataset(voc).classes == shapes.CLASSES  # segbench.data.shapes records them in dataset.json
    (voc / "dataset.json").unlink()
    assert VocDataset(voc).classes is None
    (voc / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\ncar:128,0,0::\n")
    assert VocDataset(voc).classes == ("background", "car")


def test_unreadable_dataset_json_is_named(voc: Path) -> None:
    (voc / "dataset.json").write_text("{not json")
    with pytest.raises(SegError, match=r"dataset\.json: cannot read its class names"):
        VocDataset(voc).classes  # noqa: B018 - the property reads the file
