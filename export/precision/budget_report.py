"""How the accuracy budget's choice is shown: live progress with an ETA, the table of nodes by sensitivity,
the whole-graph trials, the summary line, and the record the model card keeps."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from segexport.precision.scoring import TrialScore
from segexport.precision.search import HIGHER, REDUCED, SearchResult, describe_score

SHOWN_NODES = 30  # sensitivity rows printed; the card keeps them all


class ProgressMonitor:
    """precision_search.Monitor on a rich Progress: one bar per phase, counted in images scored."""

    def __init__(self, progress: Any, images: int) -> None:
        self.progress = progress
        self.images = images
        self.task: Any = None

    def phase(self, title: str, trials: int | None) -> None:
        if self.task is not None:  # the estimate of the last phase was a bound: it is done
            done = next(task.completed for task in self.progress.tasks if task.id == self.task)
            self.progress.update(self.task, total=done or 1, completed=done or 1)
            self.progress.stop_task(self.task)
        self.task = self.progress.add_task(title, total=None if trials is None else trials * self.images)

    def advance(self) -> None:
        if self.task is not None:
            self.progress.advance(self.task)


@contextmanager
def progress(console: Any, images: int) -> Iterator[ProgressMonitor]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("images"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console, transient=False) as bar:
        yield ProgressMonitor(bar, images)


def _points(score: TrialScore) -> str:
    return "—" if score.miou_drop is None else f"{score.miou_drop:+.2f}"


def _miou(score: TrialScore) -> str:
    return "—" if score.miou is None else f"{100 * score.miou:.2f} %"


def _worst(score: TrialScore) -> str:
    drop = score.worst_class_drop
    return "—" if drop is None else f"{score.worst_class} {drop:+.2f}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def print_search(console: Any, result: SearchResult) -> None:
    """The sensitivity table (when measured) and the whole-graph trials, then what was kept and why."""
    from rich.table import Table
    from rich.text import Text

    reduced, higher = REDUCED[result.precision], HIGHER[result.precision]
    if result.sensitivities:
        kept = set(result.kept)
        by_class = any(item.score.worst_class is not None for item in result.sensitivities)
        table = Table(title=f"sensitivity: each node alone {reduced}, every other in {higher}", title_justify="left")
        names = ("rank", "node", "op", "mIoU drop (points)", *(["worst class (points)"] if by_class else []))
        for name in (*names, "pixels changed", "kept"):
            table.add_column(name, justify="left" if name in ("node", "op") else "right", overflow="fold")
        for rank, item in enumerate(result.sensitivities[:SHOWN_NODES], 1):
            table.add_row(
                str(rank), Text(item.node), item.op_type, _points(item.score),
                *([_worst(item.score)] if by_class else []), f"{100 * item.score.disagreement:.3f} %",
                higher if item.node in kept else "",
            )  # fmt: skip
        console.print(table)
        hidden = len(result.sensitivities) - SHOWN_NODES
        if hidden > 0:
            console.print(f"... and {hidden} less sensitive nodes (all in the card)", highlight=False)
    table = Table(title=f"whole graph, the most sensitive nodes kept in {higher}", title_justify="left")
    for name in ("nodes kept", "graph", "mIoU", "drop (points)", "pixels changed", "within budget"):
        table.add_column(name, justify="left" if name == "graph" else "right")
    for trial in result.trials:
        how = "converted with them excluded" if trial.converted else "read out of the all-reduced graph"
        ok = "[green]yes[/]" if result.budget.met(trial.score) else "[red]no[/]"
        table.add_row(
            str(len(trial.kept)), how, _miou(trial.score), _points(trial.score),
            f"{100 * trial.score.disagreement:.3f} %", ok,
        )  # fmt: skip
    console.print(table)
    if result.final is not None and result.final.class_ious is not None:
        print_classes(console, result)
    console.print(why_line(result), highlight=False, soft_wrap=True, markup=False)  # node names can hold [ ]


def print_classes(console: Any, result: SearchResult) -> None:
    """Every class's IoU in FP32 and in the graph written, its drop, and whether the class budget holds."""
    from rich.table import Table

    assert result.final is not None and result.final.class_ious is not None
    limit = result.budget.max_class_iou_drop
    table = Table(title="IoU per class: FP32 and the graph written", title_justify="left")
    within = ["within budget"] if limit is not None else []
    for name in ("class", "FP32", REDUCED[result.precision], "drop (points)", *within):
        table.add_column(name, justify="left" if name == "class" else "right")
    reference = result.reference_class_ious or {}
    drops = result.final.class_drops or {}
    for name, iou in result.final.class_ious.items():
        drop = drops.get(name)
        row = [name, _percent(reference.get(name)), _percent(iou), "—" if drop is None else f"{drop:+.2f}"]
        if limit is not None:
            row.append("—" if drop is None else "[green]yes[/]" if drop <= limit + 1e-9 else "[red]no[/]")
        table.add_row(*row)
    console.print(table)


