"""State dicts the user gives (`--checkpoint`): loaded weights-only, never pickled code, and every
misfit key named."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from segrt.errors import SegError, first_line


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
        fix = "check the model name, --num-classes and the model options"
        if misshaped and not missing and not unexpected and _one_channel_head(own, state, misshaped):
            fix = "its head has one output channel, a one-class model: give --num-classes 1 (a binary segmenter)"
        raise SegError(f"{path}: checkpoint does not fit the model: {'; '.join(problems)}; {fix}")
    network.load_state_dict(state)
    return [f"loaded {len(state)} tensors from {path.name}"]


def _one_channel_head(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], keys: list[str]) -> bool:
    """Whether the keys that misfit differ only in their first dimension, 1 in the checkpoint: a one-class head."""
    return all(state[k].ndim and state[k].shape[0] == 1 and state[k].shape[1:] == own[k].shape[1:] for k in keys)


def _few(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} key(s): {shown}" + (", ..." if len(keys) > limit else "")


def checkpoint_has_aux(path: str | os.PathLike[str]) -> bool:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False  # load_checkpoint reports the real problem
    state = state.get("state_dict", state.get("model", state)) if isinstance(state, Mapping) else state
    return isinstance(state, Mapping) and any(
        str(k).startswith(("aux_classifier.", "module.aux_classifier.")) for k in state
    )
