"""The `pytorch-eager` baseline and the FP32 PyTorch reference labels. The only module of segbench that uses torch.

The baseline is the pipeline as people write it today, from the torchvision docs:
each frame as a PIL image, the weights' `transforms()` preset on it (resize the
shorter side with antialiasing, scale to 0..1, normalize), the eager model with the
auxiliary head the torchvision builders attach, `F.interpolate` of the logits to the
image size, `argmax`, under `torch.no_grad()`: the careful notebook. The docs' snippet
as written leaves autograd on, which costs more; a suite run `{ backend = "pytorch-eager",
autograd = true }` measures that one too, in the same run (speed-ups stay over the no_grad one). The
reference is the same FP32 network run the way the exported graph computes
(segexport.parity.torch_labels), so label drift measures the backend and
precision, not a resize choice.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segbench.cases.suite import ModelSpec
from segrt.image import threshold_logit


@dataclass
class Reference:
    """A model as segexport builds it (aux head dropped) and its fused-graph model card."""

    spec: ModelSpec
    model: Any  # segexport.models.base.SegmentationModel
    card: Any  # segrt.meta.ModelCard of the fused graph
    labels: dict[tuple[int, int, int], np.ndarray] = field(default_factory=dict)

    def labels_for(self, batch: np.ndarray) -> np.ndarray:
        """FP32 PyTorch labels of each image of an N x H x W x 3 batch (cached per image)."""
        from segexport.parity import torch_labels

        result = []
        for image in batch:
            key = (hash(image.tobytes()), *image.shape[:2])
            if key not in self.labels:
                self.labels[key] = torch_labels(self.model, image, self.card)[0]
            result.append(self.labels[key])
        return np.stack(result)


def build_reference(spec: ModelSpec, threads: int | None = None) -> Reference:
    """Build the model with the very arguments (and seed) its export used, so weights match the files."""
    import torch

    from segexport.models.zoo import build

    if threads:
        torch.set_num_threads(threads)
    model = build(spec.options)
    return Reference(spec, model, model.card(fused=True))


class EagerPipeline:
    """uint8 N x H x W x 3 -> uint8 N x H x W the way a PyTorch user's code does it; records `timings`.

    Stages: "pre" (each frame to a PIL image, the preset on it, the batch stacked),
    "h2d" (CUDA only), "compute" (the model, aux head included), "post" (interpolate
    to the image size, argmax, uint8), "d2h" (CUDA only). On CUDA they are timed with
    CUDA events, on CPU with perf_counter_ns.
    """

    def __init__(self, reference: Reference, device: str = "cpu", *, autograd: bool = False) -> None:
        import torch

        self.torch = torch
        self.autograd = autograd  # True: no torch.no_grad(), as torchvision's docs snippet is written
        self.device = torch.device(device)
        self.transforms, self.transforms_name = user_transforms(reference)
        self.network = with_aux_head(reference.model.network).to(self.device).eval()
        threshold = reference.model.threshold
        self.cut = None if threshold is None else float(threshold_logit(threshold))
        self.timings: dict[str, float] = {}
        self.network_input: list[int] = []  # [H, W] the network ran at in the last call: the preset decides it

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        import torch.nn.functional as F
        from PIL import Image

        clock = _CudaClock(torch) if self.device.type == "cuda" else _HostClock()
        height, width = batch.shape[1:3]
        with torch.enable_grad() if self.autograd else torch.no_grad():
            tensor = torch.stack([self.transforms(Image.fromarray(frame)) for frame in batch])
            clock.mark("pre")
            if self.device.type == "cuda":
                tensor = tensor.to(self.device)
                clock.mark("h2d")
            self.network_input = [int(v) for v in tensor.shape[-2:]]
            output = self.network(tensor)
            logits = output["out"] if isinstance(output, Mapping) else output
            clock.mark("compute")
            logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
            if self.cut is None:
                labels = logits.argmax(dim=1).to(torch.uint8)
            else:  # a one-class model: its sigmoid threshold, as its fused graph compares
                labels = (logits[:, 0] > self.cut).to(torch.uint8)
            clock.mark("post")
            labels = labels.cpu()
            if self.device.type == "cuda":
                clock.mark("d2h")
        self.timings = clock.stages()
        return labels.numpy()

    def close(self) -> None:
        self.network = None
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()


def user_transforms(reference: Reference) -> tuple[Any, str]:
    """The pre-processing a user writes: the torchvision weights' preset where torchvision knows the model.

    With --weights none the DEFAULT entry's preset is the same object torchvision
    builds by hand (SemanticSegmentation(resize_size=520)); building it needs no
    download. Other models get the same steps with their own size, mean and std,
    in the preset's order: resize the PIL image, then to a float tensor.
    """
    import torch
    from torchvision.models import get_model_weights
    from torchvision.transforms import v2

    card = reference.card
    try:
        weights_enum = get_model_weights(reference.spec.name)
    except (ValueError, KeyError):
        weights_enum = None
    if weights_enum is not None:
        chosen = reference.spec.options.weights
        entry = weights_enum.DEFAULT if chosen in (None, "none", "DEFAULT") else weights_enum[chosen]
        return entry.transforms(), f"{entry}.transforms()"
    size = list(card.input_size)
    steps = v2.Compose(
        [
            v2.Resize(size, antialias=True),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(card.mean), std=list(card.std)),
        ]
    )
    return steps, f"torchvision v2 Resize({size}, antialias) + PILToTensor + ToDtype + Normalize"


def with_aux_head(network: Any) -> Any:
    """A copy of a torchvision FCN with the auxiliary head that its builders attach by default.

    segexport drops the aux head before export (inference discards it); the baseline
    keeps the work users' code does. The head is rebuilt the way torchvision's
    `_fcn_resnet` builds it (FCNHead on layer3's output); its weights do not touch
    the "out" labels. Other networks are returned as they are.
    """
    from torch import nn
    from torchvision.models.segmentation.fcn import FCN, FCNHead

    inner = getattr(network, "network", network)  # segexport's Logits wrapper
    if not isinstance(inner, FCN):
        return copy.deepcopy(inner)
    inner = copy.deepcopy(inner)
    if inner.aux_classifier is None:
        layer3_channels = [m for m in inner.backbone.layer3.modules() if isinstance(m, nn.Conv2d)][-1].out_channels
        classes = [m for m in inner.classifier.modules() if isinstance(m, nn.Conv2d)][-1].out_channels
        inner.backbone.return_layers["layer3"] = "aux"
        inner.aux_classifier = FCNHead(layer3_channels, classes)
    return inner


class _HostClock:
    def __init__(self) -> None:
        self.last = time.perf_counter_ns()
        self.times: dict[str, float] = {}

    def mark(self, stage: str) -> None:
        now = time.perf_counter_ns()
        self.times[stage] = (now - self.last) / 1e6
        self.last = now

    def stages(self) -> dict[str, float]:
        return self.times


class _CudaClock:
    """CUDA events between stages; read after the final copy has synchronized the stream."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.events = [("start", torch.cuda.Event(enable_timing=True))]
        self.events[0][1].record()

    def mark(self, stage: str) -> None:
        event = self.torch.cuda.Event(enable_timing=True)
        event.record()
        self.events.append((stage, event))

    def stages(self) -> dict[str, float]:
        self.torch.cuda.synchronize()
        return {
            stage: float(before.elapsed_time(event))
            for (_, before), (stage, event) in zip(self.events, self.events[1:], strict=False)
        }
