"""The pytorch-eager baseline does what users' code does: torchvision's preset, the aux head, interpolate, argmax."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.models.segmentation import FCN_ResNet50_Weights
from torchvision.transforms._presets import SemanticSegmentation

from segbench.cases.baseline import EagerPipeline, build_reference, with_aux_head
from segbench.cases.runner import make_batch
from segbench.cases.suite import ModelSpec
from segexport.request import ModelOptions


def reference(name: str, **options):
    return build_reference(ModelSpec(ModelOptions(name, **options), name))


def test_torchvision_models_get_their_weights_preset() -> None:
    pipeline = EagerPipeline(reference("fcn_resnet50", weights="none", input_size=(96, 96)))
    assert isinstance(pipeline.transforms, SemanticSegmentation)
    assert pipeline.transforms.resize_size == [520]  # torchvision's own preset, not the export's 96x96
    photo_sized = pipeline.transforms(torch.zeros(1, 3, 612, 640, dtype=torch.uint8))
    assert photo_sized.shape[-2:] == (520, 543)  # the shorter side to 520: the baseline's network is not 520x520
    assert pipeline.transforms_name == f"{FCN_ResNet50_Weights.DEFAULT}.transforms()"
    assert pipeline.network.aux_classifier is not None


def test_the_aux_head_is_back_and_does_not_touch_the_labels() -> None:
    fcn = reference("fcn_resnet18", input_size=(64, 64))
    assert fcn.model.network.network.aux_classifier is None  # segexport drops it for export
    network = EagerPipeline(fcn).network
    assert network.backbone.return_layers == {"layer4": "out", "layer3": "aux"}
    tensor = torch.rand(1, 3, 40, 48)
    with torch.inference_mode():
        output = network(tensor)
        expected = fcn.model.network(tensor)
    assert set(output) == {"out", "aux"} and output["aux"].shape == output["out"].shape
    # segexport's network stops before torchvision's resize to the input size (1/8-scale logits)
    resized = torch.nn.functional.interpolate(expected, size=(40, 48), mode="bilinear", align_corners=False)
    torch.testing.assert_close(output["out"], resized)


def test_baseline_labels_come_at_the_image_size_with_cpu_stages(photo: np.ndarray) -> None:
    unet = reference("unet", input_size=(32, 32), unet_base=4, unet_depth=2)
    pipeline = EagerPipeline(unet)
    assert pipeline.transforms_name == "torchvision v2 Resize([32, 32], antialias) + PILToTensor + ToDtype + Normalize"
    batch = make_batch(photo, 2, 60, 70)
    labels = pipeline(batch)
    assert labels.shape == (2, 60, 70) and labels.dtype == np.uint8
    assert set(pipeline.timings) == {"pre", "compute", "post"} and all(v > 0 for v in pipeline.timings.values())
    assert pipeline.network_input == [32, 32]
    reference_labels = unet.labels_for(batch)
    assert reference_labels.shape == labels.shape
    # the same weights; the preset resizes with antialiasing, the reference without: most pixels agree
    assert 0.5 < float(np.mean(labels == reference_labels)) <= 1.0


def test_make_batch_fills_a_batch_with_distinct_frames(photo: np.ndarray) -> None:
    batch = make_batch(photo, 5, 61, 47)
    assert batch.shape == (5, 61, 47, 3) and batch.flags.c_contiguous and batch.flags.writeable
    assert not np.array_equal(batch[0], batch[1]) and np.array_equal(batch[0], batch[4])
    assert np.array_equal(make_batch(photo, 1, *photo.shape[:2])[0], photo)


def test_networks_without_an_aux_head_are_left_as_they_are() -> None:
    network = torch.nn.Conv2d(3, 2, 1)
    copy = with_aux_head(network)
    assert copy is not network and not hasattr(copy, "aux_classifier")


def test_baseline_is_the_docs_pipeline_on_pil_images(photo: np.ndarray) -> None:
    """The preset runs on each frame as a PIL image (PIL's antialiased resize), as torchvision's docs do."""
    from PIL import Image

    class Head(torch.nn.Module):  # a 1x1 conv for the network: this test is about the steps around it
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 5, 1)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            labels_grad.append(torch.is_grad_enabled())
            return {"out": self.conv(x)[..., ::8, ::8]}

    labels_grad: list[bool] = []
    pipeline = EagerPipeline(reference("fcn_resnet50", weights="none", input_size=(96, 96)))
    pipeline.network = Head()
    batch = make_batch(photo, 2, 40, 50)
    labels = pipeline(batch)
    with torch.no_grad():
        frames = [pipeline.transforms(Image.fromarray(frame)) for frame in batch]
        logits = pipeline.network(torch.stack(frames))["out"]
        logits = torch.nn.functional.interpolate(logits, size=(40, 50), mode="bilinear", align_corners=False)
    np.testing.assert_array_equal(labels, logits.argmax(1).to(torch.uint8).numpy())
    assert pipeline.network_input == [520, 650]  # torchvision's preset: the shorter side to 520
    tensor_preset = pipeline.transforms(torch.from_numpy(batch[0]).permute(2, 0, 1))
    assert not torch.equal(frames[0], tensor_preset)  # PIL's resize, not the tensor one: what users' code runs
    assert labels_grad[0] is False and not pipeline.autograd  # no_grad: the careful notebook


def test_the_autograd_row_runs_the_docs_snippet_as_written_with_the_same_labels(photo: np.ndarray) -> None:
    grad_on: list[bool] = []

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 5, 1)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            grad_on.append(torch.is_grad_enabled())
            return {"out": self.conv(x)[..., ::8, ::8]}

    unet = reference("unet", input_size=(32, 32), unet_base=4, unet_depth=2)
    head = Head()
    pipelines = [EagerPipeline(unet), EagerPipeline(unet, autograd=True)]
    for pipeline in pipelines:
        pipeline.network = head
    batch = make_batch(photo, 1, 40, 50)
    np.testing.assert_array_equal(pipelines[0](batch), pipelines[1](batch))
    assert grad_on == [False, True]
