"""`segbench compare A B`: two runs side by side (before/after a change, or two machines)."""

from __future__ import annotations

from typing import Any

from segbench.report import _table, machine_line, ms, percent

ENVIRONMENT_KEYS = ("cpu", "cores_usable", "gpu", "versions", "git", "onnxruntime_providers")


def has_video(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether either run went over a labelled clip: then the table has both runs' flicker too."""
    return any(case.get("clip") for case in [*a["cases"], *b["cases"]])


def header(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return HEADER + (["A flicker", "B flicker"] if has_video(a, b) else [])


def rows(a: dict[str, Any], b: dict[str, Any]) -> list[list[str]]:
    """One row per case id found in either run: both p50s, B/A, both speed-ups and agreements (and flicker)."""
    by_id_a = {c["id"]: c for c in a["cases"]}
    by_id_b = {c["id"]: c for c in b["cases"]}
    ids = list(by_id_a) + [i for i in by_id_b if i not in by_id_a]
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
                *([_flicker(left), _flicker(right)] if has_video(a, b) else []),
            ]
        )
    return table


HEADER = ["case", "A e2e p50 ms", "B e2e p50 ms", "B/A", "A speed-up", "B speed-up", "A agreement", "B agreement"]


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
        "flicker (cases over a labelled clip): label changes between consecutive frames where the truth stays.",
        "",
    ]
    lines += [*_table(header(a, b), rows(a, b)), ""]
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
