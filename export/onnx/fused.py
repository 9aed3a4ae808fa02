"""The fused deploy graph: uint8 image in, uint8 label map out (and, asked for, a uint8 confidence map), everything
between on the accelerator."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segexport.models.base import SegmentationModel
from segrt.image import threshold_logit


class FusedSegmentation(nn.Module):
    """uint8 N x H x W x 3 RGB -> uint8 N x H x W labels, for any H and W.

    cast -> resize to the network size -> normalize (one multiply-add per channel)
    -> network -> bilinear upsample of the logits to H x W -> argmax -> uint8; a one-class model
    (one logit channel, `model.threshold`) compares its logit with the threshold's instead of the argmax.
    Resizing before normalizing gives the same numbers (both are linear per
    channel) on the smaller tensor. Resizes use half-pixel bilinear without
    antialiasing: what ONNX Resize and TensorRT run natively, and what
    `segrt.image` does on the host for unfused graphs. The logits are resized once, from
    the network's own output size (1/8 of the input for torchvision's FCN: see
    `segexport.models.base.Logits`), and the exported tail is then made channel-last
    (`segexport.onnx.tail`).

    `confidence=True` adds a second output, uint8 N x H x W `confidence_levels`: see `confidence_map`.
    """

    def __init__(self, model: SegmentationModel, *, confidence: bool = False) -> None:
        super().__init__()
        self.network = model.network
        self.confidence = confidence
        self.resize_mode = model.resize
        self.input_size = tuple(int(v) for v in model.input_size)
        self.size_divisor = int(model.size_divisor)
        self.cut = None if model.threshold is None else float(threshold_logit(model.threshold))
        std = torch.tensor(model.std, dtype=torch.float32)
        mean = torch.tensor(model.mean, dtype=torch.float32)
        self.register_buffer("scale", (1.0 / (255.0 * std)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", (-mean / std).view(1, 3, 1, 1), persistent=False)

    def _network_size(self, height: torch.Tensor | int, width: torch.Tensor | int) -> tuple:
        if self.resize_mode == "fixed":
            return self.input_size
        # Shorter side to S keeping the aspect ratio, in tensor arithmetic so the
        # exported graph computes it from the input's dynamic H and W.
        side, d = self.input_size[0], self.size_divisor
        h, w = torch.as_tensor(height), torch.as_tensor(width)
        short = torch.minimum(h, w)
        new_h = torch.clamp(torch.div(side * h, short, rounding_mode="floor") // d * d, min=d)
        new_w = torch.clamp(torch.div(side * w, short, rounding_mode="floor") // d * d, min=d)
        if torch.jit.is_tracing():
            return new_h, new_w
        return int(new_h), int(new_w)

    def network_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Float logits N x C x h x w at the network's own output size (what the resize to the image reads)."""
        height, width = image.shape[1], image.shape[2]
        x = image.float().permute(0, 3, 1, 2)  # TensorRT: only a Cast may read a uint8 input
        x = F.interpolate(x, size=self._network_size(height, width), mode="bilinear", align_corners=False)
        return self.network(x * self.scale + self.shift)

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """Float logits N x C x H x W at the image's resolution (what the argmax reads)."""
        height, width = image.shape[1], image.shape[2]
        return _resized(self.network_logits(image), height, width)

    def confidence_map(self, network_logits: torch.Tensor, height: torch.Tensor | int, width: torch.Tensor | int):
        """uint8 N x H x W: floor(255 * p + 0.5), p the top class's probability, bilinearly resized.

        p is computed at the network's output size (h x w): the largest softmax probability over the classes,
        1 / sum_c exp(l_c - max_c l_c); for a one-class model, the sigmoid probability of the likelier of its two
        labels, sigmoid(|l|) = max(s, 1 - s). 255 * p + 0.5 is resized to H x W as one channel (half-pixel
        bilinear, the labels' resize) and floored: round half up of 255 * p at that pixel. Computing p at h x w
        and resizing one channel costs a C-th of the labels' own resize; where the classes change within a
        network pixel it blends the neighbours' confidences instead of taking the softmax of the resized logits.
        """
        if self.cut is None:
            top = torch.amax(network_logits, dim=1, keepdim=True)
            probability = 1.0 / torch.exp(network_logits - top).sum(dim=1, keepdim=True)
        else:
            probability = torch.sigmoid(network_logits.abs())
        levels = torch.floor(_resized(probability * 255.0 + 0.5, height, width))
        # N x 1 x H x W -> N x H x W as a Reshape (no copy), and the Cast last: TensorRT's uint8 output is a Cast's
        return levels.flatten(1, 2).to(torch.uint8)

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        height, width = image.shape[1], image.shape[2]
        network_logits = self.network_logits(image)
        logits = _resized(network_logits, height, width)
        # one class: compared first, the channel then taken from 1-byte booleans (taken from the float logit, the
        # Gather copied 4 bytes a pixel; squeeze(1) exports as an If), and the Cast last: TensorRT's uint8 output
        # comes from a Cast
        labels = (logits.argmax(dim=1) if self.cut is None else (logits > self.cut)[:, 0]).to(torch.uint8)
        if not self.confidence:
            return labels
        return labels, self.confidence_map(network_logits, height, width)


def _resized(tensor: torch.Tensor, height: torch.Tensor | int, width: torch.Tensor | int) -> torch.Tensor:
    """Half-pixel bilinear, no antialiasing: what ONNX Resize and TensorRT run natively."""
    return F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)
