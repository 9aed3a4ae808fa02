"""What the accuracy budget's search prints and records, on results built by hand (no model, no session): the
sensitivity table, the whole-graph trials, the sentence saying what was kept and why, the progress bars and
the card's record."""

from __future__ import annotations

import io
import json
from dataclasses import replace

from rich.console import Console

from segexport.precision import budget_report
from segexport.precision.budget_report import (
    SHOWN_NODES,
    ProgressMonitor,
    card_record,
    print_search,
    summary_line,
    why_line,
)
from segexport.precision.scoring import TrialScore
from segexport.precision.search import Budget, SearchResult, Sensitivity, Trial

REFERENCE = 0.9245  # FP32 mIoU
HALF_POINT = Budget(max_miou_drop=0.5)

# (node, op, mIoU, drop in points, share of pixels changed), most sensitive first: not the graph's order,
# nor the names' nor the ops'.
SENSITIVITY = [
    ("/dec/resize", "Resize", 0.8935, 3.10, 0.0421),
    ("/enc/conv1", "Conv", 0.9120, 1.25, 0.01875),
    ("/head/conv", "Conv", 0.9205, 0.40, 0.005),
    ("/enc/add", "Add", 0.9240, 0.05, 0.0012),
    ("/dec/conv2", "Conv", 0.9247, -0.02, 0.0003),
]
UNITS = ("/enc/conv1", "/enc/add", "/dec/conv2", "/dec/resize", "/head/conv")
ALL_REDUCED = TrialScore(miou=0.8845, miou_drop=4.00, disagreement=0.061)
ONE_KEPT = TrialScore(miou=0.9115, miou_drop=1.30, disagreement=0.02)
TWO_READ_OUT = TrialScore(miou=0.9210, miou_drop=0.35, disagreement=0.008)
TWO_CONVERTED = TrialScore(miou=0.9204, miou_drop=0.41, disagreement=0.009)


def console() -> Console:
    return Console(file=io.StringIO(), width=200, color_system=None)


def printed(result: SearchResult) -> str:
    out = console()
    print_search(out, result)
    return out.file.getvalue()


def tables(text: str) -> dict[str, list[list[str]]]:
    """The body rows (cells, stripped) of each table printed, by the first word of its title."""
    found: dict[str, list[list[str]]] = {}
    rows: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith(("sensitivity:", "whole graph")):
            rows = found.setdefault(line.split()[0], [])
        elif line.startswith("│"):
            rows.append([cell.strip() for cell in line.strip("│").split("│")])
    return found


def kept_two(**changes) -> SearchResult:
    """An INT8 search that kept the 2 most sensitive of 5 nodes: 1 kept misses the budget, 2 meet it."""
    result = SearchResult(
        precision="int8",
        budget=HALF_POINT,
        reference_miou=REFERENCE,
        all_reduced=ALL_REDUCED,
        units=UNITS,
        sensitivities=[
            Sensitivity(node, op, TrialScore(miou, drop, changed)) for node, op, miou, drop, changed in SENSITIVITY
        ],
        trials=[
            Trial((), ALL_REDUCED, converted=True),
            Trial(("/dec/resize",), ONE_KEPT),
            Trial(("/dec/resize", "/enc/conv1"), TWO_READ_OUT),
            Trial(("/dec/resize", "/enc/conv1"), TWO_CONVERTED, converted=True),
        ],
        kept=("/dec/resize", "/enc/conv1"),
        final=TWO_CONVERTED,
        seconds=12.345,
    )
    return replace(result, **changes)  # a field misspelt is an error, not a new attribute


def test_the_sensitivity_table_ranks_the_nodes_and_marks_those_kept_in_the_higher_precision() -> None:
    text = printed(kept_two())
    assert "sensitivity: each node alone INT8, every other in FP16" in text
    assert tables(text)["sensitivity:"] == [
        ["1", "/dec/resize", "Resize", "+3.10", "4.210 %", "FP16"],
        ["2", "/enc/conv1", "Conv", "+1.25", "1.875 %", "FP16"],
        ["3", "/head/conv", "Conv", "+0.40", "0.500 %", ""],
        ["4", "/enc/add", "Add", "+0.05", "0.120 %", ""],
        ["5", "/dec/conv2", "Conv", "-0.02", "0.030 %", ""],
    ]
    assert "less sensitive nodes" not in text  # all 5 shown


