"""What every model builder returns: a network with what it needs to be used (classes, palette,
normalization, input size) -- the torchvision idea of weights and transforms travelling together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from segrt.errors import SegError
from segrt.image import voc_palette
from segrt.meta import ModelCard

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ONE_CLASS_BACKGROUND = "background"  # label 0 of a one-class model
DEFAULT_THRESHOLD = 0.5  # a one-class model's sigmoid threshold: a logit above 0
VOC_CLASSES = (
    "__background__",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


@dataclass
class SegmentationModel:
    """A network in eval mode (normalized float NCHW -> logits NCHW) and its model card fields."""

    name: str
    network: nn.Module
    classes: tuple[str, ...]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: tuple[int, ...] = (520, 520)
    resize: str = "fixed"
    size_divisor: int = 1
    palette: tuple[tuple[int, int, int], ...] = ()
    notes: list[str] = field(default_factory=list)  # what the builder did that the user should know
    threshold: float | None = None  # a one-class model's sigmoid threshold (`as_one_class`); None: argmax

    def __post_init__(self) -> None:
        if not self.palette:
            self.palette = voc_palette(len(self.classes))
        self.network.eval()

    def card(self, **fields: Any) -> ModelCard:
        """The model card of an artefact made from this model; `fields` adds the export's facts."""
        try:
            return ModelCard(
                model=self.name,
                classes=self.classes,
                palette=self.palette,
                mean=self.mean,
                std=self.std,
                input_size=self.input_size,
                resize=self.resize,
                size_divisor=self.size_divisor,
                threshold=self.threshold,
                **fields,
            )
        except ValueError as exc:
            raise SegError(f"{self.name}: {exc}") from None


class Logits(nn.Module):
    """Makes a network that returns torchvision's {"out": logits, ...} dict return the logits alone.

    torchvision's FCN and DeepLabV3 (a `_SimpleSegmentationModel`) end their forward by resizing the
    classifier's 1/8-scale logits to the input size; here they stop before that resize, so the fused
    graph resizes once, from the classifier straight to the image size, instead of writing every class
    channel at the network size and again at the image size. Labels differ from the two resizes only
    where two classes nearly tie (99.986 % of the photo's pixels agree for fcn_resnet50 at 520x520).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _is_simple_segmentation_model(self.network):
            return self.network.classifier(self.network.backbone(x)["out"])
        out = self.network(x)
        return out["out"] if isinstance(out, Mapping) else out


def _is_simple_segmentation_model(network: nn.Module) -> bool:
    """torchvision's backbone -> classifier -> resize-to-input model (FCN, DeepLabV3), aux head or not."""
    try:
        from torchvision.models.segmentation._utils import _SimpleSegmentationModel
    except ImportError:  # a torchvision that moved it: the network keeps its own resize
        return False
    return isinstance(network, _SimpleSegmentationModel)


def as_one_class(model: SegmentationModel, threshold: float | None) -> None:
    """Make a model with one logit channel a binary segmenter, in place: label 1 where sigmoid(logit) is above
    `threshold` (None: 0.5, a logit above 0), else 0. Its classes become background and the one class: the name
    the model gives it, or the model's own name where it gives only a numbered placeholder ("class0")."""
    named = model.classes[0] if model.classes and model.classes[0] != "class0" else model.name
    model.classes = (ONE_CLASS_BACKGROUND, named)
    model.palette = voc_palette(2)
    model.threshold = DEFAULT_THRESHOLD if threshold is None else threshold


def parameter_count(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def numbered_classes(count: int) -> tuple[str, ...]:
    """Pascal VOC's names for 21 classes (torchvision's FCN heads), else class0..classN-1."""
    return VOC_CLASSES if count == len(VOC_CLASSES) else tuple(f"class{i}" for i in range(count))
