"""What an export is asked to do: one frozen request of typed option groups, the checks of the model and precision
options beside them (called before any work), and what an export produced.

`segexport.cli` makes an `ExportRequest` from the command line (every flag decision in one
function there); segbench and tests make one in code. `segexport.export(request)` runs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from segexport.defaults import DEFAULT_CALIB_COUNT, DEFAULT_MODEL, is_user_model
from segexport.engine.profile import ShapeRange
from segexport.precision.calib_methods import check_calib_method
from segrt.backends.tensorrt_library import TENSORRT, TENSORRT_RTX
from segrt.errors import SegError
from segrt.precisions import PRECISIONS

MAX_CLASSES = 256  # a uint8 label map
SEEDS = (-(2**63), 2**64 - 1)  # what torch.manual_seed takes


def parse_input_size(text: str) -> tuple[int, ...]:
    """ "520x520" -> (520, 520), a fixed H x W; "520" -> (520,), the shorter side. ValueError names the format."""
    try:
        values = tuple(int(v) for v in str(text).lower().split("x"))
    except ValueError:
        values = ()
    if len(values) not in (1, 2) or min(values) < 1:
        raise ValueError(f"{text!r}: expected HxW (e.g. 520x520) or one number (shorter side)")
    return values


@dataclass(frozen=True)
class ModelOptions:
    """Which model, with which weights and classes (the `model` flags)."""

    name: str = DEFAULT_MODEL  # zoo name, package.module:factory, or an .onnx file made by segexport
    weights: str | None = None  # torchvision weights: DEFAULT, a weights name, or "none"
    checkpoint: Path | None = None
    num_classes: int | None = None
    classes: tuple[str, ...] | None = None  # names, one per class
    threshold: float | None = None  # a one-class model's sigmoid threshold (0..1); None: 0.5
    input_size: tuple[int, ...] | None = None  # (H, W) fixed, or (S,) the shorter side
    seed: int = 0
    unet_depth: int = 4
    unet_base: int = 32
    unet_transposed: bool = False

    @property
    def from_onnx(self) -> bool:
        """Whether the model is an ONNX file segexport wrote (the PyTorch steps are skipped)."""
        return self.name.endswith(".onnx")

    def flags_given(self) -> list[str]:
        """The flags of the options that differ from their defaults (`--weights`, `--unet-depth`, ...)."""
        default = ModelOptions(self.name)
        return [
            "--" + option.name.replace("_", "-")
            for option in fields(self)
            if option.name != "name" and getattr(self, option.name) != getattr(default, option.name)
        ]


def check_model_options(model: ModelOptions, onnx: OnnxOptions) -> None:
    """Before any work: no model or ONNX flag the model named would ignore, each value in its range, and the
    checkpoint there. SegError names the flag."""
    check_confidence(onnx)
    if model.from_onnx:
        onnx_flags = (["--no-fuse"] if not onnx.fuse else []) + (["--opset"] if onnx.opset is not None else [])
        onnx_flags += ["--confidence"] if onnx.confidence else []
        ignored = model.flags_given() + onnx_flags
        if ignored:
            raise SegError(
                f"{ignored[0]} applies to the PyTorch export, and {model.name} is already an ONNX graph: drop "
                f"{ignored[0]}, or export the model again with it"
            )
        return
    unet_flags = [flag for flag in model.flags_given() if flag.startswith("--unet-")]
    if unet_flags and model.name != "unet":
        raise SegError(f"{unet_flags[0]} applies to the unet model only, not {model.name}; drop it")
    count = model.num_classes
    if count is not None and count < 1:
        raise SegError(f"--num-classes {count}: a model needs at least 1 class")
    if count is not None and count > MAX_CLASSES:
        raise SegError(f"--num-classes {count}: {count} classes do not fit a uint8 label map ({MAX_CLASSES} at most)")
    check_threshold(model)
    if not SEEDS[0] <= model.seed <= SEEDS[1]:
        raise SegError(f"--seed {model.seed}: give a seed from {SEEDS[0]} to {SEEDS[1]} (what torch.manual_seed takes)")
    if model.checkpoint is not None and not model.checkpoint.is_file():
        raise SegError(
            f"--checkpoint {model.checkpoint}: checkpoint not found; pass the path of a state dict saved with "
            f"torch.save"
        )


def check_confidence(onnx: OnnxOptions) -> None:
    """--confidence is an output of the fused graph: refused with --no-fuse, whose graph ends at the logits."""
    if onnx.confidence and not onnx.fuse:
        raise SegError(
            "--confidence adds an output to the fused graph, and --no-fuse exports the plain network: drop "
            "--no-fuse, or drop --confidence and take the softmax of the unfused graph's logits yourself"
        )


def check_threshold(model: ModelOptions) -> None:
    """--threshold is a probability, and given only where the model can be a one-class one: a zoo model with
    --num-classes 1, or a user's model whose channels its probe counts (refused there when it has more)."""
    threshold = model.threshold
    if threshold is None:
        return
    if not 0 < threshold < 1:
        raise SegError(
            f"--threshold {threshold:g}: a one-class model's threshold is a sigmoid probability between 0 and 1, "
            f"exclusive (default 0.5: label 1 where the logit is above 0)"
        )
    if model.num_classes not in (None, 1) or (model.num_classes is None and not is_user_model(model.name)):
        count = f"--num-classes {model.num_classes}" if model.num_classes else "its own classes"
        raise SegError(
            f"--threshold {threshold:g}: applies to one-class models (one logit channel), and {model.name} with "
            f"{count} is labelled by argmax; drop --threshold, or give --num-classes 1"
        )