def test_fp16_nodes_are_kept_in_fp32_and_a_set_without_labels_has_no_mious() -> None:
    unlabelled = TrialScore(miou=None, miou_drop=None, disagreement=0.004)
    result = kept_two(
        precision="fp16",
        budget=Budget(max_disagreement=0.01),
        reference_miou=None,
        sensitivities=[Sensitivity("/dec/resize", "Resize", TrialScore(None, None, 0.03))],
        trials=[Trial((), TrialScore(None, None, 0.02), converted=True), Trial(("/dec/resize",), unlabelled)],
        kept=("/dec/resize",),
        final=unlabelled,
    )
    text = printed(result)
    assert "sensitivity: each node alone FP16, every other in FP32" in text
    assert "whole graph, the most sensitive nodes kept in FP32" in text
    assert tables(text) == {
        "sensitivity:": [["1", "/dec/resize", "Resize", "—", "3.000 %", "FP32"]],
        "whole": [
            ["0", "converted with them excluded", "—", "—", "2.000 %", "no"],
            ["1", "read out of the all-reduced graph", "—", "—", "0.400 %", "yes"],
        ],
    }


def test_past_the_shown_rows_the_table_says_how_many_less_sensitive_nodes_it_left_out() -> None:
    nodes = [f"/block{index}/Conv" for index in range(SHOWN_NODES + 3)]
    result = kept_two(
        units=tuple(nodes),
        sensitivities=[
            Sensitivity(node, "Conv", TrialScore(0.9, 2.0 - index / 100, 0.01)) for index, node in enumerate(nodes)
        ],
        kept=tuple(nodes[:2]),
    )
    text = printed(result)
    rows = tables(text)["sensitivity:"]
    assert [row[:2] for row in rows] == [[str(rank), node] for rank, node in enumerate(nodes[:SHOWN_NODES], 1)]
    assert [row[5] for row in rows] == ["FP16", "FP16"] + [""] * (SHOWN_NODES - 2)
    assert "... and 3 less sensitive nodes (all in the card)" in text.splitlines()
    assert nodes[SHOWN_NODES] not in text


def test_the_trials_table_says_which_graphs_are_within_budget() -> None:
    text = printed(kept_two())
    assert "whole graph, the most sensitive nodes kept in FP16" in text
    assert tables(text)["whole"] == [
        ["0", "converted with them excluded", "88.45 %", "+4.00", "6.100 %", "no"],
        ["1", "read out of the all-reduced graph", "91.15 %", "+1.30", "2.000 %", "no"],
        ["2", "read out of the all-reduced graph", "92.10 %", "+0.35", "0.800 %", "yes"],
        ["2", "converted with them excluded", "92.04 %", "+0.41", "0.900 %", "yes"],
    ]
    on_the_budget = kept_two(trials=[Trial(("/dec/resize",), TrialScore(0.9195, 0.5, 0.01))])
    assert tables(printed(on_the_budget))["whole"][0][5] == "yes"  # at most 0.5 points: 0.5 is within
    just_over = kept_two(trials=[Trial(("/dec/resize",), TrialScore(0.9194, 0.51, 0.01))])
    assert tables(printed(just_over))["whole"][0][5] == "no"


def test_the_last_line_printed_is_what_was_kept_and_why() -> None:
    for result in (kept_two(), kept_two(kept=(), final=None), kept_two(kept=(), final=ALL_REDUCED, sensitivities=[])):
        assert printed(result).rstrip("\n").splitlines()[-1] == why_line(result)
    assert "sensitivity:" not in printed(kept_two(sensitivities=[]))  # not measured: no table


def test_why_no_graph_is_within_budget_names_the_budget() -> None:
    assert why_line(kept_two(kept=(), final=None)) == "no graph within budget (at most 0.5 mIoU points lost)"
    both = Budget(max_miou_drop=0.25, max_disagreement=0.02)
    assert why_line(kept_two(budget=both, kept=(), final=None)) == (
        "no graph within budget (at most 0.25 mIoU points lost and at most 2 % of pixels changed)"
    )


