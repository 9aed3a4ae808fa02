"""Runs whose graph segexport chose against an accuracy budget (`max_miou_drop` in a suite run): the budget they
are exported with, their cache folder, the check that the budget is measured on other images than those scored, and
what their card says about the choice."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segbench.cases.suite import ModelSpec
from segbench.scoring.held_out import first_shared_image
from segrt.errors import SegError

if TYPE_CHECKING:
    from segexport.request import BudgetOptions


def budget_options(model: ModelSpec, max_miou_drop: float | None) -> BudgetOptions:
    """The accuracy budget of a run with max_miou_drop, measured on the model's budget_val (none without)."""
    from segexport.request import BudgetOptions

    if max_miou_drop is None or model.budget_val is None:
        return BudgetOptions()
    return BudgetOptions(max_miou_drop=max_miou_drop, val=model.budget_val)


def budget_key(options: BudgetOptions, model: ModelSpec) -> str:
    """The budgeted graph's folder name: its budget, its set and the ids that set lists (a regenerated set with
    other ids is another choice)."""
    digest = hashlib.sha256(f"{options.max_miou_drop:g} {options.val}".encode())
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
    shared = first_shared_image(chosen_on, scored)
    if shared is not None:
        path, image = shared
        raise SegError(
            f"{where}: {model.label}: budget_val {model.budget_val} holds {path.name}, the image {image} this "
            f"run scores; measure the budget on another labelled set, e.g. python -m segbench.data.shapes "
            f"build/shapes-tune --train 0 --val 100 --seed 1"
        )


def budget_details(card: Any) -> dict[str, Any] | None:
    """What the card of a budgeted graph says about its choice: nodes kept, figures on the budget set, time."""
    record = card.checks.get("accuracy_budget")
    if not record:
        return None
    keys = ("budget", "measured_on", "fp32_miou", "miou", "miou_drop_points", "all_reduced", "kept", "kept_in")
    return {**{key: record.get(key) for key in keys}, "search_seconds": record.get("search_seconds")}
