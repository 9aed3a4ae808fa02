"""The model card: what a deployed file needs to be used, travelling with it.

The exporter writes the card through this module and the runtime reads it back
through the same code, so both sides agree on every field. An ONNX file carries
its card in `metadata_props` (key `segexport.card`, with `segexport.graph_sha256`:
the sha256 of the file less those entries) and, beside it, in a JSON sidecar
`<file>.json` that adds the file's sha256; the two are written as a pair. An engine
file has no room for metadata, so its sidecar is required and its sha256 is checked
before TensorRT ever sees the bytes. Before a card is used it is checked against the
graph it describes (`check_card_fits`): classes, input size, precision, layout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segrt.errors import SegError
from segrt.files import (  # noqa: F401 (also read from here)
    atomic_write,
    prepare_output_folder,
    publish_together,
    temporary_beside,
    write_bytes_atomic,
    write_problem,
)
from segrt.onnx_file import OnnxFile, content_sha256, read_onnx_file
from segrt.precisions import PRECISIONS as PRECISION_ROWS

CARD_KEY = "segexport.card"
GRAPH_SHA_KEY = "segexport.graph_sha256"  # beside the embedded card: what a file without its .json is checked by
CARD_VERSION = 1
PRECISIONS = tuple(PRECISION_ROWS)
RESIZE_MODES = ("fixed", "shorter")


@dataclass(frozen=True)
class ModelCard:
    """Everything the runtime needs to turn images into labels with this file.

    `input_size` is (H, W) when `resize` is "fixed" and (S,) when it is "shorter"
    (the shorter image side is resized to S, keeping the aspect ratio, both sides
    then rounded down to a multiple of `size_divisor`). `mean` and `std` are in
    0..1 units, as torchvision writes them. A fused file takes uint8 NHWC images and
    returns uint8 NHW labels; an unfused one takes normalized float NCHW and
    returns float logits, and the runtime does the same steps on the host. A one-class
    model (one logit channel) has `threshold`: its labels are 1 (`classes[1]`) where the
    sigmoid of its logit is above it, else 0 (`classes[0]`, background). A fused graph exported with
    `--confidence` has a second output, `confidence_name`: uint8 N x H x W, floor(255 * p + 0.5) with p the top
    class's softmax probability (a one-class model: max(sigmoid, 1 - sigmoid)) computed at the network's output
    size and resized bilinearly (`segexport.onnx.fused.FusedSegmentation.confidence_map`).
    """

    model: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, ...]
    resize: str = "fixed"
    size_divisor: int = 1
    fused: bool = True
    threshold: float | None = None  # one-class models: label 1 where sigmoid(logit) > threshold; None: argmax
    precision: str = "fp32"
    opset: int = 17
    input_name: str = "image"
    output_name: str = "labels"
    confidence_name: str | None = None  # the confidence map's output (--confidence); None: the labels alone
    versions: dict[str, str] = field(default_factory=dict)
    source_sha256: str = ""  # the file this one was made from (FP32 ONNX for FP16/INT8, ONNX for engines)
    tensorrt: dict[str, Any] = field(default_factory=dict)  # engines only: version, GPU, profile, build time
    checks: dict[str, Any] = field(default_factory=dict)  # the parity figures this file passed before it was written
    card_version: int = CARD_VERSION

    def __post_init__(self) -> None:
        problems = []
        if not self.classes:
            problems.append("no classes")
        if len(self.classes) > 256:
            problems.append(f"{len(self.classes)} classes do not fit a uint8 label map (256 at most)")
        if len(self.palette) != len(self.classes):
            problems.append(f"{len(self.palette)} palette colours for {len(self.classes)} classes")
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in self.palette):
            problems.append("palette entries must be three values in 0..255")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            problems.append("mean and std need three values, std positive")
        if self.resize not in RESIZE_MODES:
            problems.append(f"resize {self.resize!r} is not one of {', '.join(RESIZE_MODES)}")
        wanted = 2 if self.resize == "fixed" else 1
        if len(self.input_size) != wanted or any(int(v) < 1 for v in self.input_size):
            problems.append(f"input_size {list(self.input_size)} needs {wanted} positive value(s)")
        if self.size_divisor < 1:
            problems.append("size_divisor must be >= 1")
        elif self.resize == "fixed" and any(int(v) % self.size_divisor for v in self.input_size):
            problems.append(f"input_size {list(self.input_size)} is not a multiple of {self.size_divisor}")
        if self.threshold is not None and not (0 < self.threshold < 1 and len(self.classes) == 2):
            problems.append(f"threshold {self.threshold} needs a value between 0 and 1 and two classes")
        if self.confidence_name is not None and not self.fused:
            problems.append("confidence_name needs a fused graph (the unfused one returns logits)")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        source = self.tensorrt.get("source") if isinstance(self.tensorrt, dict) else None
        if source is not None and not _bare_file_name(source):
            problems.append(f"tensorrt.source {source!r} must be the name of a file beside the engine")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) the network sees for an image of `height` x `width`."""
        if self.resize == "fixed":
            return int(self.input_size[0]), int(self.input_size[1])
        side, d = int(self.input_size[0]), self.size_divisor
        short = min(height, width)
        new_h, new_w = side * height // short, side * width // short
        return max(d, new_h // d * d), max(d, new_w // d * d)

    def replace(self, **changes: Any) -> ModelCard:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "card") -> ModelCard:
        """Build a card from parsed JSON, naming `source` in the error if it is malformed."""
        if not isinstance(data, dict):
            raise SegError(f"{source}: the model card is not a JSON object; re-export the model")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - data.keys())
        if missing:
            raise SegError(f"{source}: the model card lacks {', '.join(missing)}; re-export the model with segexport")
        if data.get("card_version", CARD_VERSION) > CARD_VERSION:
            raise SegError(
                f"{source}: the model card is version {data['card_version']}, newer than this segrt reads "
                f"({CARD_VERSION}); upgrade segexport"
            )
        kwargs = {k: v for k, v in data.items() if k in names}
        try:
            for key in ("classes", "mean", "std", "input_size"):
                kwargs[key] = tuple(kwargs[key])
            kwargs["palette"] = tuple(tuple(int(v) for v in c) for c in kwargs["palette"])
            kwargs["classes"] = tuple(str(c) for c in kwargs["classes"])
            kwargs["input_size"] = tuple(int(v) for v in kwargs["input_size"])
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise SegError(f"{source}: the model card is invalid ({exc}); re-export the model") from None


