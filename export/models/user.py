"""A user's own network, named `package.module:factory` on the command line: imported, called, probed once."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import torch
from torch import nn

from segexport.models.base import Logits, SegmentationModel
from segexport.models.checkpoints import load_checkpoint
from segrt.errors import SegError, first_line


def _located(exc: BaseException) -> str:
    """ "SyntaxError: invalid syntax (mynets.py, line 3)", or the type and first line of any other exception."""
    if isinstance(exc, SyntaxError):
        where = f" ({Path(exc.filename or '?').name}, line {exc.lineno})"
        return f"{type(exc).__name__}: {exc.msg}{where}"
    return f"{type(exc).__name__}: {first_line(exc)}"


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
    if num_classes is not None and count != num_classes:
        one_class = (
            ": a one-class model, exported as a binary segmenter (background and its class); drop --num-classes"
            if count == 1
            else "; give the count it returns, or drop --num-classes"
        )
        raise SegError(
            f"--num-classes {num_classes}: {spec} returns {count} logit channel{'s' * (count != 1)}{one_class}"
        )
    classes = tuple(getattr(network, "classes", ())) or tuple(f"class{i}" for i in range(count))
    if len(classes) != count:
        raise SegError(f"{spec}: the module names {len(classes)} classes but returns {count} logit channels")
    return SegmentationModel(name=factory_name, network=wrapped, classes=classes, input_size=input_size, notes=notes)
