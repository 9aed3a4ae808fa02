"""segexport: PyTorch segmentation models to checked, fused ONNX graphs and TensorRT engines.

The chain is a set of small functions the `segexport` command wires together:
`models.build_model` -> `onnx_export.export_onnx` -> `check_and_simplify` ->
`check_parity` -> `save_onnx` (then precision and engine steps).
"""

from pathlib import Path

__version__ = "0.1.0"

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL = "unet_shapes"  # the bundled reference model, trained on the generated shapes set
