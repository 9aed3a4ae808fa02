"""A Triton model repository from a segexport artefact: `REPO/<model>/config.pbtxt`, `1/<file>` and its card.

Torch-free: it reads the artefact's card with segrt and checks each config.pbtxt against
Triton's own model-config protobuf (shipped in tritonclient) before anything is written.
The model folder is built beside the repository and renamed into place, so a failed or
interrupted write leaves the repository as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from segrt import ENGINE_SUFFIXES
from segrt.errors import SegError, require
from segrt.meta import ModelCard, read_card, write_sidecar

TRITON_BACKENDS = ("onnxruntime", "tensorrt", "python")
DEFAULT_MAX_BATCH = 8  # ONNX graphs take any N; an engine's comes from its profile
CARD_PARAMETER = "segexport.card"  # the card (with the file's sha256), read back by segrt's Triton client
FILE_PARAMETER = "segexport.file"  # the artefact model.py serves, beside it in the version folder
INSTALL = "install the serving extra: pip install 'segexport[serve]'"


def is_rtx_engine(artefact: Path, card: ModelCard) -> bool:
    """A TensorRT-RTX engine: Triton's tensorrt backend (full TensorRT) cannot deserialize it."""
    from segrt.backends.engine_fit import card_library
    from segrt.backends.tensorrt_library import TENSORRT_RTX

    return artefact.suffix in ENGINE_SUFFIXES and card_library(card) == TENSORRT_RTX


def default_backend(artefact: Path, card: ModelCard) -> str:
    """The Triton backend that runs this file: tensorrt for an engine, onnxruntime for ONNX, python (segrt)
    for a TensorRT-RTX engine, which no Triton backend of its own loads."""
    if is_rtx_engine(artefact, card):
        return "python"
    return "tensorrt" if artefact.suffix in ENGINE_SUFFIXES else "onnxruntime"


def model_name(card: ModelCard) -> str:
    """`unet_shapes` for an FP32 fused file; `unet_shapes_fp16`, `unet_shapes_int8-cpu`, `unet_unfused`, ..."""
    name = card.model if card.precision == "fp32" else f"{card.model}_{card.precision}"
    name += "" if card.fused else "_unfused"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def max_batch(card: ModelCard, artefact: Path) -> int:
    """An engine's largest batch N (its profile); ONNX graphs take any N, so a default."""
    if artefact.suffix in ENGINE_SUFFIXES:
        shapes = card.tensorrt.get("image_shapes") or {}
        if shapes.get("max"):
            return int(shapes["max"][0])
        raise SegError(f"{artefact}: its card records no engine profile; rebuild it with `segexport MODEL --engine`")
    return DEFAULT_MAX_BATCH


def config_fields(artefact: Path, card: ModelCard, backend: str, *, max_batch_size: int) -> dict[str, Any]:
    """config.pbtxt as a dict in the protobuf's JSON field names (ModelConfig, model_config.proto)."""
    engine = artefact.suffix in ENGINE_SUFFIXES
    if backend != "python" and not card.fused:
        raise SegError(
            f"{artefact}: an unfused (--no-fuse) graph takes float tensors, not images; the {backend} backend would "
            f"serve it raw. Use --triton-backend python (segrt does the host steps) or export the fused graph"
        )
    if backend == "tensorrt" and not engine:
        raise SegError(
            f"{artefact}: the tensorrt backend serves engines; build one with `segexport {artefact} --engine`"
        )
    if backend == "tensorrt" and is_rtx_engine(artefact, card):
        raise SegError(
            f"{artefact}: a TensorRT-RTX engine, which Triton's tensorrt backend cannot load; use "
            f"--triton-backend python (the default for it)"
        )
    if backend == "onnxruntime" and engine:
        raise SegError(
            f"{artefact}: the onnxruntime backend serves ONNX files; use --triton-backend tensorrt or python"
        )
    on_gpu = engine or (backend == "onnxruntime" and card.precision != "int8-cpu")
    # segrt on a CPU instance still picks the best ONNX Runtime provider installed (CUDA's where there is one)
    instance = {"kind": "KIND_GPU" if on_gpu else "KIND_CPU", "count": 1}
    names = (card.input_name, card.output_name) if backend != "python" else ("image", "labels")
    confidence = [] if card.confidence_name is None else [card.confidence_name if backend != "python" else "confidence"]
    fields: dict[str, Any] = {
        "backend": backend,
        "max_batch_size": max_batch_size,
        "input": [{"name": names[0], "data_type": "TYPE_UINT8", "dims": [-1, -1, 3]}],
        "output": [{"name": name, "data_type": "TYPE_UINT8", "dims": [-1, -1]} for name in (names[1], *confidence)],
        "dynamic_batching": {},
        "instance_group": [instance],
        "default_model_filename": _file_name(artefact, backend),
        "parameters": {
            CARD_PARAMETER: {"string_value": _card_text(artefact, card)},
            FILE_PARAMETER: {"string_value": _artefact_name(artefact)},
        },
    }
    return fields


