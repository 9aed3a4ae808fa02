"""Precision chosen against an accuracy budget: the fewest nodes kept in high precision that keep a reduced
graph within an mIoU drop (or a pixel disagreement) of FP32 on the user's images.

1. Reduce every node once (one calibration or AutoCast run) and score it. Within budget: done.
2. Sensitivity: for each reducible node, score the graph with that node alone reduced (every other node
   kept), read from the one reduced graph (`qdq_keep`, `fp16_keep`): no calibration per trial.
3. Keep the most sensitive nodes: the smallest k whose top-k kept graph is within budget, found by
   doubling k, then bisecting (about 2 log2(nodes) whole-graph scores instead of one per node).
4. Convert once more with those nodes excluded, as `--keep-fp32` does (what a rebuild reproduces), and
   score that graph: it is the one written, so its figures are measured on the very file.
Every score reuses the FP32 labels and decoded images of `trial_scoring.TrialScorer`.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from segexport.precision.scoring import TrialScore, TrialScorer
from segrt.errors import SegError

HIGHER = {"int8": "FP16", "int8-cpu": "FP32", "fp16": "FP32"}  # what a kept node computes in
REDUCED = {"int8": "INT8", "int8-cpu": "INT8", "fp16": "FP16"}
FINAL_RETRIES = 2  # more nodes kept when the converted graph misses a budget its read-out twin met


@dataclass(frozen=True)
class Budget:
    """The accuracy a reduced graph may lose: mIoU points on the labelled set, IoU points of any one class
    there, and/or the share of pixels whose label differs from FP32 (0..1). Several given: all must hold."""

    max_miou_drop: float | None = None
    max_disagreement: float | None = None
    max_class_iou_drop: float | None = None

    def __post_init__(self) -> None:
        if self.max_miou_drop is None and self.max_disagreement is None and self.max_class_iou_drop is None:
            raise ValueError("a budget needs max_miou_drop, max_class_iou_drop or max_disagreement")

    def met(self, score: TrialScore) -> bool:
        if self.max_miou_drop is not None and (score.miou_drop is None or score.miou_drop > self.max_miou_drop + 1e-9):
            return False
        worst = score.worst_class_drop
        if self.max_class_iou_drop is not None and (worst is None or worst > self.max_class_iou_drop + 1e-9):
            return False
        return self.max_disagreement is None or score.disagreement <= self.max_disagreement + 1e-12

    def excess(self, score: TrialScore) -> float:
        """How far over budget, in the budget's own units (points), for ranking the closest miss."""
        over = 0.0
        if self.max_miou_drop is not None:
            over = max(over, (math.inf if score.miou_drop is None else score.miou_drop) - self.max_miou_drop)
        if self.max_class_iou_drop is not None:
            worst = score.worst_class_drop
            over = max(over, (math.inf if worst is None else worst) - self.max_class_iou_drop)
        if self.max_disagreement is not None:
            over = max(over, 100.0 * (score.disagreement - self.max_disagreement))
        return over

    def sensitivity(self, score: TrialScore) -> tuple[float, ...]:
        """The sort key of a node's sensitivity: mIoU drop where mIoU is budgeted, then disagreement. With a class
        budget, first the larger share of a budget the node uses alone (its mIoU drop, its worst class's drop),
        then its worst class's drop: a node that costs one class much and the mean little ranks high."""
        drop = score.miou_drop if self.max_miou_drop is not None and score.miou_drop is not None else 0.0
        if self.max_class_iou_drop is None:
            return (drop, score.disagreement)
        worst = score.worst_class_drop or 0.0
        shares = [_share(worst, self.max_class_iou_drop)]
        if self.max_miou_drop is not None:
            shares.append(_share(drop, self.max_miou_drop))
        return (max(shares), worst, drop, score.disagreement)

    def words(self) -> str:
        parts = []
        if self.max_miou_drop is not None:
            parts.append(f"at most {self.max_miou_drop:g} mIoU points lost")
        if self.max_class_iou_drop is not None:
            parts.append(f"at most {self.max_class_iou_drop:g} IoU points lost by any class")
        if self.max_disagreement is not None:
            parts.append(f"at most {100 * self.max_disagreement:g} % of pixels changed")
        return " and ".join(parts)

    def record(self) -> dict[str, Any]:
        disagreement = None if self.max_disagreement is None else round(100 * self.max_disagreement, 6)
        return {
            "max_miou_drop_points": self.max_miou_drop,
            "max_class_iou_drop_points": self.max_class_iou_drop,
            "max_disagreement_percent": disagreement,
        }


def _share(cost: float, budget: float) -> float:
    """The share of a budget a cost uses (a zero budget: any cost is infinitely over, none is nothing)."""
    if budget > 0:
        return cost / budget
    return math.inf if cost > 1e-9 else 0.0


