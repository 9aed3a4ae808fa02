"""The keys a suite file may have, with what each means (the words a refusal lists), and the checks of a TOML
value's type and shapes that name the file and key."""

from __future__ import annotations

from typing import Any

from segexport.engine.profile import parse_shape
from segrt.backends import BACKENDS as BACKEND_ROWS
from segrt.errors import MissingDependency, SegError
from segrt.precisions import USER_PRECISIONS

BASELINE = "pytorch-eager"
# the baseline, then every segrt backend but "ort", whose device is "auto" (a case names its provider, so runs compare)
BACKENDS = (BASELINE, *(row.name for row in BACKEND_ROWS.values() if row.device != "auto"))
PRECISIONS = USER_PRECISIONS
DEVICES = ("cpu", "cuda")

SUITE_KEYS = {
    "name": "a short name for the run",
    "description": "one line saying what the suite is for",
    "image": "the photo the cases run on (default: the bundled 612x640 photo)",
    "shapes": 'list of "NxHxW": batch size and image size',
    "warmup": "untimed calls before the samples",
    "iterations": "timed calls per case, at least",
    "min_seconds": "keep sampling until this many seconds are spent too, so fast cases get enough samples",
    "seconds": "time budget per case: stop sampling once it is spent (at least 3 samples)",
    "threads": "CPU threads for ONNX Runtime and torch (default: their own choice)",
    "baseline": "add the pytorch-eager baseline to each model that lacks one (default true)",
    "camera_fps": "also run each batch-1 case at this camera frame rate, counting dropped and late frames",
    "camera_seconds": "how many seconds of camera frames (default 10)",
    "generate": "the generated labelled sets the suite reads, made on first use: shapes, clip",
    "model": "the [[model]] tables",
}
GENERATE_KEYS = {
    "shapes": 'the shapes set (python -m segbench.data.shapes): "FOLDER", or { out, train, val, seed }',
    "clip": "the labelled clip (python -m segbench.data.clip): { out, frames, seed, size, fps }",
    "budget_shapes": "a second shapes set, the budget_val of runs with max_miou_drop: { out, train, val, seed }",
}
MODEL_KEYS = {
    "name": "segexport model: zoo name or package.module:factory",
    "label": "name shown in reports (default: name, plus input size)",
    "weights": "segexport --weights",
    "input_size": "segexport --input-size (HxW, or S for the shorter side)",
    "checkpoint": "segexport --checkpoint: a state dict",
    "num_classes": "segexport --num-classes",
    "classes": "segexport --classes: the class names, a list",
    "threshold": "segexport --threshold: a one-class model's sigmoid threshold (default 0.5)",
    "seed": "segexport --seed (random weights)",
    "unet_depth": "segexport --unet-depth",
    "unet_base": "segexport --unet-base",
    "unet_transposed": "segexport --unet-transposed",
    "calib": "INT8 calibration images: a folder, or a .txt list such as a VOC train.txt (default: the sample's folder)",
    "calib_count": "segexport --calib-count: how many calibration images (default segexport's)",
    "dataset": "Pascal-VOC folder for mIoU (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/val.txt)",
    "budget_val": "Pascal-VOC folder runs with max_miou_drop choose their graph on (segexport --val); not dataset",
    "shapes": "overrides the suite's shapes for this model",
    "video": "a labelled clip folder (a video and labels/NNNNNN.png): each run also goes over it, frame by frame",
    "stream": "true: each exported run also takes the clip through segrun's pipeline (overlay to an H.264 video), "
    "beside the serial loop: frames/s, capture-to-written latency",
    "runs": "list of { backend, precision, fused, confidence, device, max_miou_drop }",
}
RUN_KEYS = {
    "backend": ", ".join(BACKENDS),
    "precision": ", ".join(PRECISIONS),
    "fused": "true: the fused graph (default); false: --no-fuse with host pre/post-processing",
    "confidence": "true: the fused graph exported with --confidence, called with confidence=True (labels and the "
    "confidence map each call): a row beside the labels-only one, to read the map's cost off",
    "device": "pytorch-eager only: cpu or cuda",
    "autograd": "pytorch-eager only: true keeps autograd on, as torchvision's docs snippet does (no torch.no_grad()); "
    "a second row beside the baseline, which stays the speed-ups' reference",
    "max_miou_drop": "fp16 / int8 only: the graph segexport --max-miou-drop POINTS chooses on the model's budget_val",
    "file": "an ONNX graph or engine made earlier (an older export, another segexport version): run as it is, not "
    "exported; its card gives the precision and graph kind, and its labels are scored against this model's reference",
}


# The model keys that are segexport's ModelOptions fields, with the type each takes in the file.
EXPORT_OPTION_KEYS: dict[str, type | tuple[type, ...]] = {
    "weights": str,
    "input_size": str,
    "checkpoint": str,
    "num_classes": int,
    "classes": list,
    "threshold": (float, int),
    "seed": int,
    "unet_depth": int,
    "unet_base": int,
    "unet_transposed": bool,
}


def check_keys(table: dict[str, Any], known: dict[str, str], where: str, key: str) -> None:
    for name in table:
        if name not in known:
            raise SegError(f"{where}: unknown key {name!r} in {key}; known keys: {', '.join(known)}")


def typed_value(table: dict[str, Any], name: str, kind: Any, where: str, key: str, *, default: Any) -> Any:
    if name not in table:
        return default
    value = table[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        wanted = " or ".join(k.__name__ for k in kinds)
        raise SegError(f"{where}: {key} must be {wanted}, not {type(value).__name__} ({value!r})")
    return value


def parse_shapes(values: list[Any], where: str, key: str) -> list[tuple[int, int, int]]:
    if not values:
        raise SegError(f'{where}: {key} is empty; give at least one NxHxW like "1x612x640"')
    try:
        return [parse_shape(v) for v in values]
    except ValueError as exc:
        raise SegError(f"{where}: {key}: {exc}") from None


def check_model_name(name: str, where: str, key: str) -> None:
    """Zoo names are checked here so a typo fails before any export; user factories are checked on export."""
    from segexport.defaults import is_user_model

    if is_user_model(name):
        return
    try:
        from segexport.defaults import DEFAULT_MODEL
        from segexport.models.zoo import BUILDERS
    except ImportError as exc:  # the zoo is segexport's, which needs torch
        raise MissingDependency(
            f"{where}: {key}: checking the model name {name!r} needs segexport's model zoo, which needs torch "
            f"({exc}); install the benchmark extra: pip install 'segexport[bench]'"
        ) from None

    known = sorted({*BUILDERS, DEFAULT_MODEL})
    if name not in known:
        raise SegError(
            f"{where}: {key}: unknown model {name!r}; use one of {', '.join(known)}, or package.module:factory"
        )
