"""The report's "speed beside accuracy" table: for each model with runs chosen against an accuracy budget, its
FP32 graph, its all-reduced graph and each budgeted graph on one backend, latency and mIoU side by side."""

from __future__ import annotations

from typing import Any

from segbench.report.figures import markdown_table, ms, percent


def _key(case: dict[str, Any]) -> tuple[Any, ...]:
    return (case["label"], case["backend"], case["fused"], case["batch"], case["height"], case["width"])


def trade_lines(record: dict[str, Any]) -> list[str]:
    """Markdown lines (none when no run had a budget)."""
    ok = [c for c in record["cases"] if c["status"] == "ok" and c["backend"] != "pytorch-eager"]
    budgeted = [c for c in ok if c.get("max_miou_drop") is not None]
    if not budgeted:
        return []
    header = ["model", "pipeline", "N x H x W", "e2e p50 ms", "min", "vs FP32", "mIoU", "drop (points)",
              "nodes kept", "chosen on", "search s"]  # fmt: skip
    rows = []
    for group in dict.fromkeys(_key(c) for c in budgeted):
        cases = [c for c in ok if _key(c) == group and c["precision"] in ("fp32", *{b["precision"] for b in budgeted})]
        fp32 = next((c for c in cases if c["precision"] == "fp32"), None)
        for case in sorted(cases, key=lambda c: (c["precision"] != "fp32", -(c.get("max_miou_drop") or 1e9))):
            rows.append(_row(case, fp32, ms, percent))
    lines = ["## Speed beside accuracy: graphs chosen against an mIoU budget", ""]
    lines += [*markdown_table(header, rows), ""]
    lines += [
        "Each budgeted graph is what `segexport --max-miou-drop POINTS --val BUDGET_SET` chose: the fewest nodes "
        "kept in higher precision whose graph loses at most POINTS mIoU against FP32 on the budget set (another "
        "labelled set than the one scored here, so the drop above is measured on images the choice never saw). "
        "**vs FP32** is the FP32 graph's e2e p50 over the case's, same backend and shape, same run; **min** is "
        "the fastest call, the figure other processes on the machine disturb least.",
        "",
    ]
    return lines


def _row(case: dict[str, Any], fp32: dict[str, Any] | None, ms: Any, percent: Any) -> list[str]:
    dataset = case["accuracy"].get("dataset") or {}
    miou = dataset.get("miou")
    reference = ((fp32 or {}).get("accuracy", {}).get("dataset") or {}).get("miou")
    drop = "—" if miou is None or reference is None else f"{100 * (reference - miou):+.2f}"
    p50 = case["timing"]["e2e"]["p50"]
    ratio = "—" if fp32 is None else f"{fp32['timing']['e2e']['p50'] / p50:.2f}x"
    budget = case.get("accuracy_budget") or {}
    kept = budget.get("kept")
    kept_text = "—" if kept is None else (f"{len(kept)}: {', '.join(kept)}" if kept else "none")
    chosen_on = budget.get("measured_on") or "—"
    seconds = budget.get("search_seconds")
    return [
        case["label"],
        case["pipeline"],
        f"{case['batch']}x{case['height']}x{case['width']}",
        ms(p50),
        ms(case["timing"]["e2e"].get("min")),
        ratio,
        percent(miou, 2),
        drop,
        kept_text,
        chosen_on,
        "—" if seconds is None else f"{seconds:.0f}",
    ]