class KeepableGraph(Protocol):
    """A reduced graph readable with any of its `units` kept in higher precision (`qdq_keep`, `fp16_keep`)."""

    units: tuple[str, ...]

    def with_kept(self, kept: Sequence[str]) -> Any: ...


class Monitor(Protocol):
    """Progress of the search: a phase of `trials` graph scores starts; each image of each score advances."""

    def phase(self, title: str, trials: int | None) -> None: ...

    def advance(self) -> None: ...


@dataclass(frozen=True)
class Sensitivity:
    node: str
    op_type: str
    score: TrialScore  # the graph with this node alone reduced


@dataclass(frozen=True)
class Trial:
    kept: tuple[str, ...]
    score: TrialScore
    converted: bool = False  # True: a real conversion with these nodes excluded; False: read out of one graph


@dataclass
class SearchResult:
    """What the search measured and chose. `proto` is the graph to write, `final` its score."""

    precision: str
    budget: Budget
    reference_miou: float | None
    all_reduced: TrialScore
    units: tuple[str, ...]
    reference_class_ious: dict[str, float | None] | None = None  # FP32's IoU per class on a labelled set
    sensitivities: list[Sensitivity] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    kept: tuple[str, ...] = ()
    final: TrialScore | None = None
    proto: Any = None
    seconds: float = 0.0


class BudgetNotMet(SegError):
    """No graph the search could write is within budget: even every node kept misses it, or the converted
    graphs miss a budget their read-out twins met. `result` holds every trial, the closest among them."""

    def __init__(self, message: str, result: SearchResult) -> None:
        super().__init__(message)
        self.result = result


Convert = Callable[[Sequence[str], Path], Any]  # (nodes kept, scratch folder) -> reduced onnx.ModelProto


def search_precision(
    precision: str,
    convert: Convert,
    read_out: Callable[[Any], KeepableGraph],
    scorer: TrialScorer,
    budget: Budget,
    *,
    scratch: Path,
    monitor: Monitor | None = None,
) -> SearchResult:
    """The graph of `precision` with the fewest nodes kept that is within `budget` on `scorer`'s images.

    `convert(kept, folder)` runs the precision pass with `kept` excluded (the user's --keep-fp32 nodes are
    `convert`'s own business); `read_out(proto)` wraps its result as a KeepableGraph. Raises BudgetNotMet
    (a SegError, exit 2) when even keeping every node misses the budget.
    """
    started = time.perf_counter()
    step = _Steps(precision, scorer, budget, monitor)
    step.phase(f"convert every node to {REDUCED[precision]}", None)
    reduced = convert((), _fresh(scratch))
    step.phase(f"score all-{REDUCED[precision]}", 1)
    graph = read_out(reduced)
    result = SearchResult(precision, budget, scorer.reference_miou, step.score(reduced), graph.units)
    result.reference_class_ious = scorer.reference_class_ious()
    result.trials.append(Trial((), result.all_reduced, converted=True))
    if budget.met(result.all_reduced):
        result.proto, result.final = reduced, result.all_reduced
    else:
        order = _rank(graph, reduced, step, result)
        count = _fewest_kept(graph, order, step, result)
        _convert_final(convert, order, count, step, result, scratch)
    result.seconds = time.perf_counter() - started
    return result


def _fresh(scratch: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix="convert-", dir=scratch))


@dataclass
class _Steps:
    precision: str
    scorer: TrialScorer
    budget: Budget
    monitor: Monitor | None

    def phase(self, title: str, trials: int | None) -> None:
        if self.monitor is not None:
            self.monitor.phase(title, trials)

    def score(self, proto: Any) -> TrialScore:
        return self.scorer.score(proto, self.precision)


def _rank(graph: KeepableGraph, reduced: Any, step: _Steps, result: SearchResult) -> list[str]:
    """Score each node alone reduced; returns the nodes most sensitive first (ties: graph order)."""
    op_types = {node.name: node.op_type for node in reduced.graph.node}
    step.phase(f"sensitivity: each of {len(graph.units)} nodes alone {REDUCED[step.precision]}", len(graph.units))
    for unit in graph.units:
        others = [name for name in graph.units if name != unit]
        result.sensitivities.append(Sensitivity(unit, op_types.get(unit, "?"), step.score(graph.with_kept(others))))
    position = {name: index for index, name in enumerate(graph.units)}
    ranked = sorted(
        result.sensitivities, key=lambda s: (*(-v for v in step.budget.sensitivity(s.score)), position[s.node])
    )
    result.sensitivities = ranked
    return [s.node for s in ranked]