@dataclass(frozen=True)
class OnnxOptions:
    """The FP32 graph: fused or not, with a confidence output or not, opset, the parity image, the output folder."""

    fuse: bool = True
    confidence: bool = False  # the fused graph's second output, a uint8 confidence map (segexport.onnx.fused)
    opset: int | None = None  # None: segexport.onnx.export.DEFAULT_OPSET
    image: Path | None = None  # the parity image; None: the model's own sample, else the bundled photo
    out: Path | None = None  # None: ./build/<model>, or the ONNX file's folder


@dataclass(frozen=True)
class PrecisionOptions:
    """The reduced-precision graphs to write from the FP32 one ("fp16", "int8", "int8-cpu")."""

    graphs: tuple[str, ...] = ()
    calib: Path | None = None  # a folder of images, or a .txt list of them
    calib_count: int = DEFAULT_CALIB_COUNT
    keep_fp32: tuple[str, ...] = ()  # regexes of node names kept in FP32
    calib_method: str | None = None  # how INT8 sets its ranges (precision/calib_methods.py); None: each pass's own

    def __post_init__(self) -> None:
        unknown = [name for name in self.graphs if name not in PRECISIONS or name == "fp32"]
        if unknown:
            raise ValueError(f"precision graphs {unknown} are not among fp16, int8, int8-cpu")


