"""Runs whose graph segexport chose against an accuracy budget (`max_miou_drop` in a suite run): the flags that
export them, their cache folder, the check that the budget is measured on other images than those scored, and
what their card says about the choice."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from segbench.suite import ModelSpec
from segrt.errors import SegError


def budget_flags(model: ModelSpec, max_miou_drop: float | None) -> list[str]:
    """segexport's accuracy budget flags for a run with max_miou_drop (none without), measured on budget_val."""
    if max_miou_drop is None or model.budget_val is None:
        return []
    return ["--max-miou-drop", f"{max_miou_drop:g}", "--val", str(model.budget_val)]


def budget_key(flags: list[str], model: ModelSpec) -> str:
    """The budgeted graph's folder name: its flags and the ids its budget set lists (a regenerated set with
    other ids is another choice)."""
    digest = hashlib.sha256(" ".join(flags).encode())
    split = (model.budget_val or Path()) / "ImageSets" / "Segmentation" / "val.txt"
    digest.update(split.read_bytes() if split.is_file() else b"no split file")
    return f"budget-{digest.hexdigest()[:10]}"


def check_budget_set(model: ModelSpec, scored: list[Path], where: str) -> None:
    """Refuse a budget_val sharing an image with the set the run scores: a graph chosen on the images it is then
    scored on looks better than it is on any other. Compared by content, so a copy under another name counts."""
    from segrt.dataset import VocDataset

    if model.budget_val is None:
        return
    try:
        chosen_on = VocDataset(model.budget_val, "val").image_paths
    except SegError as exc:
        raise SegError(f"{where}: {model.label}: budget_val: {exc}") from None
    scored_by_hash = {hashlib.sha256(path.read_bytes()).digest(): path for path in scored}
    for path in chosen_on:
        image = scored_by_hash.get(hashlib.sha256(path.read_bytes()).digest())
        if image is not None:
            raise SegError(
                f"{where}: {model.label}: budget_val {model.budget_val} holds {path.name}, the image {image} this "
                f"run scores; measure the budget on another labelled set, e.g. python -m segbench.shapes "
                f"build/shapes-tune --train 0 --val 100 --seed 1"
            )


def budget_details(card: Any) -> dict[str, Any] | None:
    """What the card of a budgeted graph says about its choice: nodes kept, figures on the budget set, time."""
    record = card.checks.get("accuracy_budget")
    if not record:
        return None
    keys = ("budget", "measured_on", "fp32_miou", "miou", "miou_drop_points", "all_reduced", "kept", "kept_in")
    return {**{key: record.get(key) for key in keys}, "search_seconds": record.get("search_seconds")}