def _artefact_name(artefact: Path) -> str:
    """The artefact's name in the version folder: Triton's usual names, so the folder reads as any other."""
    return "model.plan" if artefact.suffix in ENGINE_SUFFIXES else "model.onnx"


def _file_name(artefact: Path, backend: str) -> str:
    return "model.py" if backend == "python" else _artefact_name(artefact)


def _card_text(artefact: Path, card: ModelCard) -> str:
    from segrt.meta import file_sha256

    record = json.loads(card.to_json())
    record["sha256"] = file_sha256(artefact)
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def config_text(fields: dict[str, Any]) -> str:
    """Check `fields` against Triton's ModelConfig protobuf and return config.pbtxt's text (parsed back once more)."""
    require("google.protobuf", INSTALL)
    model_config_pb2: Any = require("tritonclient.grpc.model_config_pb2", INSTALL)
    from google.protobuf import json_format, text_format

    try:
        message = json_format.ParseDict(fields, model_config_pb2.ModelConfig())
        text = text_format.MessageToString(message, use_short_repeated_primitives=True)
        text_format.Parse(text, model_config_pb2.ModelConfig())
    except (json_format.ParseError, text_format.ParseError) as exc:
        raise SegError(f"config.pbtxt does not fit Triton's model-config schema ({exc}); report it") from None
    return "# Written by segexport; Triton's model configuration: model_config.proto\n" + text


def write_repository(
    artefact: str | os.PathLike[str],
    repository: str | os.PathLike[str],
    *,
    backend: str | None = None,
    max_batch_size: int | None = None,
) -> Path:
    """Write `repository/<model>/` for `artefact` (an ONNX file or engine with its card); returns that folder.

    `backend` is "onnxruntime", "tensorrt" or "python" (a model.py serving the file through segrt);
    None picks the one that runs the file (`default_backend`). An existing model folder of that name is replaced
    whole; anything else in the repository is left alone.
    """
    artefact, repository = Path(artefact), Path(repository)
    if not artefact.is_file():
        raise SegError(f"{artefact}: no such ONNX or engine file")
    card = read_card(artefact)  # sha256 checked: a stale card never travels
    backend = backend or default_backend(artefact, card)
    if backend not in TRITON_BACKENDS:
        raise SegError(f"--triton-backend {backend}: use one of {', '.join(TRITON_BACKENDS)}")
    size = max_batch_size or max_batch(card, artefact)
    text = config_text(config_fields(artefact, card, backend, max_batch_size=size))
    target = repository / model_name(card)
    _check_target(target, repository)
    with tempfile.TemporaryDirectory(prefix=f".{repository.name}.{target.name}.", dir=repository.parent) as scratch:
        built = Path(scratch) / target.name
        _fill_model_folder(built, artefact, card, backend, text)
        _publish(built, target)
    return target


def _check_target(target: Path, repository: Path) -> None:
    """The repository can be written, and `target` is absent or a model folder we may replace."""
    from segrt.files import prepare_output_folder

    prepare_output_folder(repository, "--triton")
    if target.exists() and not (target / "config.pbtxt").is_file():
        raise SegError(f"{target}: exists and is not a Triton model folder; remove it or choose another --triton")


def _fill_model_folder(folder: Path, artefact: Path, card: ModelCard, backend: str, config: str) -> None:
    version = folder / "1"
    version.mkdir(parents=True)
    file = version / _artefact_name(artefact)
    try:
        shutil.copyfile(artefact, file)
        write_sidecar(file, card)
        if backend == "python":
            import segrt

            shutil.copyfile(Path(segrt.__file__).parent / "triton_model.py", version / "model.py")
        (folder / "config.pbtxt").write_text(config)
    except OSError as exc:
        raise SegError(f"{folder.parent}: cannot write the model folder ({exc.strerror}); free some space") from None


def _publish(built: Path, target: Path) -> None:
    """Replace `target` by `built` with signals held between the renames (the repository never holds half a model)."""
    from segrt.signals import interrupt, signals_caught

    with signals_caught(lambda signum: None) as received:
        old = built.with_name(built.name + ".old")
        try:
            if target.exists():
                os.replace(target, old)
            os.replace(built, target)
        except OSError as exc:
            if old.exists() and not target.exists():
                os.replace(old, target)
            raise SegError(
                f"{target}: cannot write the model folder ({exc.strerror}); choose another --triton"
            ) from None
    if received:
        interrupt(received[0])