def keep_fp32_regexes(patterns: tuple[str, ...] | list[str]) -> list[re.Pattern[str]]:
    """--keep-fp32's patterns compiled; one that is not a regular expression is a SegError naming it."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise SegError(f"--keep-fp32 {pattern!r}: not a regular expression ({exc})") from None
    return compiled


def check_precision_options(precision: PrecisionOptions) -> None:
    """Before any work: the precision flags agree (INT8 with --calib, --calib and --keep-fp32 only with a graph to
    write), --calib names a folder or a list, --calib-count counts, and every --keep-fp32 is a regular expression."""
    calibrated = [name for name in precision.graphs if PRECISIONS[name].calibrated]
    if calibrated and precision.calib is None:
        raise SegError(
            "--int8 needs --calib DIR: a folder of images like the ones the model will see (a few dozen "
            "frames of your camera will do), to measure the value ranges INT8 must cover"
        )
    if not precision.graphs and (precision.calib is not None or precision.keep_fp32):
        raise SegError("--calib and --keep-fp32 only apply with --fp16 or --int8")
    if precision.calib_count != DEFAULT_CALIB_COUNT and precision.calib is None:
        raise SegError(f"--calib-count {precision.calib_count} only applies with --calib DIR")
    if precision.calib_count < 1:
        raise SegError(f"--calib-count {precision.calib_count}: use at least 1 calibration image")
    calib = precision.calib
    if calib is not None and not (calib.is_dir() or (calib.suffix == ".txt" and calib.is_file())):
        raise SegError(f"{calib}: no such folder of calibration images, or .txt list of them (--calib)")
    keep_fp32_regexes(precision.keep_fp32)
    check_calib_method(precision.calib_method, precision.graphs)


@dataclass(frozen=True)
class BuildOptions:
    """Everything `build_engine` takes besides the graph (CLI flags, one to one)."""

    shapes: ShapeRange = field(default_factory=ShapeRange)
    workspace_mib: int | None = None  # memory pool limit for TensorRT's scratch space; None: TensorRT's default
    timing_cache: Path | None = None  # read if present, written back updated (TensorRT only)
    builder_opt_level: int | None = None  # 0..5; None: TensorRT's default (3)
    dla_core: int | None = None  # run on this DLA core, GPU fallback for the rest (TensorRT only)
    device: int = 0
    verbosity: int = 0  # 0 errors, 1 warnings, 2 info, 3 TensorRT's verbose log
    library: str = TENSORRT  # or TENSORRT_RTX
    targets: tuple[str, ...] = ()  # TensorRT-RTX compute capabilities ("8.6", ...); (): the library's default set


@dataclass(frozen=True)
class EngineOptions:
    """The TensorRT engines to build: from which graphs, with which library and builder options."""

    sources: tuple[str, ...] = ()  # precisions of the graphs to build from ("fp32", "fp16", "int8"); (): none
    build: BuildOptions = field(default_factory=BuildOptions)
    # the engine flags as typed, for the command that builds the engines later on another machine
    later_flags: tuple[str, ...] = ()

    @property
    def rtx(self) -> bool:
        """TensorRT for RTX (ahead of time, any machine) instead of TensorRT: the build's library says which."""
        return self.build.library == TENSORRT_RTX


@dataclass(frozen=True)
class TritonOptions:
    """--triton REPO and --triton-backend: where the repository goes, and which Triton backend serves it."""

    repository: Path | None = None
    backend: str | None = None  # "onnxruntime", "tensorrt", "python"; None: by file


@dataclass(frozen=True)
class BudgetOptions:
    """How much accuracy the reduced graphs may lose against FP32, and on which images (none: no budget)."""

    max_miou_drop: float | None = None  # mIoU points on `val`
    max_disagreement: float | None = None  # share of pixels (0..1) labelled differently from FP32
    val: Path | None = None  # Pascal-VOC folder whose val split the budget is measured on
    val_count: int | None = None  # that many val images, spread over the split; None: all
    max_class_iou_drop: float | None = None  # IoU points any one class may lose on `val`

    @property
    def wanted(self) -> bool:
        return self.labelled or self.max_disagreement is not None

    @property
    def labelled(self) -> bool:
        """Whether the budget is measured against labels (mIoU or a class's IoU), so it needs --val."""
        return self.max_miou_drop is not None or self.max_class_iou_drop is not None


@dataclass(frozen=True)
class ExportRequest:
    """One whole export: model -> FP32 ONNX -> precision graphs -> engines (-> a Triton repository), each file
    checked before it is written."""

    model: ModelOptions = field(default_factory=ModelOptions)
    onnx: OnnxOptions = field(default_factory=OnnxOptions)
    precision: PrecisionOptions = field(default_factory=PrecisionOptions)
    engine: EngineOptions = field(default_factory=EngineOptions)
    triton: TritonOptions = field(default_factory=TritonOptions)
    budget: BudgetOptions = field(default_factory=BudgetOptions)  # the accuracy budget of the precision graphs
    min_agreement: float | None = None  # least pixel agreement of every gate; None: each precision's own
    verbose: int = 0


@dataclass
class ExportResult:
    """What an export wrote: the graphs by precision and the engines, each with its card beside it."""

    folder: Path
    graphs: dict[str, Path] = field(default_factory=dict)  # precision -> ONNX file, "fp32" included
    engines: dict[str, Path] = field(default_factory=dict)  # precision -> engine file
    triton: list[Path] = field(default_factory=list)  # Triton model folders written
    files: list[Path] = field(default_factory=list)  # every file written, cards included, in order
