"""The runtime's numpy host steps compute what PyTorch (and so the fused graph) computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segrt.image import postprocess, preprocess, resize_bilinear
from segrt.meta import ModelCard


@pytest.mark.parametrize(("size", "out"), [((65, 65), (612, 640)), ((612, 640), (96, 96)), ((7, 300), (31, 17))])
def test_numpy_resize_matches_torch_interpolate(size, out):
    x = torch.randn(2, 5, *size)
    expected = F.interpolate(x, size=out, mode="bilinear", align_corners=False).numpy()
    got = resize_bilinear(np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1)), *out).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, expected, atol=5e-4)  # torch computes source coordinates in float32


def test_preprocess_and_postprocess_match_the_fused_module_steps(photo):
    card = ModelCard(
        model="m",
        classes=("a", "b", "c"),
        palette=((0, 0, 0),) * 3,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        input_size=(96, 128),
    )
    image = torch.from_numpy(np.array(photo))[None].permute(0, 3, 1, 2).float()
    resized = F.interpolate(image, size=(96, 128), mode="bilinear", align_corners=False)
    mean, std = torch.tensor(card.mean).view(1, 3, 1, 1), torch.tensor(card.std).view(1, 3, 1, 1)
    expected = ((resized / 255.0 - mean) / std).numpy()
    np.testing.assert_allclose(preprocess(photo[None], card), expected, atol=1e-4)
    logits = torch.randn(1, 3, 24, 32)
    labels = F.interpolate(logits, size=(612, 640), mode="bilinear", align_corners=False).argmax(1).numpy()
    assert (postprocess(logits.numpy(), 612, 640) == labels).mean() >= 0.9999
