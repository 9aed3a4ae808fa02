"""The model card: what a deployed file needs to be used, travelling with it.

The exporter writes the card through this module and the runtime reads it back
through the same code, so both sides agree on every field. An ONNX file carries
its card in `metadata_props` (key `segexport.card`) and, beside it, in a JSON
sidecar `<file>.json` that adds the file's sha256. An engine file has no room for
metadata, so its sidecar is required and its sha256 is checked before TensorRT
ever sees the bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segrt.errors import SegError
from segrt.files import atomic_write, prepare_output_folder, write_bytes_atomic  # noqa: F401 (also read from here)
from segrt.precisions import PRECISIONS as PRECISION_ROWS

CARD_KEY = "segexport.card"
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
    returns float logits, and the runtime does the same steps on the host.
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
    precision: str = "fp32"
    opset: int = 17
    input_name: str = "image"
    output_name: str = "labels"
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
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
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


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """`model.onnx` -> `model.onnx.json`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_sidecar(path: str | os.PathLike[str], card: ModelCard) -> Path:
    """Write `<path>.json`: the card plus the sha256 of the finished file at `path`."""
    record = json.loads(card.to_json())
    record["sha256"] = file_sha256(path)
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    return atomic_write(sidecar_path(path), lambda tmp: tmp.write_text(text))


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
        raise SegError(f"{side}: the model card does not match {Path(path).name}; rebuild, or delete the stale .json")
    return data


def embed_card(model: Any, card: ModelCard) -> None:
    """Put the card into an `onnx.ModelProto`'s metadata_props (replacing an older one)."""
    for prop in list(model.metadata_props):
        if prop.key == CARD_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = CARD_KEY, card.to_json()


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
    if not side.is_file():
        return None
    try:
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
                f"{str(recorded)[:12]}); re-export, or delete the stale .json"
            )
    return ModelCard.from_dict(data, source=str(side))


def read_card(path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None) -> ModelCard:
    """The card of an ONNX or engine file.

    The sidecar wins when present (and must match the file's sha256). An ONNX file
    without one falls back to its embedded card: pass `metadata` (for instance an
    ONNX Runtime session's custom metadata) to avoid reading the file twice. An
    engine needs its sidecar.
    """
    path = Path(path)
    card = read_sidecar(path)
    if card is not None:
        return card
    if path.suffix != ".onnx":
        raise SegError(
            f"{path}: the model card {sidecar_path(path).name} is missing; engines are only loaded with "
            f"their card (rebuild with `segexport MODEL.onnx --engine`)"
        )
    return card_from_metadata(path, onnx_metadata(path) if metadata is None else metadata)


def card_from_metadata(path: str | os.PathLike[str], metadata: Mapping[str, str]) -> ModelCard:
    """The card embedded in an ONNX file's metadata_props (the fallback when it has no sidecar)."""
    text = metadata.get(CARD_KEY)
    if text is None:
        raise SegError(f"{path}: no segexport model card in the file or beside it; export it with segexport")
    return ModelCard.from_dict(_load_json(text, f"{path} (metadata)"), source=f"{path} (metadata)")


def onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """An ONNX file's metadata_props, read with whichever of onnx / ONNX Runtime is installed."""
    try:
        import onnx
    except ImportError:
        from segrt.backends.onnxruntime import read_metadata

        return read_metadata(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises its own DecodeError types
        raise SegError(f"{path}: not a readable ONNX file ({type(exc).__name__}); re-export it") from None
    return {p.key: p.value for p in model.metadata_props}


def artifact_name(stem: str, precision: str, *, engine: bool = False, rtx: bool = False) -> str:
    """File names segexport writes: model.onnx, model.fp16.onnx, model.int8-cpu.onnx, model.fp16.engine,
    model.fp16.rtx.engine (TensorRT-RTX), ..."""
    return PRECISION_ROWS[precision].file_name(stem, engine=engine, rtx=rtx)