def test_why_the_all_reduced_graph_keeps_no_node() -> None:
    within = TrialScore(miou=0.9233, miou_drop=0.12, disagreement=0.0031)
    result = kept_two(trials=[Trial((), within, converted=True)], sensitivities=[], kept=(), final=within)
    assert why_line(result) == (
        "all-INT8 is within budget (at most 0.5 mIoU points lost): no node kept; "
        "it loses 0.12 mIoU points (92.33 % vs FP32 92.45 %), changes 0.310 % of pixels"
    )
    fp16 = kept_two(precision="fp16", trials=[], sensitivities=[], kept=(), final=within, reference_miou=None)
    assert why_line(fp16) == (
        "all-FP16 is within budget (at most 0.5 mIoU points lost): no node kept; it changes 0.310 % of pixels"
    )


def test_why_k_nodes_are_kept_names_the_largest_over_budget_trial_with_fewer() -> None:
    assert why_line(kept_two()) == (
        "kept the 2 most sensitive of 5 nodes in FP16 (/dec/resize, /enc/conv1): the graph written loses 0.41 "
        "mIoU points (92.04 % vs FP32 92.45 %), changes 0.900 % of pixels; with 1 kept it loses 1.30 mIoU points "
        "(91.15 % vs FP32 92.45 %), changes 2.000 % of pixels, over budget"
    )
    # 3 read out met the budget but 3 converted missed it, so a 4th node was kept: the miss with 3 is named,
    # not the read-out graph with 3 that met it, nor the misses with fewer, nor the read-out one with 4.
    three = tuple(node for node, *_ in SENSITIVITY[:3])
    four = (*three, SENSITIVITY[3][0])
    three_converted = TrialScore(miou=0.9190, miou_drop=0.55, disagreement=0.0071)
    final = TrialScore(miou=0.9228, miou_drop=0.17, disagreement=0.0042)
    result = kept_two(
        trials=[
            Trial((), ALL_REDUCED, converted=True),
            Trial(three[:1], ONE_KEPT),
            Trial(three[:2], TrialScore(miou=0.9180, miou_drop=0.65, disagreement=0.0095)),
            Trial(four, TrialScore(miou=0.9230, miou_drop=0.15, disagreement=0.004)),
            Trial(three, TrialScore(miou=0.9215, miou_drop=0.30, disagreement=0.006)),
            Trial(three, three_converted, converted=True),
            Trial(four, final, converted=True),
        ],
        kept=four,
        final=final,
    )
    assert why_line(result) == (
        "kept the 4 most sensitive of 5 nodes in FP16 (/dec/resize, /enc/conv1, /head/conv, /enc/add): the graph "
        "written loses 0.17 mIoU points (92.28 % vs FP32 92.45 %), changes 0.420 % of pixels; with 3 kept it "
        "loses 0.55 mIoU points (91.90 % vs FP32 92.45 %), changes 0.710 % of pixels, over budget"
    )
    no_miss_with_fewer = kept_two(trials=[Trial(("/dec/resize",), TWO_READ_OUT)])
    assert why_line(no_miss_with_fewer).endswith("(92.04 % vs FP32 92.45 %), changes 0.900 % of pixels")


def test_the_summary_line_says_how_many_nodes_were_kept() -> None:
    assert summary_line(kept_two(), "INT8 Q/DQ") == (
        "INT8 Q/DQ; 2 node(s) kept in FP16; loses 0.41 mIoU points (92.04 % vs FP32 92.45 %), changes 0.900 % of pixels"
    )
    assert summary_line(kept_two(kept=(), final=ALL_REDUCED, precision="int8-cpu"), "INT8 QOperator") == (
        "INT8 QOperator; no node kept; loses 4.00 mIoU points (88.45 % vs FP32 92.45 %), changes 6.100 % of pixels"
    )


def _task(monitor: ProgressMonitor, task_id):
    return next(task for task in monitor.progress.tasks if task.id == task_id)


