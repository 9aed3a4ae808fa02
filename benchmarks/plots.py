"""PNG plots of a run: latency distribution per case, stacked per-stage bars, speed-up over the baseline.

Drawn on matplotlib `Figure` objects (the Agg canvas, no pyplot and no display), written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segbench.measure import STAGES
from segrt.meta import atomic_write


def _name(case: dict[str, Any]) -> str:
    return f"{case['label']} | {case['pipeline']} | {case['batch']}x{case['height']}x{case['width']}"


def _figure(rows: int) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(10, 1.2 + 0.38 * max(rows, 1)), layout="constrained")


def _save(figure: Any, path: Path) -> Path:
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))


def write_plots(out: Path, cases: list[dict[str, Any]]) -> list[Path]:
    """Write latency.png, stages.png and speedup.png for the measured cases; returns the paths written."""
    ok = [c for c in cases if c["status"] == "ok"]
    if not ok:
        return []
    return [
        latency_plot(out / "latency.png", ok),
        stages_plot(out / "stages.png", ok),
        speedup_plot(out / "speedup.png", ok),
    ]


def latency_plot(path: Path, cases: list[dict[str, Any]]) -> Path:
    """Box plot of the e2e samples per frame (ms per call / N), one row per case."""
    figure = _figure(len(cases))
    axes = figure.add_subplot()
    samples = [np.asarray(c["timing"]["e2e_samples_ms"]) / c["batch"] for c in cases]
    axes.boxplot(samples, orientation="horizontal", whis=(1, 99), showfliers=True, flierprops={"markersize": 3})
    axes.set_yticks(range(1, len(cases) + 1), [_name(c) for c in cases], fontsize=8)
    axes.invert_yaxis()
    spread = max(s.max() for s in samples) / max(min(s.min() for s in samples), 1e-9)
    if spread > 30:
        axes.set_xscale("log")
    axes.set_xlabel("e2e ms per frame (uint8 array in memory -> labels in memory); whiskers p1..p99")
    axes.set_title("Latency distribution per case")
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def stages_plot(path: Path, cases: list[dict[str, Any]]) -> Path:
    """Stacked bars of the mean ms per frame spent in each stage; the bars' length is the e2e mean."""
    from matplotlib import colormaps

    figure = _figure(len(cases))
    axes = figure.add_subplot()
    names = [n for n in STAGES if any(n in c["timing"]["stages"] for c in cases)]
    names += sorted({n for c in cases for n in c["timing"]["stages"]} - set(names))
    palette = colormaps["tab10"]
    colours = {name: ("#bbbbbb" if name == "other" else palette(i)) for i, name in enumerate(STAGES)}
    left = np.zeros(len(cases))
    rows = np.arange(len(cases))
    for name in names:
        widths = np.array([c["timing"]["stages"].get(name, {}).get("mean", 0.0) / c["batch"] for c in cases])
        axes.barh(rows, np.maximum(widths, 0.0), left=left, label=name, color=colours.get(name))
        left += np.maximum(widths, 0.0)
    axes.set_yticks(rows, [_name(c) for c in cases], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("mean ms per frame, by stage (pre, h2d, compute/infer, d2h, post, other)")
    axes.set_title("Where the time goes")
    axes.legend(fontsize=8, loc="lower right")
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def speedup_plot(path: Path, cases: list[dict[str, Any]]) -> Path:
    """Speed-up of each case's e2e p50 over the pytorch-eager baseline of the same model and shape."""
    figure = _figure(len(cases))
    axes = figure.add_subplot()
    values = [c.get("speedup", {}).get("p50", np.nan) for c in cases]
    rows = np.arange(len(cases))
    axes.barh(rows, values, color=["#999999" if c["backend"] == "pytorch-eager" else "#4c72b0" for c in cases])
    for row, value in zip(rows, values, strict=True):
        if np.isfinite(value):
            axes.text(value, row, f" {value:.2f}x", va="center", fontsize=8)
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_yticks(rows, [_name(c) for c in cases], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("speed-up over pytorch-eager (e2e p50, same model, batch, image size, run)")
    axes.set_title("Speed-up over the PyTorch pipeline")
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)