def _fewest_kept(graph: KeepableGraph, order: list[str], step: _Steps, result: SearchResult) -> int:
    """The least k whose graph with the k most sensitive nodes kept is within budget: k = 1, 2, 4, ... until
    one is, then bisection below it. Raises BudgetNotMet when every node kept still misses."""
    scores: dict[int, TrialScore] = {0: result.all_reduced}

    def within(k: int) -> bool:
        if k not in scores:
            scores[k] = step.score(graph.with_kept(order[:k]))
            result.trials.append(Trial(tuple(order[:k]), scores[k]))
        return step.budget.met(scores[k])

    total = len(order)
    step.phase("keep the most sensitive nodes", max(1, math.ceil(2 * math.log2(total + 1))))
    failing, k = 0, 1
    while not within(min(k, total)):
        if k >= total:
            raise _not_met_with_all_kept(result, step, total)
        failing, k = min(k, total), k * 2
    passing = min(k, total)
    while passing - failing > 1:
        middle = (failing + passing) // 2
        if within(middle):
            passing = middle
        else:
            failing = middle
    return passing


def _convert_final(
    convert: Convert, order: list[str], count: int, step: _Steps, result: SearchResult, scratch: Path
) -> None:
    """Convert with the chosen nodes excluded and score that graph; where it misses the budget its read-out
    twin met, keep one more node (FINAL_RETRIES times) before giving up."""
    for kept_count in range(count, min(count + FINAL_RETRIES, len(order)) + 1):
        kept = tuple(order[:kept_count])
        step.phase(f"convert with {kept_count} node(s) kept", None)
        proto = convert(kept, _fresh(scratch))
        step.phase(f"score the graph written, {kept_count} node(s) kept", 1)
        score = step.score(proto)
        result.trials.append(Trial(kept, score, converted=True))
        if step.budget.met(score):
            result.kept, result.proto, result.final = kept, proto, score
            return
    raise _converted_not_met(result, step, count, kept_count)


def _not_met_with_all_kept(result: SearchResult, step: _Steps, total: int) -> BudgetNotMet:
    """Keeping every node still misses: the closest of all trials, saying how it was measured."""
    closest = min(result.trials, key=lambda trial: step.budget.excess(trial.score))
    kept = "all" if len(closest.kept) == total else str(len(closest.kept))
    precision = step.precision
    return BudgetNotMet(
        f"no {precision} graph is within the budget ({step.budget.words()}) on {step.scorer.evaluation.where}, "
        f"even with all {total} {REDUCED[precision]} nodes kept in {HIGHER[precision]}; the closest keeps {kept} "
        f"and {describe_score(closest.score, result.reference_miou)} ({_measured(closest, precision)}); "
        "raise the budget, or calibrate on images more like the set (--calib)",
        result,
    )


def _converted_not_met(result: SearchResult, step: _Steps, count: int, last: int) -> BudgetNotMet:
    """The read-out graph with `count` nodes kept met the budget, but the graphs converted with `count`..`last`
    kept (the only ones that could be written) miss it: the closest converted graph, not a read-out one."""
    precision = step.precision
    read_out = next(t for t in result.trials if not t.converted and len(t.kept) == count)
    closest = min((t for t in result.trials if t.converted), key=lambda trial: step.budget.excess(trial.score))
    tried = str(count) if last == count else f"{count} to {last}"
    return BudgetNotMet(
        f"no {precision} graph is within the budget ({step.budget.words()}) on {step.scorer.evaluation.where}: "
        f"with the {count} most sensitive {REDUCED[precision]} node(s) kept in {HIGHER[precision]} it "
        f"{describe_score(read_out.score, result.reference_miou)} ({_measured(read_out, precision)}), but "
        f"converted with {tried} of {len(result.units)} kept it misses; the closest converted graph keeps "
        f"{len(closest.kept)} and {describe_score(closest.score, result.reference_miou)}; raise the budget, or "
        f"keep more nodes with --keep-fp32 REGEX (the sensitivity table ranks them)",
        result,
    )


def _measured(trial: Trial, precision: str) -> str:
    """How a trial's figures were measured: on a converted graph, or read out of the all-reduced one."""
    return "converted" if trial.converted else f"read out of the all-{REDUCED[precision]} graph"


def describe_score(score: TrialScore, reference_miou: float | None) -> str:
    """'loses 0.31 mIoU points (92.14 % vs FP32 92.45 %), changes 1.204 % of pixels', and on a labelled set
    ', its worst class (star) loses 2.10 IoU points'."""
    changed = f"changes {100 * score.disagreement:.3f} % of pixels"
    if score.miou is None or reference_miou is None or score.miou_drop is None:
        return changed
    verb = "loses" if score.miou_drop > -0.005 else "gains"
    worst, drop = score.worst_class, score.worst_class_drop
    by_class = "" if worst is None or drop is None else f", its worst class ({worst}) {_points(drop, 'IoU')}"
    return (
        f"{verb} {abs(score.miou_drop):.2f} mIoU points ({100 * score.miou:.2f} % vs FP32 "
        f"{100 * reference_miou:.2f} %), {changed}{by_class}"
    )


def _points(drop: float, what: str) -> str:
    return f"{'loses' if drop > -0.005 else 'gains'} {abs(drop):.2f} {what} points"