def test_progress_counts_each_phase_in_images_and_closes_a_phase_when_the_next_starts() -> None:
    out = console()
    with budget_report.progress(out, 3) as monitor:
        monitor.advance()  # before any phase: nothing to advance
        assert monitor.progress.tasks == []
        monitor.phase("convert every node to INT8", None)
        convert = monitor.task
        assert _task(monitor, convert).total is None  # a count not known
        monitor.phase("score all-INT8", 1)
        closed = _task(monitor, convert)  # no image in it: shown done all the same
        assert (closed.total, closed.completed, closed.finished) == (1, 1, True)
        assert closed.stop_time is not None
        score = monitor.task
        assert score != convert and _task(monitor, score).total == 3  # 1 graph x 3 images
        for _ in range(3):
            monitor.advance()
        assert _task(monitor, score).completed == 3
        monitor.phase("keep the most sensitive nodes", 6)  # a bound: 6 graphs at most
        bound = monitor.task
        assert _task(monitor, bound).total == 18
        assert _task(monitor, score).stop_time is not None and _task(monitor, score).total == 3
        for _ in range(7):
            monitor.advance()
        assert _task(monitor, bound).stop_time is None and not _task(monitor, bound).finished
        monitor.phase("convert with 2 node(s) kept", None)
        shrunk = _task(monitor, bound)  # 7 images scored of the 18 bounded: the phase ends at 7 of 7
        assert (shrunk.total, shrunk.completed, shrunk.finished) == (7, 7, True)
        assert shrunk.stop_time is not None
        assert _task(monitor, monitor.task).stop_time is None  # the phase under way is not stopped
        assert [task.description for task in monitor.progress.tasks] == [
            "convert every node to INT8",
            "score all-INT8",
            "keep the most sensitive nodes",
            "convert with 2 node(s) kept",
        ]
    # the final render, one row per phase: title, bar, images done of the total, time spent, "ETA", time left
    rows = {line.split(" ━")[0].rstrip(): line.split() for line in out.file.getvalue().splitlines() if line.strip()}
    assert list(rows) == [task.description for task in monitor.progress.tasks]
    assert all("images" in row and "ETA" in row for row in rows.values())
    assert rows["score all-INT8"][-5:-3] == ["3/3", "images"]
    assert rows["keep the most sensitive nodes"][-5:-3] == ["7/7", "images"]
    unknown = rows["convert with 2 node(s) kept"]
    assert unknown[-4] == "0/?" and unknown[-1] == "ETA"  # nothing to estimate from


def test_the_card_records_the_budget_the_figures_the_nodes_kept_and_every_trial() -> None:
    flags = ["--keep-fp32", "^/dec/resize$", "--keep-fp32", "^/enc/conv1$"]
    record = card_record(kept_two(), "--val build/shapes (val split, 4 images)", flags)
    assert record == {
        "budget": {"max_miou_drop_points": 0.5, "max_class_iou_drop_points": None, "max_disagreement_percent": None},
        "measured_on": "--val build/shapes (val split, 4 images)",
        "fp32_miou": 0.9245,
        "miou": 0.9204,
        "miou_drop_points": 0.41,
        "disagreement": 0.009,
        "all_reduced": {"miou": 0.8845, "miou_drop_points": 4.0, "disagreement": 0.061},
        "kept": ["/dec/resize", "/enc/conv1"],
        "kept_in": "FP16",
        "rebuild_flags": flags,
        "sensitivity": [
            {"node": node, "op": op, "miou": miou, "miou_drop_points": drop, "disagreement": changed}
            for node, op, miou, drop, changed in SENSITIVITY
        ],
        "trials": [
            {"kept": 0, "converted": True, "miou": 0.8845, "miou_drop_points": 4.0, "disagreement": 0.061},
            {"kept": 1, "converted": False, "miou": 0.9115, "miou_drop_points": 1.3, "disagreement": 0.02},
            {"kept": 2, "converted": False, "miou": 0.921, "miou_drop_points": 0.35, "disagreement": 0.008},
            {"kept": 2, "converted": True, "miou": 0.9204, "miou_drop_points": 0.41, "disagreement": 0.009},
        ],
        "search_seconds": 12.3,
    }
    assert json.loads(json.dumps(record)) == record  # the card is JSON


def test_the_card_records_a_pixel_budget_without_labels() -> None:
    unlabelled = TrialScore(miou=None, miou_drop=None, disagreement=0.0123456789)
    result = kept_two(
        precision="int8-cpu",
        budget=Budget(max_disagreement=0.015),
        reference_miou=None,
        all_reduced=TrialScore(None, None, 0.05),
        sensitivities=[Sensitivity("/dec/resize", "Resize", TrialScore(None, None, 0.03))],
        trials=[Trial((), TrialScore(None, None, 0.05), converted=True)],
        kept=(),
        final=unlabelled,
    )
    record = card_record(result, "the 4 --calib images", [])
    assert record["budget"] == {
        "max_miou_drop_points": None,
        "max_class_iou_drop_points": None,
        "max_disagreement_percent": 1.5,
    }
    assert (record["fp32_miou"], record["miou"], record["miou_drop_points"]) == (None, None, None)
    assert record["disagreement"] == 0.012346
    assert (record["kept"], record["kept_in"], record["rebuild_flags"]) == ([], "FP32", [])
    assert record["sensitivity"] == [
        {"node": "/dec/resize", "op": "Resize", "miou": None, "miou_drop_points": None, "disagreement": 0.03}
    ]
    assert record["trials"] == [
        {"kept": 0, "converted": True, "miou": None, "miou_drop_points": None, "disagreement": 0.05}
    ]


