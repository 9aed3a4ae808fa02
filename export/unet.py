"""The U-Net: an encoder-decoder small enough to train on a CPU and to run on a Jetson Nano."""

from __future__ import annotations

import torch
from torch import nn


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
