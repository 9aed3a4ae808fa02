"""Where the parity checks live: each exported file against its source, an engine against its ONNX graph.

Everything compares labels (pixel agreement, the measure users care about), on images fed the way
segrt feeds them: ONNX Runtime's labels of a graph, PyTorch's labels of the model (torch is imported
only there), a Q/DQ graph node by node, the agreement gate, and the batch an engine is checked on.
A graph with a confidence output (--confidence) also has its confidence map compared, in levels of
255, against PyTorch's softmax (FP32) or the FP32 graph's (FP16, INT8): `CONFIDENCE_TOLERANCE`.
Importable without torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from segrt.errors import SegError
from segrt.image import postprocess, preprocess, threshold_logit
from segrt.meta import ModelCard

if TYPE_CHECKING:
    from pathlib import Path

    from segexport.engine.profile import ShapeRange
    from segexport.models.base import SegmentationModel


# The confidence gate, by precision: the 99th percentile of |confidence - reference| over the image's pixels, in
# levels of 255, may be at most this. FP32 differs from PyTorch only where rounding noise crosses a level; FP16 and
# INT8 move the logits themselves, most where two classes nearly tie, the pixels whose labels INT8 may also flip
# (its label gate lets 2 % go). The bundled model on its sample: FP16 p99 1, INT8 12 (TensorRT Q/DQ), 19 (CPU).
CONFIDENCE_TOLERANCE = {"fp32": 1, "fp16": 3, "int8": 32, "int8-cpu": 32}
CONFIDENCE_QUANTILE = 99


@dataclass(frozen=True)
class ConfidenceDiff:
    """How a confidence map differs from its reference, in levels of 255."""

    quantile: float  # the CONFIDENCE_QUANTILE-th percentile of |difference|
    mean: float
    max: int

    @classmethod
    def between(cls, confidence: np.ndarray, reference: np.ndarray) -> ConfidenceDiff:
        diff = np.abs(confidence.astype(np.int16) - reference.astype(np.int16))
        return cls(float(np.percentile(diff, CONFIDENCE_QUANTILE)), float(diff.mean()), int(diff.max()))


@dataclass(frozen=True)
class Parity:
    """How an exported graph compares with its source on one image."""

    agreement: float  # share of label-map pixels that are equal, 0..1
    max_abs_logit_diff: float | None  # None where the compared graph exposes no logits
    confidence: ConfidenceDiff | None = None  # None where the graph has no confidence output
    confidence_tolerance: int | None = None  # the most `confidence.quantile` may be (CONFIDENCE_TOLERANCE)

    def record(self, reference: str, image: str) -> dict[str, Any]:
        """The figures as the model card keeps them."""
        record = {
            "reference": reference,
            "image": image,
            "label_agreement": round(self.agreement, 6),
            "max_abs_logit_diff": self.max_abs_logit_diff,
        }
        if self.confidence is not None:
            record["confidence_levels"] = {
                f"p{CONFIDENCE_QUANTILE:g}": round(self.confidence.quantile, 3),
                "mean": round(self.confidence.mean, 4),
                "max": self.confidence.max,
                "tolerance": self.confidence_tolerance,
            }
        return record

    def confidence_text(self) -> str:
        """ "; confidence within 1 level(s) of 255 at p99 ..." for a progress line; "" without a confidence output."""
        if self.confidence is None:
            return ""
        return (
            f"; confidence within {self.confidence.quantile:.3g} level(s) of 255 at p{CONFIDENCE_QUANTILE:g} "
            f"(mean {self.confidence.mean:.2f}, max {self.confidence.max})"
        )


def graph_input(image: np.ndarray, card: ModelCard) -> np.ndarray:
    """One image as the runtime feeds it to this graph: uint8 1xHxWx3 (fused) or preprocessed float NCHW."""
    return image[None] if card.fused else preprocess(image[None], card)


def _with_logits_output(model_proto: Any) -> Any:
    """A copy of a fused graph that also outputs the logits its ArgMax (a one-class model's Greater) reads."""
    import onnx

    deciders = [node for node in model_proto.graph.node if node.op_type in ("ArgMax", "Greater")]
    if len(deciders) != 1:
        return None
    copy = onnx.ModelProto()
    copy.CopyFrom(model_proto)
    copy.graph.output.append(onnx.helper.make_tensor_value_info(deciders[0].input[0], onnx.TensorProto.FLOAT, None))
    return copy


def _class_axis(model_proto: Any) -> int | None:
    """The axis the fused graph's ArgMax reduces: 1 for N x C x H x W logits, 3 (or -1) for channel-last ones."""
    from onnx import helper

    for node in model_proto.graph.node:
        if node.op_type == "ArgMax":
            axes = [helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"]
            return axes[0] if axes else 0
    return None


def graph_outputs(
    model: bytes | str | os.PathLike[str], image: np.ndarray, card: ModelCard, *, node_by_node: bool = False
) -> dict[str, np.ndarray]:
    """Every output of an ONNX graph (bytes or path) on one image, by name, the batch axis dropped (ORT CPU).

    `node_by_node` turns ONNX Runtime's graph optimizations off (see `qdq_labels`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if node_by_node:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    values = session.run(names, {session.get_inputs()[0].name: graph_input(image, card)})
    return {name: value[0] for name, value in zip(names, values, strict=True)}


def onnx_labels(
    model: bytes | str | os.PathLike[str], image: np.ndarray, card: ModelCard
) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (and logits where the graph exposes them) of an ONNX graph (bytes or path) on one image, ORT CPU."""
    outputs = graph_outputs(model, image, card)
    if card.fused:
        probes = [value for name, value in outputs.items() if name not in (card.output_name, card.confidence_name)]
        return outputs[card.output_name], (probes[0] if probes else None)
    logits = outputs[card.output_name]
    return postprocess(logits[None], *image.shape[:2], threshold=card.threshold)[0], logits


def torch_labels(model: SegmentationModel, image: np.ndarray, card: ModelCard) -> tuple[np.ndarray, np.ndarray]:
    """Labels and logits (C x H x W) of the PyTorch model on one image, the way the exported graph computes them."""
    import torch

    from segexport.onnx.fused import FusedSegmentation

    with torch.no_grad():
        if card.fused:
            logits = FusedSegmentation(model).eval().logits(torch.from_numpy(np.array(image))[None])[0]
            if card.threshold is None:
                return logits.argmax(0).to(torch.uint8).numpy(), logits.numpy()
            return (logits[0] > float(threshold_logit(card.threshold))).to(torch.uint8).numpy(), logits.numpy()
        logits = model.network(torch.from_numpy(preprocess(image[None], card))).numpy()
    return postprocess(logits, *image.shape[:2], threshold=card.threshold)[0], logits[0]


def check_parity(model_proto: Any, model: SegmentationModel, image: np.ndarray, card: ModelCard) -> Parity:
    """Compare ONNX Runtime (CPU) with PyTorch on `image`: label agreement and max |logit diff|."""
    probe = _with_logits_output(model_proto) if card.fused else model_proto
    probe = probe if probe is not None else model_proto
    labels, logits = onnx_labels(probe.SerializeToString(), image, card)
    # a channel-last tail (segexport.onnx.tail); a one-class graph has no ArgMax, and its logit no class axis
    if logits is not None and card.fused and _class_axis(model_proto) in (3, -1):
        logits = np.moveaxis(logits, -1, 0)
    ref_labels, ref_logits = torch_labels(model, image, card)
    diff = float(np.abs(logits - ref_logits).max()) if logits is not None else None
    parity = Parity(agreement=float((labels == ref_labels).mean()), max_abs_logit_diff=diff)
    if card.confidence_name is None:
        return parity
    confidence = graph_outputs(model_proto.SerializeToString(), image, card)[card.confidence_name]
    return _with_confidence(parity, confidence, torch_confidence(model, image, card), card.precision)


def torch_confidence(model: SegmentationModel, image: np.ndarray, card: ModelCard) -> np.ndarray:
    """The confidence map (uint8 H x W) of the PyTorch model on one image, the fused graph's definition
    (`FusedSegmentation.confidence_map`) run eagerly in FP32."""
    import torch

    from segexport.onnx.fused import FusedSegmentation

    with torch.no_grad():
        return FusedSegmentation(model, confidence=True).eval()(torch.from_numpy(np.array(image))[None])[1][0].numpy()


def _with_confidence(parity: Parity, confidence: np.ndarray, reference: np.ndarray, precision: str) -> Parity:
    from dataclasses import replace

    tolerance = CONFIDENCE_TOLERANCE.get(precision, CONFIDENCE_TOLERANCE["int8"])
    return replace(parity, confidence=ConfidenceDiff.between(confidence, reference), confidence_tolerance=tolerance)


def check_agreement(parity: Parity, minimum: float, what: str, fix: str) -> None:
    """Raise a SegError when `parity.agreement` is below `minimum` (both 0..1), or a confidence map differs from
    its reference by more than its tolerance."""
    if parity.agreement < minimum:
        raise SegError(
            f"{what}: only {100 * parity.agreement:.3f} % of pixels agree with the reference "
            f"(minimum {100 * minimum:.2f} %); {fix}"
        )
    diff, tolerance = parity.confidence, parity.confidence_tolerance
    if diff is not None and tolerance is not None and diff.quantile > tolerance:
        raise SegError(
            f"{what}: its confidence map differs from the reference's by {diff.quantile:.3g} levels of 255 at "
            f"p{CONFIDENCE_QUANTILE:g} (at most {tolerance}); keep the last layers in FP32 with --keep-fp32 REGEX "
            f"(the classifier first), calibrate on more images, or export without --confidence"
        )


def qdq_labels(model: bytes | str | os.PathLike[str], image: np.ndarray, card: ModelCard) -> np.ndarray:
    """Labels of a Q/DQ graph (bytes or path) run node by node on ONNX Runtime CPU (graph optimizations off).

    This is how the TensorRT-flavoured graph is checked. Its Q/DQ scales are FP16, and
    ONNX Runtime's CPU optimizer gets such graphs wrong: on the random test U-Net,
    onnxruntime 1.32 gives 0 % agreement with FP32 optimized and 98 % node by node
    (turning off its WeightBiasQuantization transformer alone fixes the basic level; the
    QDQ fusions of the higher levels break it again). Node by node is the graph's own
    arithmetic, which is what TensorRT implements.
    """
    outputs = graph_outputs(model, image, card, node_by_node=True)[card.output_name]
    return outputs if card.fused else postprocess(outputs[None], *image.shape[:2], threshold=card.threshold)[0]


def reference_outputs(
    model: bytes | str | os.PathLike[str], image: np.ndarray, card: ModelCard
) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (and logits where the graph gives them) of a graph on ONNX Runtime CPU, run the way its
    precision (`card.precision`) can be trusted there: the TensorRT Q/DQ graph node by node (see
    `qdq_labels`), every other graph on ONNX Runtime's optimized session.

    The one reference both gates use: a precision graph against FP32, and an engine against its ONNX.
    """
    if card.precision == "int8":
        return qdq_labels(model, image, card), None
    return onnx_labels(model, image, card)


def compare_with_fp32(model_proto: Any, precision: str, fp32_path: Path, image: np.ndarray, card: ModelCard) -> Parity:
    """Label agreement (and max |logit diff| for unfused graphs) of a reduced-precision graph vs FP32, ORT CPU."""
    ref_labels, ref_logits = onnx_labels(fp32_path, image, card)
    data = model_proto.SerializeToString()
    labels, logits = reference_outputs(data, image, card.replace(precision=precision))
    diff = None
    if logits is not None and ref_logits is not None:
        diff = float(np.abs(logits.astype(np.float32) - ref_logits).max())
    parity = Parity(agreement=float((labels == ref_labels).mean()), max_abs_logit_diff=diff)
    if card.confidence_name is None:
        return parity
    reference = graph_outputs(fp32_path, image, card)[card.confidence_name]
    confidence = graph_outputs(data, image, card, node_by_node=precision == "int8")[card.confidence_name]
    return _with_confidence(parity, confidence, reference, precision)


def parity_batch(image: np.ndarray, card: ModelCard, shapes: ShapeRange) -> np.ndarray:
    """The photo as an N x H x W x 3 batch the engine's profile accepts: N is the profile's least batch
    (`--min-shape 4x...` refuses one image), filled with the photo and its flips so the images differ;
    a fused engine also gets the photo resized into the profile's H x W range."""
    from PIL import Image

    from segexport.engine.profile import fit_size

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
    import segrt

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
    from segexport.engine.prerequisites import gpu_problem_here
    from segrt.backends import tensorrt as backend
    from segrt.backends.tensorrt_library import TENSORRT_RTX

    if backend.card_library(card) != TENSORRT_RTX:
        return None
    _, problem = gpu_problem_here(device)
    if problem is not None:
        return f"no GPU here runs it ({problem})"
    gpu = backend.gpu_info(device)
    return backend.gpu_problem(card, gpu)
