"""The model zoo: one builder per model, each returning the network with what it needs to be used.

A `SegmentationModel` is a network that maps normalized float NCHW images to
NCHW logits, plus its classes, palette, normalization and input size -- the
torchvision idea of weights and transforms travelling together.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from segexport import WEIGHTS, is_user_model
from segexport.unet import UNet
from segrt.errors import SegError, first_line
from segrt.image import voc_palette
from segrt.meta import ModelCard

if TYPE_CHECKING:
    from segexport.request import ModelOptions

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VOC_CLASSES = (
    "__background__",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


@dataclass
class SegmentationModel:
    """A network in eval mode (normalized float NCHW -> logits NCHW) and its model card fields."""

    name: str
    network: nn.Module
    classes: tuple[str, ...]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: tuple[int, ...] = (520, 520)
    resize: str = "fixed"
    size_divisor: int = 1
    palette: tuple[tuple[int, int, int], ...] = ()
    notes: list[str] = field(default_factory=list)  # what the builder did that the user should know

    def __post_init__(self) -> None:
        if not self.palette:
            self.palette = voc_palette(len(self.classes))
        self.network.eval()

    def card(self, **fields: Any) -> ModelCard:
        """The model card of an artefact made from this model; `fields` adds the export's facts."""
        try:
            return ModelCard(
                model=self.name,
                classes=self.classes,
                palette=self.palette,
                mean=self.mean,
                std=self.std,
                input_size=self.input_size,
                resize=self.resize,
                size_divisor=self.size_divisor,
                **fields,
            )
        except ValueError as exc:
            raise SegError(f"{self.name}: {exc}") from None


class Logits(nn.Module):
    """Makes a network that returns torchvision's {"out": logits, ...} dict return the logits alone.

    torchvision's FCN and DeepLabV3 (a `_SimpleSegmentationModel`) end their forward by resizing the
    classifier's 1/8-scale logits to the input size; here they stop before that resize, so the fused
    graph resizes once, from the classifier straight to the image size, instead of writing every class
    channel at the network size and again at the image size. Labels differ from the two resizes only
    where two classes nearly tie (99.986 % of the photo's pixels agree for fcn_resnet50 at 520x520).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _is_simple_segmentation_model(self.network):
            return self.network.classifier(self.network.backbone(x)["out"])
        out = self.network(x)
        return out["out"] if isinstance(out, Mapping) else out


def _is_simple_segmentation_model(network: nn.Module) -> bool:
    """torchvision's backbone -> classifier -> resize-to-input model (FCN, DeepLabV3), aux head or not."""
    try:
        from torchvision.models.segmentation._utils import _SimpleSegmentationModel
    except ImportError:  # a torchvision that moved it: the network keeps its own resize
        return False
    return isinstance(network, _SimpleSegmentationModel)


