"""The U-Net: an encoder-decoder small enough to train on a CPU and to run on a Jetson Nano; its builders
(`unet`, random or a checkpoint) and the bundled reference model trained on the shapes set (`unet_shapes`)."""

from __future__ import annotations

import json
import os

import torch
from torch import nn

from segexport.defaults import WEIGHTS
from segexport.models.base import VOC_CLASSES, SegmentationModel, numbered_classes
from segexport.models.checkpoints import load_checkpoint
from segrt.errors import SegError


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _Up(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int, bilinear: bool) -> None:
        super().__init__()
        if bilinear:
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            cup = cin
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
            cup = cin // 2
        self.conv = _double_conv(cup + cskip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
    """U-Net (Ronneberger et al., 2015) with BatchNorm and same-size padding.

    `depth` down-sampling steps, `base` channels at full resolution doubling per
    step. Inputs need H and W divisible by 2**depth (`size_divisor`); the fused
    deploy graph resizes to a fixed input size, so any image works. Returns logits
    N x num_classes x H x W.
    """

    def __init__(self, num_classes: int, *, depth: int = 4, base: int = 32, bilinear: bool = True) -> None:
        super().__init__()
        if depth < 1 or base < 1 or num_classes < 1:
            raise ValueError("depth, base and num_classes must be positive")
        widths = [base * 2**i for i in range(depth + 1)]
        self.size_divisor = 2**depth
        self.stem = _double_conv(3, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), _double_conv(widths[i], widths[i + 1])) for i in range(depth)
        )
        self.up = nn.ModuleList(_Up(widths[i + 1], widths[i], widths[i], bilinear) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = skips.pop()
        for block in self.up:
            y = block(y, skips.pop())
        return self.head(y)


# Above this the weights alone pass 2 GB, which one ONNX file cannot hold (protobuf's limit).
_ONNX_MAX_BYTES = 2**31


def check_unet_options(depth: int, base: int, input_size: tuple[int, ...]) -> None:
    """Refuse U-Net options that cannot make a network, before any memory goes into one.

    Each of the `depth` steps halves the image, so a fixed input must be a multiple of
    2**depth (and a shorter-side one at least that); the widest layer, base * 2**depth
    channels, must leave the weights under ONNX's 2 GB.
    """
    for flag, value in (("--unet-depth", depth), ("--unet-base", base)):
        if value < 1:
            raise SegError(f"{flag} {value}: must be at least 1")
    divisor = 2**depth
    size = "x".join(map(str, input_size))
    fixed = len(input_size) == 2
    if (fixed and any(v % divisor for v in input_size)) or (not fixed and input_size[0] < divisor):
        need = f"multiples of {divisor}" if fixed else f"a shorter side of at least {divisor}"
        raise SegError(
            f"--input-size {size}: unet needs {need}, as --unet-depth {depth} halves its input {depth} times; "
            f"give another --input-size or a lower --unet-depth"
        )
    widest = base * divisor
    weight_bytes = 4 * 9 * (widest // 2 + widest) * widest  # the bottleneck's two 3x3 convolutions
    if weight_bytes >= _ONNX_MAX_BYTES:
        raise SegError(
            f"--unet-depth {depth} --unet-base {base}: the widest layer would have {widest} channels and over "
            f"2 GB of weights, which one ONNX file cannot hold; lower --unet-depth or --unet-base"
        )


def unet(
    *,
    weights: str | None = None,
    num_classes: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    depth: int = 4,
    base: int = 32,
    bilinear: bool = True,
    input_size: tuple[int, ...] = (256, 256),
) -> SegmentationModel:
    """Our U-Net (export/models/unet.py), random or from a checkpoint; `input_size` HxW (fixed) or S (shorter side)."""
    if weights not in (None, "none"):
        raise SegError("unet: there are no published weights; use --checkpoint PATH or --weights none")
    check_unet_options(depth, base, input_size)
    count = num_classes or len(VOC_CLASSES)
    network = UNet(count, depth=depth, base=base, bilinear=bilinear)
    notes = load_checkpoint(network, checkpoint) if checkpoint is not None else ["random weights"]
    classes = numbered_classes(count)
    return SegmentationModel(
        name="unet",
        network=network,
        classes=classes,
        input_size=input_size,
        resize="fixed" if len(input_size) == 2 else "shorter",
        size_divisor=network.size_divisor,
        notes=notes,
    )


SHAPES_WEIGHTS = WEIGHTS


def unet_shapes(
    *, weights: str | None = None, num_classes: int | None = None, checkpoint: str | os.PathLike[str] | None = None
) -> SegmentationModel:
    """The bundled reference U-Net, trained on the generated shapes set; no download.

    Options, classes, palette and input size come from weights/unet_shapes.json; the
    weights from weights/unet_shapes.pt (made by `python -m segbench.data.train_reference`),
    or from `checkpoint` (same architecture), or random with weights="none".
    """
    if weights not in (None, "DEFAULT", "none"):
        raise SegError(f"--weights {weights}: unet_shapes has DEFAULT (the bundled checkpoint) or none (random)")
    card_path = SHAPES_WEIGHTS / "unet_shapes.json"
    try:
        card = json.loads(card_path.read_text())
        classes = tuple(card["classes"])
        options = card["unet"]
        network = UNet(len(classes), depth=options["depth"], base=options["base"], bilinear=options["bilinear"])
        fields = {
            "palette": tuple(tuple(c) for c in card["palette"]),
            "mean": tuple(card["mean"]),
            "std": tuple(card["std"]),
            "input_size": tuple(card["input_size"]),
        }
        miou = float(card["val"]["miou"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SegError(f"{card_path}: bundled model card missing or broken ({exc}); reinstall segexport") from None
    if num_classes not in (None, len(classes)):
        raise SegError(
            f"--num-classes {num_classes}: unet_shapes has {len(classes)} classes; for another class count "
            f"use `segexport unet --num-classes {num_classes} --checkpoint PATH`"
        )
    if checkpoint is not None:
        notes = load_checkpoint(network, checkpoint)
    elif weights == "none":
        notes = ["random weights (--weights none)"]
    else:
        notes = load_checkpoint(network, SHAPES_WEIGHTS / "unet_shapes.pt")
        notes[0] = f"bundled weights (val mIoU {miou:.3f} on the generated shapes set)"
    return SegmentationModel(
        name="unet_shapes", network=network, classes=classes, size_divisor=network.size_divisor, notes=notes, **fields
    )
