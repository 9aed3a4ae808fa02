"""The model zoo: one builder per model name, and `build(options)`, the model an export request names.

A `SegmentationModel` (models/base.py) is a network that maps normalized float NCHW images to NCHW
logits, plus its classes, palette, normalization and input size.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from segexport.defaults import is_user_model
from segexport.models.base import SegmentationModel, as_one_class
from segexport.models.fcn import fcn_resnet18, fcn_resnet50, fcn_resnet101
from segexport.models.unet import unet, unet_shapes
from segexport.models.user import user_model
from segrt.errors import SegError

if TYPE_CHECKING:
    from segexport.request import ModelOptions


BUILDERS: dict[str, Callable[..., SegmentationModel]] = {
    "fcn_resnet18": fcn_resnet18,
    "fcn_resnet50": fcn_resnet50,
    "fcn_resnet101": fcn_resnet101,
    "unet": unet,
    "unet_shapes": unet_shapes,
}


def build_model(
    name: str,
    *,
    weights: str | None = None,
    num_classes: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    **options: Any,
) -> SegmentationModel:
    """Build a zoo model by name, or a user model given as `package.module:factory`."""
    if num_classes is not None and num_classes < 1:
        raise SegError(f"--num-classes {num_classes}: a model needs at least 1 class")
    if is_user_model(name):
        if weights is not None:
            raise SegError(
                f"--weights {weights}: applies to the zoo models only ({', '.join(BUILDERS)}); "
                f"{name} gets its weights from its factory, or from --checkpoint PATH"
            )
        return user_model(name, num_classes=num_classes, checkpoint=checkpoint, **options)
    builder = BUILDERS.get(name)
    if builder is None:
        raise SegError(
            f"unknown model {name!r}; known: {', '.join(BUILDERS)}, an .onnx file, or package.module:factory"
        )
    kwargs: dict[str, Any] = {"num_classes": num_classes, "checkpoint": checkpoint, **options}
    if weights is not None:
        kwargs["weights"] = weights
    return builder(**kwargs)


def build(options: ModelOptions) -> SegmentationModel:
    """The model an export request names, with its input size and class names applied (what `segexport MODEL`
    and segbench's PyTorch baseline both build)."""
    torch.manual_seed(options.seed)
    extra: dict[str, Any] = {}
    if options.name == "unet":
        extra = {"depth": options.unet_depth, "base": options.unet_base, "bilinear": not options.unet_transposed}
    if (is_user_model(options.name) or options.name == "unet") and options.input_size:
        extra["input_size"] = options.input_size  # checked against the model before it is built
    model = build_model(
        options.name,
        weights=options.weights,
        num_classes=options.num_classes,
        checkpoint=options.checkpoint,
        **extra,
    )
    if options.input_size:
        model.input_size = options.input_size
        model.resize = "fixed" if len(options.input_size) == 2 else "shorter"
    if model.resize == "fixed" and any(v % model.size_divisor for v in model.input_size):
        raise SegError(
            f"--input-size {'x'.join(map(str, model.input_size))}: {model.name} needs multiples of {model.size_divisor}"
        )
    if len(model.classes) == 1:  # one logit channel: a binary segmenter
        as_one_class(model, options.threshold)
    elif options.threshold is not None:
        raise SegError(
            f"--threshold {options.threshold:g}: applies to one-class models (one logit channel), and {model.name} "
            f"has {len(model.classes)} classes, labelled by argmax; drop --threshold"
        )
    if options.classes:
        if len(options.classes) != len(model.classes):
            one_class = " (a one-class model labels background and its class: name both)" if model.threshold else ""
            raise SegError(
                f"--classes names {len(options.classes)} classes but {model.name} has {len(model.classes)}{one_class}"
            )
        model.classes = options.classes
    return model
