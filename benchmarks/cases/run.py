"""A whole run: every case of a suite in turn through one `Runner`, and the run record results.json keeps."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TextIO

from segbench.cases.artifacts import ExportCache
from segbench.cases.preflight import Checked, preflight
from segbench.cases.runner import Runner
from segbench.cases.suite import Suite


def run_suite(
    suite: Suite,
    *,
    cache: Path,
    log: TextIO | None = None,
    dataset: Path | None = None,
    progress: Any = None,
    checked: Checked | None = None,
    generated: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run every case; returns the run record (environment, settings, cases) that report.py writes."""
    from segbench.measure.machine import OtherLoad, environment
    from segbench.report.results import add_speedups

    checked = checked or preflight(suite, dataset)
    photo_path = checked.photo_path
    started = time.time()
    other_load = OtherLoad()
    runner = Runner(suite, checked.photo, ExportCache(cache, log), dataset, clips=checked.clips)
    cases = []
    for case in suite.cases:
        if progress is not None:
            clip = checked.clips.get(case.clip) if case.clip is not None else None
            progress.start_case(case, total=len(clip.frames) if clip is not None else None)
            runner.on_sample = progress.sample
        result = runner.run_case(case)
        cases.append(result)
        if progress is not None:
            progress.finish_case(result)
    add_speedups(cases)
    return {
        "segbench_version": 1,
        "suite": {
            "name": suite.name,
            "description": suite.description,
            "file": str(suite.source) if suite.source else None,
            "image": str(photo_path),
            "warmup": suite.warmup,
            "iterations": suite.iterations,
            "min_seconds": suite.min_seconds,
            "seconds": suite.seconds,
            "threads": suite.threads,
            "camera_fps": suite.camera_fps,
            "camera_seconds": suite.camera_seconds,
            "notes": list(suite.notes),
            "generated": generated or [],
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": time.time() - started,
        "environment": {**environment(), "other_processes_cpu": round(other_load.share(), 4)},
        "references": runner.reference_scores(),
        "cases": cases,
    }
