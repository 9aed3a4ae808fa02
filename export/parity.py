"""The checks of an exported file against its source, and of an engine against its ONNX graph.

Everything here compares labels (pixel agreement), the measure users care about, on the same
images fed the way segrt feeds them. Importable without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segrt.meta import ModelCard

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from segexport.tensorrt_profile import ShapeRange


def parity_batch(image: np.ndarray, card: ModelCard, shapes: ShapeRange) -> np.ndarray:
    """The photo as an N x H x W x 3 batch the engine's profile accepts: N is the profile's least batch
    (`--min-shape 4x...` refuses one image), filled with the photo and its flips so the images differ;
    a fused engine also gets the photo resized into the profile's H x W range."""
    import numpy as np
    from PIL import Image

    from segexport.tensorrt_profile import fit_size

    if card.fused:
        height, width = fit_size(image.shape[0], image.shape[1], shapes)
        if (height, width) != image.shape[:2]:
            image = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
    variants = (image, image[:, ::-1], image[::-1], image[::-1, ::-1])
    return np.ascontiguousarray(np.stack([variants[i % len(variants)] for i in range(shapes.min[0])]))


def engine_agreement(engine: Path, source: Path, card: ModelCard, image: np.ndarray, shapes: ShapeRange) -> float:
    """Share of pixels where the engine (through `segrt.load`) and ONNX Runtime CPU on `source` agree.

    Both sides see the same `parity_batch`; the reference is `precision.reference_outputs`, so a
    Q/DQ source is compared with its node-by-node labels, as its precision gate was.
    """
    import numpy as np

    import segrt
    from segexport.precision import reference_outputs

    batch = parity_batch(image, card, shapes)
    with segrt.load(engine, backend="tensorrt") as seg:
        labels = np.asarray(seg(batch))
    reference = np.stack([reference_outputs(source, one, card)[0] for one in batch])
    return float(np.mean(labels == reference))


def engine_check_problem(card: ModelCard, device: int = 0) -> str | None:
    """Why the engine the card describes cannot be checked on this machine, or None when it can.

    A TensorRT engine is built on its GPU, so it can always be checked where it was built. A
    TensorRT-RTX engine is built ahead of time: its check needs a GPU here whose compute
    capability it was built for.
    """
    from segexport.engine_prerequisites import gpu_problem_here
    from segrt.backends import tensorrt as backend
    from segrt.backends.tensorrt_library import TENSORRT_RTX

    if backend.card_library(card) != TENSORRT_RTX:
        return None
    _, problem = gpu_problem_here(device)
    if problem is not None:
        return f"no GPU here runs it ({problem})"
    gpu = backend.gpu_info(device)
    return backend.gpu_problem(card, gpu)
