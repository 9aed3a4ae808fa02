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


def read_lines(path: Path, what: str, fix: str, reading: str = "it") -> list[str]:
    """The non-empty, stripped lines of a UTF-8 text file the user named, or SegError: "`what`: cannot read
    `reading` (reason); `fix`" (--classes and --calib lists are read this way)."""
    from segrt.errors import SegError

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SegError(f"{what}: cannot read {reading} ({reason}); {fix}") from None
    return [line.strip() for line in lines if line.strip()]