def _bare_file_name(name: object) -> bool:
    """A file name with no folder in it: not a path, not . or .., no separator of any system."""
    return isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """`model.onnx` -> `model.onnx.json`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise SegError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    return digest.hexdigest()


def _sidecar_text(card: ModelCard, sha256: str) -> str:
    record = json.loads(card.to_json())
    record["sha256"] = sha256
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


def write_sidecar(path: str | os.PathLike[str], card: ModelCard) -> Path:
    """Write `<path>.json`: the card plus the sha256 of the finished file at `path` (a file no other process
    writes: a scratch folder's, or one whose card is rewritten; a new file and its card: `write_with_card`)."""
    text = _sidecar_text(card, file_sha256(path))
    return atomic_write(sidecar_path(path), lambda tmp: tmp.write_text(text))


def write_with_card(path: str | os.PathLike[str], write: Callable[[Path], None], card: ModelCard) -> Path:
    """Write a model file and its card as a pair: `write(tmp)` fills a temporary file beside `path`, the card
    records the sha256 of those bytes (never of whatever `path` holds meanwhile) in a temporary file of its own,
    and both are renamed in together, under the folder's lock with signals held (segrt.files.publish_together).

    So the card always describes the file beside it; an interrupt or a failure before the renames leaves the
    previous pair as it was and no temporary file.
    """
    path = Path(path)
    side = sidecar_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temporary_beside(path) as tmp, temporary_beside(side) as card_tmp:
            write(tmp)
            card_tmp.write_text(_sidecar_text(card, file_sha256(tmp)))
            publish_together([(tmp, path), (card_tmp, side)])
    except OSError as exc:
        raise SegError(write_problem(exc, path)) from None
    return path


def read_verified_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes, read once and checked against the sha256 its sidecar records.

    Engines are deserialized from exactly these bytes, so a file swapped after its
    card was read is still refused.
    """
    side = sidecar_path(path)
    try:
        recorded = json.loads(side.read_text()).get("sha256")
        data = Path(path).read_bytes()
    except (OSError, ValueError, AttributeError) as exc:
        raise SegError(f"{path}: cannot read it with its card {side.name} ({exc}); rebuild it") from None
    if hashlib.sha256(data).hexdigest() != recorded:
        raise SegError(
            f"{side}: the model card does not match {Path(path).name}: the file changed after it was built; "
            f"rebuild it with segexport"
        )
    return data


def embed_card(model: Any, card: ModelCard) -> None:
    """Put the card into an `onnx.ModelProto`'s metadata_props (replacing an older one)."""
    _set_metadata(model, CARD_KEY, card.to_json())


def serialize_with_card(model: Any, card: ModelCard) -> bytes:
    """An `onnx.ModelProto`'s bytes with `card` embedded and, beside it, `segexport.graph_sha256`: the sha256 of
    the file less its metadata_props, which a file whose .json card is gone is checked against."""
    embed_card(model, card)
    _set_metadata(model, GRAPH_SHA_KEY, None)
    digest = content_sha256(model.SerializeToString())
    _set_metadata(model, GRAPH_SHA_KEY, digest)
    data = model.SerializeToString()
    if content_sha256(data) != digest:  # protobuf writes a message the same way twice; checked, not assumed
        raise SegError(f"{card.model}: the ONNX file's bytes changed between two serializations; report it")
    return data


def _set_metadata(model: Any, key: str, value: str | None) -> None:
    for prop in list(model.metadata_props):
        if prop.key == key:
            model.metadata_props.remove(prop)
    if value is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def _load_json(text: str, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SegError(
            f"{source}: the model card is not valid JSON ({exc.msg}, line {exc.lineno}); re-export the model"
        ) from None
    if not isinstance(data, dict):
        raise SegError(f"{source}: the model card is not a JSON object; re-export the model")
    return data


def read_sidecar(path: str | os.PathLike[str], *, verify: bool = True) -> ModelCard | None:
    """The card in `<path>.json`, or None if there is no sidecar.

    With `verify`, the recorded sha256 must match the file: a sidecar left from
    another export is refused instead of silently describing the wrong model.
    """
    side = sidecar_path(path)
    try:
        if not side.is_file():
            return None
        data = _load_json(side.read_text(), str(side))
    except (OSError, UnicodeDecodeError) as exc:
        raise SegError(f"{side}: cannot read the model card ({exc}); re-export the model") from None
    recorded = data.pop("sha256", None)
    if verify:
        if not recorded:
            raise SegError(f"{side}: the model card records no sha256 of {Path(path).name}; re-export the model")
        actual = file_sha256(path)
        if actual != recorded:
            raise SegError(
                f"{side}: the model card does not match {Path(path).name} (sha256 {actual[:12]}, card says "
                f"{str(recorded)[:12]}): the file changed after it was exported; re-export it with segexport"
            )
    return ModelCard.from_dict(data, source=str(side))


def read_card(path: str | os.PathLike[str]) -> ModelCard:
    """The card of an ONNX or engine file, checked before it is used.

    The sidecar wins when present (and must match the file's sha256). An ONNX file
    without one falls back to its embedded card, which must match the file's content
    (`segexport.graph_sha256`). An ONNX file's card is then checked against its graph
    (`check_card_fits`). An engine needs its sidecar.
    """
    path = Path(path)
    card = read_sidecar(path)
    if path.suffix != ".onnx":
        if card is None:
            raise SegError(
                f"{path}: the model card {sidecar_path(path).name} is missing; engines are only loaded with "
                f"their card (rebuild with `segexport MODEL.onnx --engine`)"
            )
        return card
    onnx = read_onnx_file(path, content_hash=card is None)
    card = card or embedded_card(path, onnx)
    check_card_fits(card, onnx, path)
    return card


def card_from_metadata(path: str | os.PathLike[str], metadata: Mapping[str, str]) -> ModelCard:
    """The card embedded in an ONNX file's metadata_props, as it is (`embedded_card` checks it)."""
    text = metadata.get(CARD_KEY)
    if text is None:
        raise SegError(f"{path}: no segexport model card in the file or beside it; export it with segexport")
    return ModelCard.from_dict(_load_json(text, f"{path} (metadata)"), source=f"{path} (metadata)")


def embedded_card(path: str | os.PathLike[str], onnx: OnnxFile) -> ModelCard:
    """The card inside an ONNX file that has no .json card beside it: used only where the file is the one it was
    written into, by the sha256 of its content that it records (`onnx` read with `content_hash`)."""
    card = card_from_metadata(path, onnx.metadata)
    recorded = onnx.metadata.get(GRAPH_SHA_KEY)
    name = sidecar_path(path).name
    if not recorded:
        raise SegError(
            f"{path}: its card {name} is missing, and the card inside the file records no sha256 to check the "
            f"file against (exported before segexport wrote one); put {name} back, or re-export it"
        )
    if onnx.content_sha256 is not None and onnx.content_sha256 != recorded:
        raise SegError(
            f"{path}: the file changed after it was exported (sha256 of its content {onnx.content_sha256[:12]}, "
            f"its embedded card says {recorded[:12]}); re-export it with segexport"
        )
    return card


def check_card_fits(card: ModelCard, onnx: OnnxFile, path: str | os.PathLike[str]) -> None:
    """Refuse a card that says what the graph contradicts, in one line naming the field: the layout (fused or
    not), the input and output names, the classes, the input size, the precision. What the graph does not say
    (a size computed at run time, classes behind an op not followed) is not checked."""
    fix = "re-export it with segexport"
    wanted_outputs = 1 if card.confidence_name is None else 2
    if len(onnx.inputs) != 1 or len(onnx.outputs) != wanted_outputs:
        said = "and a confidence output " if wanted_outputs == 2 else ""
        raise SegError(
            f"{path}: its card says one input, one output {said}but the graph has {len(onnx.inputs)} input(s) and "
            f"{len(onnx.outputs)} output(s); this is not a segexport graph, or its card was changed: {fix}"
        )
    graph_in, graph_out = onnx.inputs[0], onnx.outputs[0]
    dims = graph_in.dims or ()
    layout_ok = len(dims) == 4 and (dims[3] == 3 if card.fused else dims[1] == 3)
    if not layout_ok:
        kind = "fused (N x H x W x 3 uint8)" if card.fused else "unfused (N x 3 x H x W float)"
        raise SegError(f"{path}: its model card says {kind} but the graph's input is {graph_in.shown()}; {fix}")

    def refuse(field: str, says: object, graph: str) -> None:
        raise SegError(f"{path}: the model card does not fit the graph: {field} {says} in the card, {graph}; {fix}")

    if (card.input_name, card.output_name) != (graph_in.name, graph_out.name):
        refuse("input_name/output_name", f"{card.input_name}/{card.output_name}", f"{graph_in.name}/{graph_out.name}")
    if card.confidence_name is not None and onnx.outputs[1].name != card.confidence_name:
        refuse("confidence_name", card.confidence_name, f"its second output is {onnx.outputs[1].name}")
    one_class = onnx.one_class()
    if one_class is not None and one_class != (card.threshold is not None):
        graph = "its output is one logit channel" if one_class else "it labels by argmax over its classes"
        refuse("threshold", card.threshold, graph)
    classes = onnx.num_classes()
    if classes is not None and classes != card.num_classes:
        refuse("classes", f"names {card.num_classes}", f"its output tells {classes} apart")
    size = onnx.resize_size() if card.fused and card.resize == "fixed" else None
    if size is not None and size != tuple(card.input_size):
        shown = "x".join(map(str, card.input_size))
        refuse("input_size", shown, f"it resizes images to {size[0]}x{size[1]}")
    _check_precision(card.precision, onnx, refuse)


def _check_precision(precision: str, onnx: OnnxFile, refuse: Callable[[str, object, str], None]) -> None:
    """A precision the graph's types contradict: only what that precision's graph never holds is refused (a graph
    made against an accuracy budget may keep any node in higher precision, so absence proves nothing)."""
    qdq, fp16 = onnx.has_qdq(), onnx.has_float16()
    if precision == "fp32" and (qdq or fp16):
        refuse("precision", "fp32", "it holds " + ("INT8 Q/DQ nodes" if qdq else "float16 tensors"))
    elif precision == "fp16" and qdq:
        refuse("precision", "fp16", "it holds INT8 Q/DQ nodes")
    elif precision == "int8" and qdq and onnx.quantizes_to_uint8():
        refuse("precision", "int8 (TensorRT's)", "it quantizes to uint8, as the CPU graph (int8-cpu) does")
    elif precision == "int8-cpu" and (fp16 or (qdq and not onnx.quantizes_to_uint8())):
        refuse("precision", "int8-cpu", "it holds " + ("float16 tensors" if fp16 else "int8 Q/DQ only, as TensorRT's"))


def artifact_name(stem: str, precision: str, *, engine: bool = False, rtx: bool = False) -> str:
    """File names segexport writes: model.onnx, model.fp16.onnx, model.int8-cpu.onnx, model.fp16.engine,
    model.fp16.rtx.engine (TensorRT-RTX), ..."""
    return PRECISION_ROWS[precision].file_name(stem, engine=engine, rtx=rtx)
