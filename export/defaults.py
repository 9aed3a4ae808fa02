"""What the exporter takes when the user names nothing: the bundled model, its weights folder, the parity image, and
the numbers the command line's help quotes (kept here, light, so `segexport --help` imports no ONNX tools)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
WEIGHTS = Path(__file__).parent / "weights"
DEFAULT_MODEL = "unet_shapes"  # the bundled reference model, trained on the generated shapes set
DEFAULT_CALIB_COUNT = 64  # calibration images used, spread over --calib
# AutoCast needs only value ranges, and Polygraphy, which runs the graph for it, keeps every tensor of every
# image in memory (~2 GB per image for fcn_resnet50 at 520x520; 8 images took 16 GB): two images.
AUTOCAST_IMAGES = 2


def is_user_model(name: str) -> bool:
    """Whether a model name is a user's `package.module:factory` rather than a zoo name or a file."""
    return ":" in name


def parity_image(model_name: str) -> Path:
    """The image parity checks run on by default: the model's own sample where it ships one, else the photo.

    A model trained on other images than photos (the shapes reference model) is checked
    on an image like its own: on an out-of-distribution photo its near-tie logits flip
    under FP16/INT8 and the agreement says nothing about the model.
    """
    sample = WEIGHTS / f"{model_name}_sample.jpg"
    return sample if sample.is_file() else ASSETS / "astronaut.jpg"
