"""`segbench compare A B`: two runs side by side (before/after a change, or two machines)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segbench.report.figures import markdown_table, ms, percent
from segbench.report.markdown import dataset_miou, machine_line, miou_text, tail_figures, tail_mib_text, tail_text

ENVIRONMENT_KEYS = ("cpu", "cores_usable", "gpu", "versions", "git", "onnxruntime_providers")
HEADER = ["case", "A e2e p50 ms", "B e2e p50 ms", "B/A", "A speed-up", "B speed-up", "A agreement", "B agreement"]

Case = dict[str, Any]
Cell = Callable[[Case | None], str]  # one run's cell of a column, from its case (None: not in that run)


def header(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return HEADER + [f"{side} {title}" for title, _ in optional_columns(a, b) for side in "AB"]


def rows(a: dict[str, Any], b: dict[str, Any]) -> list[list[str]]:
    """One row per case id found in either run: both p50s, B/A, both speed-ups and agreements, then
    both runs' cells of each optional column."""
    by_id_a = {c["id"]: c for c in a["cases"]}
    by_id_b = {c["id"]: c for c in b["cases"]}
    ids = list(by_id_a) + [i for i in by_id_b if i not in by_id_a]
    columns = optional_columns(a, b)
    table = []
    for case_id in ids:
        left, right = by_id_a.get(case_id), by_id_b.get(case_id)
        p50_a, p50_b = _p50(left), _p50(right)
        ratio = f"{p50_b / p50_a:.2f}" if p50_a and p50_b else "—"
        table.append(
            [
                case_id,
                _cell(left, ms(p50_a)),
                _cell(right, ms(p50_b)),
                ratio,
                _speedup(left),
                _speedup(right),
                _agreement(left),
                _agreement(right),
                *(cell(case) for _, cell in columns for case in (left, right)),
            ]
        )
    return table


def optional_columns(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Cell]]:
    """(title, cell) of each column group that some case of either run has figures for, in OPTIONAL's order."""
    cases = [*a["cases"], *b["cases"]]
    return [column for has, group in OPTIONAL if any(has(case) for case in cases) for column in group]


def _measured(text: Callable[[Case], str]) -> Cell:
    """A report.py formatter as a compare cell: "—" for a case not in the run or not measured."""
    return lambda case: text(case) if case and case["status"] == "ok" else "—"


def _has_tail(case: Case) -> bool:
    figures = tail_figures(case)
    return figures.get("share") is not None or figures.get("bytes_1080p") is not None


def _p50(case: dict[str, Any] | None) -> float | None:
    return case["timing"]["e2e"]["p50"] if case and case["status"] == "ok" else None


def _cell(case: dict[str, Any] | None, text: str) -> str:
    if case is None:
        return "not in run"
    return text if case["status"] == "ok" else case["status"]


def _speedup(case: dict[str, Any] | None) -> str:
    value = (case or {}).get("speedup", {}).get("p50")
    return "—" if value is None else f"{value:.2f}x"


def _agreement(case: dict[str, Any] | None) -> str:
    if not case or case["status"] != "ok":
        return "—"
    return percent(case["accuracy"]["pixel_agreement"], 2)


def _flicker(case: dict[str, Any] | None) -> str:
    if not case or case["status"] != "ok" or not case.get("clip"):
        return "—"
    return percent(case["accuracy"]["clip"]["flicker"], 2)


# Column groups shown only where either run has their figures (runs recorded before the tail figures have none):
# (does this case have them, [(title, cell)]).
OPTIONAL: list[tuple[Callable[[Case], bool], list[tuple[str, Cell]]]] = [
    (lambda case: dataset_miou(case) is not None, [("mIoU", _measured(miou_text))]),
    (lambda case: bool(case.get("clip")), [("flicker", _flicker)]),
    (_has_tail, [("tail", _measured(tail_text)), ("tail MiB @1080p", _measured(tail_mib_text))]),
]


def environment_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    env_a, env_b = a["environment"], b["environment"]
    return [
        f"{key}: A {env_a.get(key)} / B {env_b.get(key)}"
        for key in ENVIRONMENT_KEYS
        if env_a.get(key) != env_b.get(key)
    ]


def markdown(a: dict[str, Any], b: dict[str, Any], name_a: str, name_b: str) -> str:
    lines = [
        f"# segbench compare: A = {name_a}, B = {name_b}",
        "",
        f"- A: {a['suite']['name']}, {a['started']}, {machine_line(a['environment'])}",
        f"- B: {b['suite']['name']}, {b['started']}, {machine_line(b['environment'])}",
        "",
        "e2e p50: ms per call from a uint8 array in memory to labels in memory. B/A below 1: B is faster. "
        "flicker (cases over a labelled clip): label changes between consecutive frames where the truth stays. "
        "mIoU: on the labelled set's val split. tail: the fused graph's last steps' (or the baseline's post stage's) "
        "share of the call, and the MiB they write for one 1080x1920 frame, as each run's report.md defines them.",
        "",
    ]
    lines += [*markdown_table(header(a, b), rows(a, b)), ""]
    differences = environment_differences(a, b)
    if differences:
        lines += ["Differences in the environment:", ""] + [f"- {d}" for d in differences] + [""]
    return "\n".join(lines)


def console_table(a: dict[str, Any], b: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="segbench compare (B/A below 1: B is faster)")
    for name in header(a, b):
        table.add_column(name, justify="left" if name == "case" else "right", overflow="fold")
    for row in rows(a, b):
        table.add_row(*row)
    return table
