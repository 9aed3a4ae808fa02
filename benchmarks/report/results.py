"""One run directory: results.json (every raw sample and the environment), report.md, and the PNG plots.

Each file is written to a temporary name and renamed (segrt.meta.atomic_write);
results.json is written last, so a run that stops half way leaves none.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from segbench.cases.suite_keys import BASELINE
from segbench.report.markdown import markdown
from segrt.errors import SegError
from segrt.meta import atomic_write

RESULTS, REPORT = "results.json", "report.md"


def add_speedups(cases: list[dict[str, Any]]) -> None:
    """Give each measured case its speed-up over the baseline of the same model, batch and image size (or clip)."""
    baselines = {
        (c["label"], c["batch"], c["height"], c["width"], c.get("clip"), c["device"]): c
        for c in cases
        if c["status"] == "ok" and c["backend"] == BASELINE and not c.get("autograd")
    }
    for case in cases:
        if case["status"] != "ok":
            continue
        key = (case["label"], case["batch"], case["height"], case["width"], case.get("clip"))
        base = baselines.get((*key, case["device"])) or baselines.get((*key, "cpu"))
        if base is None:
            case["speedup"] = {"absent": f"no {BASELINE} baseline ran for this model and shape"}
        else:
            ratio = base["timing"]["e2e"]["p50"] / case["timing"]["e2e"]["p50"]
            case["speedup"] = {"over": base["id"], "p50": ratio}


def write_run(out: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """Write plots, report.md, then results.json into `out`; returns the results.json path."""
    from segbench.report.plots import write_plots

    out = Path(out)
    plots = write_plots(out, record["cases"])
    atomic_write(out / REPORT, lambda tmp: tmp.write_text(markdown(record, [p.name for p in plots])))
    text = json.dumps(_finite(record), indent=1, allow_nan=False, default=str)
    return atomic_write(out / RESULTS, lambda tmp: tmp.write_text(text + "\n"))


def _finite(value: Any) -> Any:
    """The record with NaN and infinity as null, so results.json is strict JSON any reader takes."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def load_run(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A run's record from its directory or its results.json."""
    path = Path(path)
    file = path / RESULTS if path.is_dir() else path
    try:
        record = json.loads(file.read_text())
    except FileNotFoundError:
        raise SegError(f"{file}: no such file; give a segbench run directory or its {RESULTS}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SegError(f"{file}: not a readable segbench {RESULTS} ({exc})") from None
    if not isinstance(record, dict) or "cases" not in record:
        raise SegError(f"{file}: not a segbench {RESULTS} (no cases)")
    return record
