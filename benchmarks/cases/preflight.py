"""What a run reads, checked before any work or output: the photo, the labelled sets and clips, and that no case
calibrates on an image it is scored on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segbench.cases.artifacts import calibrates, check_calibration, unavailable_reason
from segbench.cases.budgeted import check_budget_set
from segbench.cases.suite import BASELINE, Suite
from segbench.scoring import accuracy
from segrt.errors import MissingDependency, SegError


def asked(cases: list[Any]) -> list[Any]:
    """The cases (or their records) a run was asked for: all but the PyTorch baselines, unless it has only those."""
    return [c for c in cases if (c.backend if hasattr(c, "backend") else c.get("backend")) != BASELINE] or cases


def check_something_to_measure(suite: Suite) -> None:
    """Before any work: this machine runs at least one case asked (a PyTorch baseline alone measures nothing that
    was asked); else one sentence with the reasons, exit 3."""
    cases = asked(list(suite.cases))
    reasons = [unavailable_reason(case) for case in cases]
    if all(reasons):
        which = f"none of the {len(cases)} cases asked ({cases[0].id}, ...)" if len(cases) > 1 else "the case asked"
        why = "; ".join(dict.fromkeys(str(reason) for reason in reasons))
        one = f" ({cases[0].id})" if len(cases) == 1 else ""
        raise MissingDependency(f"nothing to measure: this machine cannot run {which}{one}: {why}")


def check_measured(cases: list[dict[str, Any]]) -> None:
    """After a run: a case asked was measured (or failed, exit 1 on its own), else one sentence, exit 3."""
    records = asked(cases)
    if all(record["status"] == "skipped" for record in records):
        why = "; ".join(dict.fromkeys(str(record.get("reason")) for record in records))
        raise MissingDependency(f"nothing was measured: every case asked was skipped ({why}); see the report")


def check_calibrations(suite: Suite, photo: Path, dataset: Path | None) -> None:
    """Before any work: no case this machine runs may calibrate on the photo or the val images it is scored on."""
    where = str(suite.source) if suite.source else "command line"
    calibrated = [c for c in suite.cases if c.file is None and calibrates(c.precision, c.model)]  # a file: made
    runnable = [c.model for c in calibrated if unavailable_reason(c) is None]
    for model in dict.fromkeys(runnable):
        check_calibration(model, [photo, *val_images(dataset or model.dataset)], where)
    budgeted = [c.model for c in suite.cases if c.max_miou_drop is not None and unavailable_reason(c) is None]
    for model in dict.fromkeys(budgeted):
        check_budget_set(model, [photo, *val_images(dataset or model.dataset)], where)


def val_images(root: Path | None) -> list[Path]:
    """The image files of a labelled set's val split; none when there is no readable set (mIoU says why)."""
    if root is None:
        return []
    try:
        return list(accuracy.open_dataset(root).image_paths)
    except SegError:
        return []


@dataclass(frozen=True)
class Checked:
    """What preflight read: the photo (path and pixels) and the labelled clips the runnable cases go over."""

    photo_path: Path
    photo: np.ndarray
    clips: dict[Path, Any]


def preflight(suite: Suite, dataset: Path | None) -> Checked:
    """What a run reads, checked before any work or output: the photo, the labelled sets and clips, the calibration.

    A labelled set the user named (--dataset, or dataset = in the suite) that cannot be read is an
    error, not a run whose mIoU column is silently empty; so is a clip whose video cannot be opened,
    has no frames or changes size, or whose label maps do not match it.
    """
    from segexport.defaults import ASSETS
    from segrt.image import read_image

    photo_path = suite.image or ASSETS / "astronaut.jpg"
    photo = read_image(photo_path)
    roots = [dataset] if dataset is not None else [case.model.dataset for case in suite.cases]
    for root in dict.fromkeys(root for root in roots if root is not None):
        accuracy.open_dataset(root)
    check_calibrations(suite, photo_path, dataset)
    return Checked(photo_path, photo, read_clips(suite))


def read_clips(suite: Suite) -> dict[Path, Any]:
    """Each clip a runnable case goes over, read once into memory (segbench.data.video)."""
    folders = [c.clip for c in suite.cases if c.clip is not None and unavailable_reason(c) is None]
    if not folders:
        return {}
    from segbench.data.video import open_clip

    return {folder: open_clip(folder) for folder in dict.fromkeys(folders)}  # type: ignore[misc]