def test_node_names_with_brackets_are_printed_as_they_are_not_read_as_markup() -> None:
    """A user's module names can hold [ ] (rich markup's brackets): the table and the sentence keep them."""
    name = "/blocks[0]/conv[bold]"
    renamed = [replace(item, node=name) if item.node == "/dec/resize" else item for item in kept_two().sensitivities]
    result = kept_two(
        sensitivities=renamed,
        units=tuple(name if unit == "/dec/resize" else unit for unit in UNITS),
        trials=[
            replace(trial, kept=tuple(name if k == "/dec/resize" else k for k in trial.kept))
            for trial in kept_two().trials
        ],
        kept=(name, "/enc/conv1"),
    )
    text = printed(result)
    assert tables(text)["sensitivity:"][0][1] == name
    assert text.splitlines()[-1] == why_line(result) and name in why_line(result)


def _by_class(miou_drop: float, star_drop: float) -> TrialScore:
    """A score on a labelled set of three classes whose mean hides the star's loss."""
    drops = {"background": 0.0, "star": star_drop, "ring": 3 * miou_drop - star_drop}
    reference = {"background": 0.98, "star": 0.90, "ring": 0.8935}
    ious = {name: reference[name] - drops[name] / 100 for name in drops}
    return TrialScore(REFERENCE - miou_drop / 100, miou_drop, 0.01, class_ious=ious, class_drops=drops)


def test_a_class_budget_prints_and_records_every_class_and_ranks_the_nodes_by_their_worst_class() -> None:
    budget = Budget(max_miou_drop=0.5, max_class_iou_drop=1.0)
    cheap_for_the_mean, costly_mean = _by_class(0.10, 2.50), _by_class(0.45, 0.40)
    assert budget.sensitivity(cheap_for_the_mean) > budget.sensitivity(costly_mean)  # 2.5x vs 0.9x a budget
    assert Budget(max_miou_drop=0.5).sensitivity(cheap_for_the_mean) < Budget(max_miou_drop=0.5).sensitivity(
        costly_mean
    )
    final, all_int8 = _by_class(0.20, 0.60), _by_class(0.30, 1.80)
    result = kept_two(
        budget=budget,
        all_reduced=all_int8,
        reference_class_ious={"background": 0.98, "star": 0.90, "ring": 0.8935},
        sensitivities=[
            Sensitivity("/dec/resize", "Resize", cheap_for_the_mean),
            Sensitivity("/enc/conv1", "Conv", costly_mean),
        ],
        trials=[Trial((), all_int8, converted=True), Trial(("/dec/resize",), final, converted=True)],
        kept=("/dec/resize",),
        final=final,
    )
    text = printed(result)
    assert "IoU per class: FP32 and the graph written" in text
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in text.splitlines()
            if line.startswith("│") and line.split("│")[1].strip() in ("background", "star", "ring")}  # fmt: skip
    assert rows["star"] == ["90.00 %", "89.40 %", "+0.60", "yes"]
    assert "star +2.50" in text  # the sensitivity table's worst class column
    line = why_line(result)
    assert (
        "its worst class (star) loses 0.60 IoU points" in line and "(star) loses 1.80 IoU points, over budget" in line
    )
    record = card_record(result, "--val x", [])
    assert record["budget"]["max_class_iou_drop_points"] == 1.0
    assert record["worst_class"] == "star" and record["worst_class_drop_points"] == 0.6
    assert record["class_iou"]["star"] == {"fp32": 0.9, "graph": 0.894, "drop_points": 0.6}
    assert record["all_reduced"]["worst_class_drop_points"] == 1.8
    assert not budget.met(all_int8) and Budget(max_miou_drop=0.5).met(all_int8)  # the mean alone lets star fall
