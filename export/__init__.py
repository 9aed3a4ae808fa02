"""segexport: PyTorch segmentation models to checked, fused ONNX graphs and TensorRT engines.

The chain is a set of small functions the `segexport` command wires together:
`models.build_model` -> `onnx_export.export_onnx` -> `check_and_simplify` ->
`check_parity` -> `save_onnx` (then precision and engine steps).
"""

from pathlib import Path

__version__ = "0.1.0"

ASSETS = Path(__file__).parent / "assets"
WEIGHTS = Path(__file__).parent / "weights"
DEFAULT_MODEL = "unet_shapes"  # the bundled reference model, trained on the generated shapes set


def parity_image(model_name: str) -> Path:
    """The image parity checks run on by default: the model's own sample where it ships one, else the photo.

    A model trained on other images than photos (the shapes reference model) is checked
    on an image like its own: on an out-of-distribution photo its near-tie logits flip
    under FP16/INT8 and the agreement says nothing about the model.
    """
    sample = WEIGHTS / f"{model_name}_sample.jpg"
    return sample if sample.is_file() else ASSETS / "astronaut.jpg"
