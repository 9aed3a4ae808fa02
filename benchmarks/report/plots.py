"""PNG plots of a run: latency distribution per case, stacked per-stage bars, speed-up over the baseline,
and for each model run over a labelled clip, its flicker and mIoU frame by frame.

Drawn on matplotlib `Figure` objects (the Agg canvas, no pyplot and no display), written atomically.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from segbench.measure.timing import STAGES
from segrt.meta import atomic_write


def _name(case: dict[str, Any]) -> str:
    return f"{case['label']} | {case['pipeline']} | {case['batch']}x{case['height']}x{case['width']}"


def _figure(rows: int) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(10, 1.2 + 0.38 * max(rows, 1)), layout="constrained")


def _save(figure: Any, path: Path) -> Path:
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))


def write_plots(out: Path, cases: list[dict[str, Any]]) -> list[Path]:
    """Write latency.png, stages.png and speedup.png for the measured photo cases, and video-<model>.png for each
    model and clip; returns the paths written."""
    ok = [c for c in cases if c["status"] == "ok" and not c.get("clip")]
    written = []
    if ok:
        written += [
            latency_plot(out / "latency.png", ok),
            stages_plot(out / "stages.png", ok),
            speedup_plot(out / "speedup.png", ok),
        ]
    clips: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for case in cases:
        if case["status"] == "ok" and case.get("clip"):
            clips.setdefault((case["label"], case["clip"]), []).append(case)
    for (label, folder), clip_cases in clips.items():
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{label}-{Path(folder).name}")
        written.append(video_plot(out / f"video-{slug}.png", clip_cases))
    return written


def video_plot(path: Path, cases: list[dict[str, Any]]) -> Path:
    """Flicker (top) and mIoU (bottom) of each pipeline frame by frame over one clip."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 6.5), layout="constrained")
    flicker_axes, miou_axes = figure.subplots(2, 1, sharex=True)
    for case in cases:
        clip = case["accuracy"]["clip"]
        flicker = [np.nan if v is None else 100 * v for v in clip["flicker_per_frame"]]
        miou = [np.nan if v is None else 100 * v for v in clip["miou_per_frame"]]
        name = (
            f"{case['pipeline']} (clip: {100 * (clip['flicker'] or 0):.2f} %, mIoU {100 * (clip['miou'] or 0):.1f} %)"
        )
        flicker_axes.plot(range(1, len(flicker) + 1), flicker, linewidth=1, label=name)
        miou_axes.plot(range(len(miou)), miou, linewidth=1, label=case["pipeline"])
    info = cases[0]["video"]
    flicker_axes.set_ylabel("flicker % (frame t vs t-1)")
    flicker_axes.set_title(
        f"{cases[0]['label']} over {Path(info['folder']).name} ({info['frames']} frames, "
        f"{info['height']}x{info['width']}): label changes where the ground truth does not"
    )
    flicker_axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside: spikes stay in view
    miou_axes.set_ylabel("mIoU % of the frame")
    miou_axes.set_xlabel(f"frame (at {info['fps']:g} FPS)")
    for axes in (flicker_axes, miou_axes):
        axes.grid(alpha=0.3)
    return _save(figure, path)


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