def why_line(result: SearchResult) -> str:
    """What was kept and why, in one sentence."""
    reduced, higher = REDUCED[result.precision], HIGHER[result.precision]
    if result.final is None:
        return f"no graph within budget ({result.budget.words()})"
    figures = describe_score(result.final, result.reference_miou)
    if not result.kept:
        return f"all-{reduced} is within budget ({result.budget.words()}): no node kept; it {figures}"
    fewer = [t for t in result.trials if len(t.kept) < len(result.kept) and not result.budget.met(t.score)]
    before = max(fewer, key=lambda t: len(t.kept)) if fewer else None
    reason = (
        f"; with {len(before.kept)} kept it {describe_score(before.score, result.reference_miou)}, over budget"
        if before
        else ""
    )
    return (
        f"kept the {len(result.kept)} most sensitive of {len(result.units)} nodes in {higher} "
        f"({', '.join(result.kept)}): the graph written {figures}{reason}"
    )


def summary_line(result: SearchResult, summary: str) -> str:
    assert result.final is not None
    kept = f"{len(result.kept)} node(s) kept in {HIGHER[result.precision]}" if result.kept else "no node kept"
    return f"{summary}; {kept}; {describe_score(result.final, result.reference_miou)}"


def card_record(result: SearchResult, where: str, rebuild: Sequence[str]) -> dict[str, Any]:
    """The card's `checks.accuracy_budget`: budget, images, figures, nodes kept (and the flags that keep
    them again), every node's sensitivity and every trial."""
    assert result.final is not None
    return {
        "budget": result.budget.record(),
        "measured_on": where,
        "fp32_miou": None if result.reference_miou is None else round(result.reference_miou, 6),
        **result.final.record(),
        "all_reduced": result.all_reduced.record(),
        **({"class_iou": class_record(result)} if result.final.class_ious is not None else {}),
        "kept": list(result.kept),
        "kept_in": HIGHER[result.precision],
        "rebuild_flags": list(rebuild),
        "sensitivity": [
            {"node": item.node, "op": item.op_type, **item.score.record()} for item in result.sensitivities
        ],
        "trials": [
            {"kept": len(trial.kept), "converted": trial.converted, **trial.score.record()} for trial in result.trials
        ],
        "search_seconds": round(result.seconds, 1),
    }


def class_record(result: SearchResult) -> dict[str, dict[str, float | None]]:
    """Every class's IoU in FP32 and in the graph written (0..1), and its drop in points, by class name."""
    assert result.final is not None and result.final.class_ious is not None
    reference = result.reference_class_ious or {}
    drops = result.final.class_drops or {}

    def rounded(value: float | None, digits: int) -> float | None:
        return None if value is None else round(value, digits)

    return {
        name: {
            "fp32": rounded(reference.get(name), 6),
            "graph": rounded(iou, 6),
            "drop_points": rounded(drops.get(name), 4),
        }
        for name, iou in result.final.class_ious.items()
    }
