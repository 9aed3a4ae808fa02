"""Figures as the markdown and the terminal show them: milliseconds, shares, MiB, a markdown table."""

from __future__ import annotations

import math
from typing import Any


def fmt(value: Any, digits: int = 1, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}{suffix}"


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return fmt(value, 2 if value < 10 else 1)


def percent(share: float | None, digits: int = 1) -> str:
    return "—" if share is None else f"{100 * share:.{digits}f} %"


def mib(size: int | None) -> str:
    return "—" if size is None else fmt(size / 2**20, 1)


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines
