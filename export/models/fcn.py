"""torchvision's FCN family: FCN-ResNet50/101 with their weights, and FCN-ResNet18 (jetson-inference's edge
model) built the same way; the aux head is dropped, as inference discards it."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from torch import nn

from segexport.models.base import VOC_CLASSES, Logits, SegmentationModel, numbered_classes, parameter_count
from segexport.models.checkpoints import checkpoint_has_aux, load_checkpoint
from segrt.errors import SegError, first_line


def _torchvision_weights(enum: Any, weights: str | None) -> Any:
    if weights is None or weights.lower() == "none":
        return None
    try:
        return enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        names = ", ".join(["DEFAULT", "none", *enum.__members__])
        raise SegError(f"--weights {weights}: unknown for this model; use one of {names}") from None


def _fcn(
    name: str,
    builder: Callable[..., nn.Module],
    weights_enum: Any,
    weights: str | None,
    num_classes: int | None,
    checkpoint: str | os.PathLike[str] | None,
) -> SegmentationModel:
    chosen = None if checkpoint is not None else _torchvision_weights(weights_enum, weights)  # a checkpoint wins
    notes: list[str] = []
    if chosen is not None:
        if num_classes not in (None, len(chosen.meta["categories"])):
            raise SegError(
                f"--num-classes {num_classes} does not match {chosen}'s {len(chosen.meta['categories'])} "
                f"classes; use --weights none with a --checkpoint of your own"
            )
        try:
            network = builder(weights=chosen, progress=False)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            raise SegError(
                f"{name}: cannot download the {chosen} weights ({first_line(exc)}); pass --checkpoint PATH, "
                f"or --weights none for random weights"
            ) from None
        classes = tuple(chosen.meta["categories"])
        notes.append(f"weights {chosen}")
    else:
        count = num_classes or len(VOC_CLASSES)
        has_aux = checkpoint is not None and checkpoint_has_aux(checkpoint)
        network = builder(weights=None, weights_backbone=None, num_classes=count, aux_loss=has_aux)
        classes = numbered_classes(count)
        if checkpoint is not None:
            notes += load_checkpoint(network, checkpoint)
        else:
            notes.append("random weights (--weights none)")
    return _drop_aux(name, network, classes, notes)


def _drop_aux(name: str, network: nn.Module, classes: tuple[str, ...], notes: list[str]) -> SegmentationModel:
    """Drop the auxiliary head: torchvision computes it at inference and the caller discards it."""
    aux = getattr(network, "aux_classifier", None)
    if aux is not None:
        saved, total = parameter_count(aux), parameter_count(network)
        network.aux_classifier = None
        notes.append(
            f"dropped the aux head: {saved / 1e6:.2f} M of {total / 1e6:.2f} M parameters ({100 * saved / total:.1f} %)"
        )
    return SegmentationModel(name=name, network=Logits(network), classes=classes, input_size=(520, 520), notes=notes)


def fcn_resnet50(
    *, weights: str | None = "DEFAULT", num_classes: int | None = None, checkpoint: str | os.PathLike[str] | None = None
) -> SegmentationModel:
    """torchvision's FCN-ResNet50 (COCO with VOC labels), aux head dropped."""
    from torchvision.models.segmentation import FCN_ResNet50_Weights
    from torchvision.models.segmentation import fcn_resnet50 as build

    return _fcn("fcn_resnet50", build, FCN_ResNet50_Weights, weights, num_classes, checkpoint)


def fcn_resnet101(
    *, weights: str | None = "DEFAULT", num_classes: int | None = None, checkpoint: str | os.PathLike[str] | None = None
) -> SegmentationModel:
    """torchvision's FCN-ResNet101 (COCO with VOC labels), aux head dropped."""
    from torchvision.models.segmentation import FCN_ResNet101_Weights
    from torchvision.models.segmentation import fcn_resnet101 as build

    return _fcn("fcn_resnet101", build, FCN_ResNet101_Weights, weights, num_classes, checkpoint)


def _resnet18_fcn(
    *,
    weights: Any = None,
    weights_backbone: Any = None,
    num_classes: int = 21,
    aux_loss: bool = False,
    progress: bool = False,
) -> nn.Module:
    """FCN head on a dilated ResNet-18 (output stride 8), as torchvision builds the ResNet-50 one.

    torchvision's BasicBlock refuses dilation, so layers 3 and 4 are converted after
    construction: their strides become 1 and their 3x3 convolutions dilate 2 and 4.
    """
    from torchvision.models import resnet18
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.fcn import FCN, FCNHead

    backbone = resnet18(weights=None)
    for layer, dilation in ((backbone.layer3, 2), (backbone.layer4, 4)):
        for index, block in enumerate(layer):
            for conv in (block.conv1, block.conv2):
                d = dilation // 2 if (index == 0 and conv is block.conv1) else dilation
                conv.stride, conv.dilation, conv.padding = (1, 1), (d, d), (d, d)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
    return_layers = {"layer4": "out", **({"layer3": "aux"} if aux_loss else {})}
    body = IntermediateLayerGetter(backbone, return_layers=return_layers)
    return FCN(body, FCNHead(512, num_classes), FCNHead(256, num_classes) if aux_loss else None)


def fcn_resnet18(
    *, weights: str | None = None, num_classes: int | None = None, checkpoint: str | os.PathLike[str] | None = None
) -> SegmentationModel:
    """FCN-ResNet18, the edge model jetson-inference ships; no published torchvision weights."""
    if weights not in (None, "none"):
        raise SegError("fcn_resnet18: torchvision publishes no weights for it; use --checkpoint PATH or --weights none")
    count = num_classes or len(VOC_CLASSES)
    network = _resnet18_fcn(num_classes=count, aux_loss=checkpoint is not None and checkpoint_has_aux(checkpoint))
    notes = load_checkpoint(network, checkpoint) if checkpoint is not None else ["random weights"]
    classes = numbered_classes(count)
    return _drop_aux("fcn_resnet18", network, classes, notes)