def parameter_count(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


# --- checkpoints ------------------------------------------------------------------------------------


def load_checkpoint(network: nn.Module, path: str | os.PathLike[str]) -> list[str]:
    """Load a state dict saved with `torch.save(model.state_dict())` (weights_only, never pickle code).

    Accepts a bare state dict or one under "state_dict" / "model". Raises SegError
    naming the missing, unexpected and misshaped keys. Returns notes for the user.
    """
    path = Path(path)
    if not path.is_file():
        raise SegError(f"{path}: checkpoint not found; pass the path of a state dict saved with torch.save")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = first_line(exc)
        if "Unsupported global" in str(exc):  # a pickled class or function, not a plain state dict
            raise SegError(
                f"{path}: refused to unpickle code from this checkpoint (torch.load weights_only=True); "
                f"save the weights with torch.save(model.state_dict(), PATH)"
            ) from None
        raise SegError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SegError(f"{path}: not a state dict of tensors; save it with torch.save(model.state_dict(), PATH)")
    state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel checkpoints
    own = network.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append(f"missing {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected {_few(unexpected)}")
    if misshaped:
        first = misshaped[0]
        problems.append(
            f"misshaped {_few(misshaped)} (e.g. {first}: checkpoint {tuple(state[first].shape)}, "
            f"model {tuple(own[first].shape)})"
        )
    if problems:
        raise SegError(
            f"{path}: checkpoint does not fit the model: {'; '.join(problems)}; check the model name, "
            f"--num-classes and the model options"
        )
    network.load_state_dict(state)
    return [f"loaded {len(state)} tensors from {path.name}"]


def _few(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} key(s): {shown}" + (", ..." if len(keys) > limit else "")


# --- torchvision FCN ----------------------------------------------------------------------------------


def _torchvision_weights(enum: Any, weights: str | None) -> Any:
    if weights is None or weights.lower() == "none":
        return None
    try:
        return enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        names = ", ".join(["DEFAULT", "none", *enum.__members__])
        raise SegError(f"--weights {weights}: unknown for this model; use one of {names}") from None


def _fcn(
    name: str,
    builder: Callable[..., nn.Module],
    weights_enum: Any,
    weights: str | None,
    num_classes: int | None,
    checkpoint: str | os.PathLike[str] | None,
) -> SegmentationModel:
    chosen = None if checkpoint is not None else _torchvision_weights(weights_enum, weights)  # a checkpoint wins
    notes: list[str] = []
    if chosen is not None:
        if num_classes not in (None, len(chosen.meta["categories"])):
            raise SegError(
                f"--num-classes {num_classes} does not match {chosen}'s {len(chosen.meta['categories'])} "
                f"classes; use --weights none with a --checkpoint of your own"
            )
        try:
            network = builder(weights=chosen, progress=False)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            raise SegError(
                f"{name}: cannot download the {chosen} weights ({first_line(exc)}); pass --checkpoint PATH, "
                f"or --weights none for random weights"
            ) from None
        classes = tuple(chosen.meta["categories"])
        notes.append(f"weights {chosen}")
    else:
        count = num_classes or len(VOC_CLASSES)
        has_aux = checkpoint is not None and _checkpoint_has_aux(checkpoint)
        network = builder(weights=None, weights_backbone=None, num_classes=count, aux_loss=has_aux)
        classes = VOC_CLASSES if count == len(VOC_CLASSES) else tuple(f"class{i}" for i in range(count))
        if checkpoint is not None:
            notes += load_checkpoint(network, checkpoint)
        else:
            notes.append("random weights (--weights none)")
    return _drop_aux(name, network, classes, notes)


def _drop_aux(name: str, network: nn.Module, classes: tuple[str, ...], notes: list[str]) -> SegmentationModel:
    """Drop the auxiliary head: torchvision computes it at inference and the caller discards it."""
    aux = getattr(network, "aux_classifier", None)
    if aux is not None:
        saved, total = parameter_count(aux), parameter_count(network)
        network.aux_classifier = None
        notes.append(
            f"dropped the aux head: {saved / 1e6:.2f} M of {total / 1e6:.2f} M parameters ({100 * saved / total:.1f} %)"
        )
    return SegmentationModel(name=name, network=Logits(network), classes=classes, input_size=(520, 520), notes=notes)


def _checkpoint_has_aux(path: str | os.PathLike[str]) -> bool:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False  # load_checkpoint reports the real problem
    state = state.get("state_dict", state.get("model", state)) if isinstance(state, Mapping) else state
    return isinstance(state, Mapping) and any(
        str(k).startswith(("aux_classifier.", "module.aux_classifier.")) for k in state
    )


def _located(exc: BaseException) -> str:
    """ "SyntaxError: invalid syntax (mynets.py, line 3)", or the type and first line of any other exception."""
    if isinstance(exc, SyntaxError):
        where = f" ({Path(exc.filename or '?').name}, line {exc.lineno})"
        return f"{type(exc).__name__}: {exc.msg}{where}"
    return f"{type(exc).__name__}: {first_line(exc)}"


def fcn_resnet50(
    *, weights: str | None = "DEFAULT", num_classes: int | None = None, checkpoint: str | os.PathLike[str] | None = None
) -> SegmentationModel:
    """torchvision's FCN-ResNet50 (COCO with VOC labels), aux head dropped."""
    from torchvision.models.segmentation import FCN_ResNet50_Weights
    from torchvision.models.segmentation import fcn_resnet50 as build

    return _fcn("fcn_resnet50", build, FCN_ResNet50_Weights, weights, num_classes, checkpoint)


def fcn_resnet101(
    *, weights: str | None = "DEFAULT", num_classes: int | None = None, checkpoint: str | os.PathLike[str] | None = None
) -> SegmentationModel:
    """torchvision's FCN-ResNet101 (COCO with VOC labels), aux head dropped."""
    from torchvision.models.segmentation import FCN_ResNet101_Weights
    from torchvision.models.segmentation import fcn_resnet101 as build

    return _fcn("fcn_resnet101", build, FCN_ResNet101_Weights, weights, num_classes, checkpoint)


def _resnet18_fcn(
    *,
    weights: Any = None,
    weights_backbone: Any = None,
    num_classes: int = 21,
    aux_loss: bool = False,
    progress: bool = False,
) -> nn.Module:
    """FCN head on a dilated ResNet-18 (output stride 8), as torchvision builds the ResNet-50 one.

    torchvision's BasicBlock refuses dilation, so layers 3 and 4 are converted after
    construction: their strides become 1 and their 3x3 convolutions dilate 2 and 4.
    """
    from torchvision.models import resnet18
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.fcn import FCN, FCNHead

    backbone = resnet18(weights=None)
    for layer, dilation in ((backbone.layer3, 2), (backbone.layer4, 4)):
        for index, block in enumerate(layer):
            for conv in (block.conv1, block.conv2):
                d = dilation // 2 if (index == 0 and conv is block.conv1) else dilation
                conv.stride, conv.dilation, conv.padding = (1, 1), (d, d), (d, d)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
    return_layers = {"layer4": "out", **({"layer3": "aux"} if aux_loss else {})}
    body = IntermediateLayerGetter(backbone, return_layers=return_layers)
    return FCN(body, FCNHead(512, num_classes), FCNHead(256, num_classes) if aux_loss else None)


def fcn_resnet18(
    *, weights: str | None = None, num_classes: int | None = None, checkpoint: str | os.PathLike[str] | None = None
) -> SegmentationModel:
    """FCN-ResNet18, the edge model jetson-inference ships; no published torchvision weights."""
    if weights not in (None, "none"):
        raise SegError("fcn_resnet18: torchvision publishes no weights for it; use --checkpoint PATH or --weights none")
    count = num_classes or len(VOC_CLASSES)
    network = _resnet18_fcn(num_classes=count, aux_loss=checkpoint is not None and _checkpoint_has_aux(checkpoint))
    notes = load_checkpoint(network, checkpoint) if checkpoint is not None else ["random weights"]
    classes = VOC_CLASSES if count == len(VOC_CLASSES) else tuple(f"class{i}" for i in range(count))
    return _drop_aux("fcn_resnet18", network, classes, notes)


# Above this the weights alone pass 2 GB, which one ONNX file cannot hold (protobuf's limit).
_ONNX_MAX_BYTES = 2**31


def check_unet_options(depth: int, base: int, input_size: tuple[int, ...]) -> None:
    """Refuse U-Net options that cannot make a network, before any memory goes into one.

    Each of the `depth` steps halves the image, so a fixed input must be a multiple of
    2**depth (and a shorter-side one at least that); the widest layer, base * 2**depth
    channels, must leave the weights under ONNX's 2 GB.
    """
    for flag, value in (("--unet-depth", depth), ("--unet-base", base)):
        if value < 1:
            raise SegError(f"{flag} {value}: must be at least 1")
    divisor = 2**depth
    size = "x".join(map(str, input_size))
    fixed = len(input_size) == 2
    if (fixed and any(v % divisor for v in input_size)) or (not fixed and input_size[0] < divisor):
        need = f"multiples of {divisor}" if fixed else f"a shorter side of at least {divisor}"
        raise SegError(
            f"--input-size {size}: unet needs {need}, as --unet-depth {depth} halves its input {depth} times; "
            f"give another --input-size or a lower --unet-depth"
        )
    widest = base * divisor
    weight_bytes = 4 * 9 * (widest // 2 + widest) * widest  # the bottleneck's two 3x3 convolutions
    if weight_bytes >= _ONNX_MAX_BYTES:
        raise SegError(
            f"--unet-depth {depth} --unet-base {base}: the widest layer would have {widest} channels and over "
            f"2 GB of weights, which one ONNX file cannot hold; lower --unet-depth or --unet-base"
        )


def unet(
    *,
    weights: str | None = None,
    num_classes: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    depth: int = 4,
    base: int = 32,
    bilinear: bool = True,
    input_size: tuple[int, ...] = (256, 256),
) -> SegmentationModel:
    """Our U-Net (export/unet.py), random or from a checkpoint; `input_size` HxW (fixed) or S (shorter side)."""
    if weights not in (None, "none"):
        raise SegError("unet: there are no published weights; use --checkpoint PATH or --weights none")
    check_unet_options(depth, base, input_size)
    count = num_classes or len(VOC_CLASSES)
    network = UNet(count, depth=depth, base=base, bilinear=bilinear)
    notes = load_checkpoint(network, checkpoint) if checkpoint is not None else ["random weights"]
    classes = VOC_CLASSES if count == len(VOC_CLASSES) else tuple(f"class{i}" for i in range(count))
    return SegmentationModel(
        name="unet",
        network=network,
        classes=classes,
        input_size=input_size,
        resize="fixed" if len(input_size) == 2 else "shorter",
        size_divisor=network.size_divisor,
        notes=notes,
    )


SHAPES_WEIGHTS = WEIGHTS


def unet_shapes(
    *, weights: str | None = None, num_classes: int | None = None, checkpoint: str | os.PathLike[str] | None = None
) -> SegmentationModel:
    """The bundled reference U-Net, trained on the generated shapes set; no download.

    Options, classes, palette and input size come from weights/unet_shapes.json; the
    weights from weights/unet_shapes.pt (made by `python -m segbench.train_reference`),
    or from `checkpoint` (same architecture), or random with weights="none".
    """
    if weights not in (None, "DEFAULT", "none"):
        raise SegError(f"--weights {weights}: unet_shapes has DEFAULT (the bundled checkpoint) or none (random)")
    card_path = SHAPES_WEIGHTS / "unet_shapes.json"
    try:
        card = json.loads(card_path.read_text())
        classes = tuple(card["classes"])
        options = card["unet"]
        network = UNet(len(classes), depth=options["depth"], base=options["base"], bilinear=options["bilinear"])
        fields = {
            "palette": tuple(tuple(c) for c in card["palette"]),
            "mean": tuple(card["mean"]),
            "std": tuple(card["std"]),
            "input_size": tuple(card["input_size"]),
        }
        miou = float(card["val"]["miou"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SegError(f"{card_path}: bundled model card missing or broken ({exc}); reinstall segexport") from None
    if num_classes not in (None, len(classes)):
        raise SegError(
            f"--num-classes {num_classes}: unet_shapes has {len(classes)} classes; for another class count "
            f"use `segexport unet --num-classes {num_classes} --checkpoint PATH`"
        )
    if checkpoint is not None:
        notes = load_checkpoint(network, checkpoint)
    elif weights == "none":
        notes = ["random weights (--weights none)"]
    else:
        notes = load_checkpoint(network, SHAPES_WEIGHTS / "unet_shapes.pt")
        notes[0] = f"bundled weights (val mIoU {miou:.3f} on the generated shapes set)"
    return SegmentationModel(
        name="unet_shapes", network=network, classes=classes, size_divisor=network.size_divisor, notes=notes, **fields
    )


BUILDERS: dict[str, Callable[..., SegmentationModel]] = {
    "fcn_resnet18": fcn_resnet18,
    "fcn_resnet50": fcn_resnet50,
    "fcn_resnet101": fcn_resnet101,
    "unet": unet,
    "unet_shapes": unet_shapes,
}


def user_model(
    spec: str,
    *,
    num_classes: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    input_size: tuple[int, ...] = (520, 520),
) -> SegmentationModel:
    """A model from `package.module:factory`: the factory returns an nn.Module giving logits (or {"out": ...}).

    The factory is called with `num_classes=` when that is given. The number of
    classes is read off one forward pass; class names come from a `classes`
    attribute of the module if it has one.
    """
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise SegError(f"{spec}: a user model is named package.module:factory")
    sys.path.insert(0, os.getcwd())  # a module beside the user's shell, as `python -m` finds it
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SegError(f"{spec}: cannot import {module_name} ({exc}); check the name and PYTHONPATH") from None
    except Exception as exc:  # the user's own code failing as it loads: SyntaxError, NameError, ...
        raise SegError(f"{spec}: importing {module_name} raised {_located(exc)}; fix the module") from None
    finally:
        sys.path.remove(os.getcwd())
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise SegError(f"{spec}: {module_name} has no callable {factory_name}")
    try:
        network = factory(num_classes=num_classes) if num_classes is not None else factory()
    except Exception as exc:
        raise SegError(f"{spec}: the factory raised {type(exc).__name__}: {first_line(exc)}") from None
    if not isinstance(network, nn.Module):
        raise SegError(f"{spec}: the factory returned {type(network).__name__}, not a torch.nn.Module")
    notes = load_checkpoint(network, checkpoint) if checkpoint is not None else ["weights as the factory made them"]
    wrapped = Logits(network).eval()
    probe_size = input_size if len(input_size) == 2 else (input_size[0], input_size[0])
    try:
        with torch.no_grad():
            logits = wrapped(torch.zeros(1, 3, *probe_size))
    except Exception as exc:
        raise SegError(
            f"{spec}: a forward pass on 1x3x{probe_size[0]}x{probe_size[1]} failed "
            f"({type(exc).__name__}: {first_line(exc)})"
        ) from None
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4:
        raise SegError(
            f"{spec}: the module must return N x C x H x W logits (or a dict with 'out'), "
            f"got {type(logits).__name__} {getattr(logits, 'shape', '')}"
        )
    count = logits.shape[1]
    classes = tuple(getattr(network, "classes", ())) or tuple(f"class{i}" for i in range(count))
    if len(classes) != count:
        raise SegError(f"{spec}: the module names {len(classes)} classes but returns {count} logit channels")
    return SegmentationModel(name=factory_name, network=wrapped, classes=classes, input_size=input_size, notes=notes)


def build_model(
    name: str,
    *,
    weights: str | None = None,
    num_classes: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    **options: Any,
) -> SegmentationModel:
    """Build a zoo model by name, or a user model given as `package.module:factory`."""
    if num_classes is not None and num_classes < 1:
        raise SegError(f"--num-classes {num_classes}: a model needs at least 1 class")
    if is_user_model(name):
        if weights is not None:
            raise SegError(
                f"--weights {weights}: applies to the zoo models only ({', '.join(BUILDERS)}); "
                f"{name} gets its weights from its factory, or from --checkpoint PATH"
            )
        return user_model(name, num_classes=num_classes, checkpoint=checkpoint, **options)
    builder = BUILDERS.get(name)
    if builder is None:
        raise SegError(
            f"unknown model {name!r}; known: {', '.join(BUILDERS)}, an .onnx file, or package.module:factory"
        )
    kwargs: dict[str, Any] = {"num_classes": num_classes, "checkpoint": checkpoint, **options}
    if weights is not None:
        kwargs["weights"] = weights
    return builder(**kwargs)


def build(options: ModelOptions) -> SegmentationModel:
    """The model an export request names, with its input size and class names applied (what `segexport MODEL`
    and segbench's PyTorch baseline both build)."""
    torch.manual_seed(options.seed)
    extra: dict[str, Any] = {}
    if options.name == "unet":
        extra = {"depth": options.unet_depth, "base": options.unet_base, "bilinear": not options.unet_transposed}
    if (is_user_model(options.name) or options.name == "unet") and options.input_size:
        extra["input_size"] = options.input_size  # checked against the model before it is built
    model = build_model(
        options.name,
        weights=options.weights,
        num_classes=options.num_classes,
        checkpoint=options.checkpoint,
        **extra,
    )
    if options.input_size:
        model.input_size = options.input_size
        model.resize = "fixed" if len(options.input_size) == 2 else "shorter"
    if model.resize == "fixed" and any(v % model.size_divisor for v in model.input_size):
        raise SegError(
            f"--input-size {'x'.join(map(str, model.input_size))}: {model.name} needs multiples of {model.size_divisor}"
        )
    if options.classes:
        if len(options.classes) != len(model.classes):
            raise SegError(f"--classes names {len(options.classes)} classes but {model.name} has {len(model.classes)}")
        model.classes = options.classes
    return model
