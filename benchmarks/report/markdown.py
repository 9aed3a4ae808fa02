"""report.md: a run's tables, notes and definitions, and the tables the terminal shows at its end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segbench.cases.suite_keys import BASELINE
from segbench.measure.timing import MIN_ROUNDS, STAGES
from segbench.report.definitions import INCLUDES
from segbench.report.figures import fmt, markdown_table, mib, ms, percent
from segbench.report.stream import stream_lines
from segbench.report.trade import trade_lines
from segbench.scoring.accuracy import worst_class
from segbench.scoring.temporal import FLICKER_WORDS

BUSY_MACHINE = 0.10  # share of the CPU taken by other processes above which the report warns


def summary_row(case: dict[str, Any]) -> dict[str, str]:
    """The headline figures of one measured case, formatted."""
    e2e = case["timing"]["e2e"]
    host = case["resources"]["host"]
    device = case["resources"]["device"]
    energy = device.get("energy_per_frame_j", device.get("tegrastats", {}).get("energy_per_frame_j"))
    return {
        "model": case["label"],
        "pipeline": case["pipeline"],
        "N x H x W": f"{case['batch']}x{case['height']}x{case['width']}",
        "network H x W": size_text(case.get("network_input")),
        "e2e p50 ms": ms(e2e["p50"]),
        "p90": ms(e2e["p90"]),
        "p99": ms(e2e["p99"]),
        "mean ± std": f"{ms(e2e['mean'])} ± {ms(e2e['std'])}",
        "FPS": fmt(e2e["fps"], 2 if e2e["fps"] < 10 else 1),
        "samples": str(e2e["count"]),
        "network p50 ms": ms(case["network"].get("p50_ms")),
        "outside network": outside_text(case),
        "tail": tail_text(case),
        "tail MiB @1080p": tail_mib_text(case),
        "confidence +ms": confidence_text(case),
        "speed-up": fmt(case["speedup"].get("p50"), 2, "x"),
        "agreement": percent(case["accuracy"]["pixel_agreement"], 2),
        "mIoU": miou_text(case),
        "peak RSS MiB (added)": f"{host['rss_peak_mb']:.0f} ({host['rss_added_mb']:+.0f})",
        "J/frame": fmt(energy, 3),
    }


def tail_figures(case: dict[str, Any]) -> dict[str, Any]:
    """The case's tail figures: {} in a run recorded before them, {"absent": why} where none were measured."""
    return case.get("tail") or {}


def tail_text(case: dict[str, Any]) -> str:
    """The tail's share of the call (for the baseline: its post stage's share of the mean)."""
    return percent(tail_figures(case).get("share"))


def tail_mib_text(case: dict[str, Any]) -> str:
    """The bytes the tail writes for one 1080x1920 frame, in MiB."""
    return mib(tail_figures(case).get("bytes_1080p"))


def confidence_text(case: dict[str, Any]) -> str:
    """A +confidence case's cost of its confidence map: ms over the labels-only graph, alternated (segbench.measure.
    confidence), and that share of the call; then its branch alone beside the labels' tail, alternated, in ms."""
    cost = case.get("confidence") or {}
    if "cost_ms" not in cost:
        return "—"
    branch = tail_figures(case).get("confidence_branch") or {}
    alone = f"; branch {branch['p50_ms']:.1f} vs tail {branch['labels_tail_p50_ms']:.1f}" if branch else ""
    return f"{cost['cost_ms']:+.2f} ({percent(cost['share'])}){alone}"


def dataset_miou(case: dict[str, Any]) -> float | None:
    """The case's mIoU on the labelled set's val split; None without one (and for a case over a clip)."""
    return ((case.get("accuracy") or {}).get("dataset") or {}).get("miou")


def miou_text(case: dict[str, Any]) -> str:
    return percent(dataset_miou(case))


def outside_text(case: dict[str, Any]) -> str:
    """The share of the call outside the network where it is told apart from zero, else "≈0 %" (never negative)."""
    outside = case.get("outside_network")
    if outside is None:  # a run recorded before the paired measurement: one share, no interval
        share = case.get("outside_network_share")
        return percent(share) if share is None or share > 0 else "≈0 %"
    return percent(outside["share"]) if told_apart(outside) else "≈0 %"


def told_apart(outside: dict[str, Any]) -> bool:
    """Whether the share's interval lies above zero over enough rounds (a record from before MIN_ROUNDS included)."""
    return bool(outside["resolved"]) and outside["rounds"] >= MIN_ROUNDS


def outside_notes(cases: list[dict[str, Any]]) -> list[str]:
    """One line per case shown as "≈0 %": the share's interval, and why the bare network can be the slower one."""
    lines = []
    for case in cases:
        alternated, e2e = case["network"].get("alternated_e2e_p50_ms"), case["timing"]["e2e"]["p50"]
        if alternated and not 0.8 <= alternated / e2e <= 1.25:
            lines.append(
                f"- {case['label']} {case['pipeline']} at {case['batch']}x{case['height']}x{case['width']}: while the "
                f"bare network was timed, the whole call's p50 was {ms(alternated)} ms ({ms(e2e)} ms in the table): "
                "the machine's load changed between the two; the network p50 and the outside share come from the "
                "alternated blocks, which saw one load."
            )
        outside = case.get("outside_network")
        if outside is None or told_apart(outside):
            continue
        network, whole = ms(case["network"].get("p50_ms")), ms(alternated or e2e)
        where = f"- {case['label']} {case['pipeline']} at {case['batch']}x{case['height']}x{case['width']}"
        if outside["rounds"] < MIN_ROUNDS:
            lines.append(too_few_rounds_note(where, outside["rounds"], whole, network))
        elif outside["high"] < 0:
            lines.append(
                f"{where}: outside network ≈0 %: the bare --no-fuse graph (p50 {network} ms) ran slower than the whole "
                f"pipeline (p50 {whole} ms) over {outside['rounds']} rounds of alternating blocks, so at this "
                "precision it is not the same computation (AutoCast and quantization choose their nodes per graph) "
                "and the steps around the network cannot be told apart from it."
            )
        else:
            spread = 100 * (outside["high"] - outside["low"]) / 2
            lines.append(
                f"{where}: outside network ≈0 %: the whole call (p50 {whole} ms) and the bare network (p50 {network} "
                f"ms) differ by less than the spread of their times over {outside['rounds']} rounds of alternating "
                f"blocks (the share's 95 % interval reaches zero; half its width is {spread:.1f} points): the steps "
                "around the network cost less than that spread."
            )
    return lines


def too_few_rounds_note(where: str, rounds: int, whole: str, network: str) -> str:
    """Why a share from too few rounds of alternating blocks is shown as "≈0 %": it was not measured apart from zero."""
    counted = f"{rounds} round" + ("" if rounds == 1 else "s")
    return (
        f"{where}: outside network ≈0 %, not measured apart from zero: the whole call (p50 {whole} ms) and the bare "
        f"network (p50 {network} ms) were timed over only {counted} of alternating blocks, fewer than the "
        f"{MIN_ROUNDS} an interval needs; raise the suite's iterations or min_seconds for a share."
    )


def size_text(size: list[int] | None) -> str:
    return "x".join(map(str, size)) if size else "—"


def network_size_notes(cases: list[dict[str, Any]]) -> list[str]:
    """One line per model and image size whose pipelines ran their networks at different sizes.

    torchvision's preset resizes the shorter side (520x543 for a 612x640 photo) where the
    exported graph resizes to its fixed input (520x520): the speed-up then includes that.
    """
    groups: dict[tuple[Any, ...], dict[tuple[int, ...], list[str]]] = {}
    for case in cases:
        if case.get("network_input"):
            key = (case["label"], case["batch"], case["height"], case["width"])
            groups.setdefault(key, {}).setdefault(tuple(case["network_input"]), []).append(case["pipeline"])
    lines = []
    for (label, batch, height, width), by_size in groups.items():
        if len(by_size) < 2:
            continue
        smallest = min(h * w for h, w in by_size)
        described = "; ".join(
            f"{size_text(list(size))}"
            + (f" (+{100 * (size[0] * size[1] / smallest - 1):.1f} % pixels)" if size[0] * size[1] > smallest else "")
            + f": {', '.join(pipelines)}"
            for size, pipelines in sorted(by_size.items(), key=lambda item: -item[0][0] * item[0][1])
        )
        lines.append(
            f"- {label} at {batch}x{height}x{width}, the networks ran at different sizes ({described}); "
            "a speed-up between them includes that difference."
        )
    return lines


def stage_row(case: dict[str, Any], names: list[str]) -> list[str]:
    stages = case["timing"]["stages"]
    return [ms(stages[name]["mean"]) if name in stages else "" for name in names]


def used_stages(cases: list[dict[str, Any]]) -> list[str]:
    present = {name for c in cases for name in c["timing"]["stages"]}
    return [name for name in STAGES if name in present] + sorted(present - set(STAGES))


def markdown(record: dict[str, Any], plots: list[str]) -> str:
    """report.md: headline table, stages, per-class IoU, skipped cases, definitions, plots, environment."""
    suite, env = record["suite"], record["environment"]
    ok = [c for c in record["cases"] if c["status"] == "ok" and not c.get("clip")]
    lines = [f"# segbench: {suite['name']}", ""]
    if suite.get("description"):
        lines += [suite["description"], ""]
    lines += [f"{machine_line(env)}. Run {record['started']}, {record['duration_s'] / 60:.1f} min.", ""]
    lines += [f"Each case: {sampling_words(suite)}, on the photo {Path(suite['image']).name} resized to H x W "
              "(flipped copies fill a batch).", ""]  # fmt: skip
    generated = [f"{g['set']}: {'made for this run' if g['made_now'] else 'made earlier, reused'}"
                 for g in suite.get("generated", [])]  # fmt: skip
    notes = [*suite.get("notes", []), *generated]
    lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    failed = [c for c in record["cases"] if c["status"] == "failed"]
    if failed:
        lines += [f"**{len(failed)} of {len(record['cases'])} cases failed** (model, export, parity check or run): "
                  "see [Failed](#failed) below; segbench exited 1.", ""]  # fmt: skip
    if ok:
        rows = [summary_row(c) for c in ok]
        lines += ["## End to end (ms per call of N frames; see below for what each figure includes)", ""]
        lines += [*markdown_table(list(rows[0]), [list(r.values()) for r in rows]), ""]
        notes = network_size_notes(ok) + outside_notes(ok)
        lines += [*notes, ""] if notes else []
        lines += trade_lines(record)  # runs chosen against an accuracy budget: benchmarks/report/trade.py
        names = used_stages(ok)
        lines += ["## Where the time goes (mean ms per call, by stage)", ""]
        header = ["model", "pipeline", "N x H x W", *names, "e2e mean"]
        body = [
            [
                c["label"],
                c["pipeline"],
                f"{c['batch']}x{c['height']}x{c['width']}",
                *stage_row(c, names),
                ms(c["timing"]["e2e"]["mean"]),
            ]
            for c in ok
        ]
        lines += [*markdown_table(header, body), ""]
        absent = sorted({c["resources"]["device"]["absent"] for c in ok if "absent" in c["resources"]["device"]})
        if absent:
            lines += [f"Device memory, power and energy per frame: absent ({'; '.join(absent)}).", ""]
        lines += camera_lines(record)
        lines += per_class_lines(record)
    lines += video_lines(record)
    lines += stream_lines(record)
    lines += not_measured_lines(record["cases"])
    lines += ["## What each figure includes", "", INCLUDES, ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    lines += ["## Environment", "", "```", json.dumps(env, indent=1, default=str), "```", ""]
    return "\n".join(lines)


def sampling_words(suite: dict[str, Any]) -> str:
    """How long each case was sampled, as the suite asked: a count, a minimum time, a budget."""
    words = f"{suite['warmup']} warm-up calls, then at least {suite['iterations']} timed calls"
    if suite.get("min_seconds"):
        words += f" and at least {suite['min_seconds']:g} s of them"
    if suite.get("seconds"):
        words += f", stopped once {suite['seconds']:g} s are spent"
    return words


NOT_MEASURED = {
    "failed": ("Failed", "The model, its export, its parity check or its run failed: fix these (segbench exits 1)."),
    "skipped": ("Skipped", "This machine cannot run them (a backend, device or package it lacks)."),
}


def not_measured_lines(cases: list[dict[str, Any]]) -> list[str]:
    """The failed cases, then the skipped ones, each with its reason."""
    lines: list[str] = []
    for status, (title, words) in NOT_MEASURED.items():
        chosen = [c for c in cases if c["status"] == status]
        if chosen:
            lines += [f"## {title}", "", words, ""]
            lines += [*markdown_table(["case", "reason"], [[c["id"], c["reason"]] for c in chosen]), ""]
    return lines


def camera_lines(record: dict[str, Any]) -> list[str]:
    """The batch-1 cases with frames arriving at the suite's camera rate (segbench.measure.camera)."""
    cases = [c for c in record["cases"] if c["status"] == "ok" and "camera" in c]
    if not cases:
        return []
    first = cases[0]["camera"]
    lines = [
        f"## At camera rate: a frame every {1000 / first['fps']:.1f} ms ({first['fps']:g} FPS) for "
        f"{first['seconds']:g} s, the newest frame taken whenever the pipeline is free",
        "",
    ]
    header = [
        "model", "pipeline", "H x W", "frames", "processed", "dropped", "late", "deadline misses",
        "capture→labels p50 ms", "p99", "processed FPS",
    ]  # fmt: skip
    rows = []
    for case in cases:
        cam = case["camera"]
        latency = cam["capture_to_labels_ms"]
        rows.append(
            [
                case["label"],
                case["pipeline"],
                f"{case['height']}x{case['width']}",
                str(cam["frames_offered"]),
                str(cam["frames_processed"]),
                str(cam["frames_dropped"]),
                str(cam["frames_late"]),
                percent(cam["deadline_miss_share"]),
                ms(latency["p50"]),
                ms(latency["p99"]),
                f"{cam['processed_fps']:.1f}",
            ]
        )
    return [*lines, *markdown_table(header, rows), ""]


def per_class_lines(record: dict[str, Any]) -> list[str]:
    """Per-class IoU of the reference and of each pipeline that was scored on a labelled set."""
    lines: list[str] = []
    for label, reference in record.get("references", {}).items():
        columns: dict[str, dict[str, Any]] = {"FP32 PyTorch reference": reference}
        for case in record["cases"]:
            dataset = case.get("accuracy", {}).get("dataset") or {}
            if case["status"] == "ok" and case["label"] == label and "per_class_iou" in dataset:
                columns.setdefault(case["pipeline"], dataset)
        scored = {name: d for name, d in columns.items() if "per_class_iou" in d}
        if not scored:
            continue
        classes = list(next(iter(scored.values()))["per_class_iou"])
        images = next(iter(scored.values()))["images"]
        lines += [f"## {label}: IoU per class on the labelled set ({images} images)", ""]
        rows = [
            [name, *(percent(d["per_class_iou"].get(c)) for c in classes), percent(d["miou"]),
             worst_text(d, reference, name)]
            for name, d in scored.items()
        ]  # fmt: skip
        lines += [*markdown_table(["pipeline", *classes, "mIoU", "worst class vs reference"], rows), ""]
    return lines


def worst_text(scored: dict[str, Any], reference: dict[str, Any], name: str) -> str:
    """The class that lost most IoU against the FP32 reference and its drop in points ("star −3.40")."""
    found = None
    if name != "FP32 PyTorch reference":
        found = worst_class(scored["per_class_iou"], reference.get("per_class_iou") or {})
    return "—" if found is None else f"{found[0]} {-found[1]:+.2f}"


def clip_groups(cases: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The measured clip cases, by model and clip folder, in run order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for case in cases:
        if case["status"] == "ok" and case.get("clip"):
            groups.setdefault((case["label"], case["clip"]), []).append(case)
    return groups


def video_row(case: dict[str, Any]) -> dict[str, str]:
    """The headline figures of one case over a clip, formatted."""
    e2e, clip = case["timing"]["e2e"], case["accuracy"]["clip"]
    return {
        "model": case["label"],
        "pipeline": case["pipeline"],
        "e2e p50 ms": ms(e2e["p50"]),
        "p99": ms(e2e["p99"]),
        "FPS": fmt(e2e["fps"], 2 if e2e["fps"] < 10 else 1),
        "speed-up": fmt(case["speedup"].get("p50"), 2, "x"),
        "agreement": percent(case["accuracy"]["pixel_agreement"], 2),
        "mIoU over the clip": percent(clip["miou"]),
        "flicker": percent(clip["flicker"], 2),
        "flickering / steady pixels": f"{clip['flicker_changed_pixels']:,} / {clip['flicker_stable_pixels']:,}",
    }


def video_lines(record: dict[str, Any]) -> list[str]:
    """Per model and clip: latency, mIoU over the clip and flicker of every pipeline, then IoU per class."""
    lines: list[str] = []
    for (label, _), cases in clip_groups(record["cases"]).items():
        clip = cases[0]["video"]
        lines += [
            f"## On video: {label} over {Path(clip['folder']).name} ({clip['frames']} frames of "
            f"{clip['height']}x{clip['width']} at {clip['fps']:g} FPS, one frame per call, in order)",
            "",
            f"**flicker** = {FLICKER_WORDS}. e2e ms per frame; speed-up over {BASELINE} on the same frames; "
            "agreement with the FP32 PyTorch reference on the same frames.",
            "",
        ]
        rows = [video_row(c) for c in cases]
        lines += [*markdown_table(list(rows[0]), [list(r.values()) for r in rows]), ""]
        classes = list(cases[0]["accuracy"]["clip"]["per_class_iou"])
        body = [
            [c["pipeline"], *(percent(c["accuracy"]["clip"]["per_class_iou"].get(k)) for k in classes),
             percent(c["accuracy"]["clip"]["miou"])]
            for c in cases
        ]  # fmt: skip
        header = ["pipeline", *classes, "mIoU"]
        lines += [f"IoU per class over the clip ({label}):", "", *markdown_table(header, body), ""]
    return lines


def machine_line(env: dict[str, Any]) -> str:
    gpus = ", ".join(gpu_names(env.get("gpu", {}))) or "no GPU"
    commit = (env.get("git") or {}).get("commit", "unknown")[:10]
    dirty = " (uncommitted changes)" if (env.get("git") or {}).get("dirty") else ""
    line = f"{env['cpu']}, {env['cores_usable']} cores usable; {gpus}; commit {commit}{dirty}"
    other = env.get("other_processes_cpu")
    if other is not None:
        line += f"; other processes used {100 * other:.0f} % of the CPU during the run"
        if other > BUSY_MACHINE:
            line += " (**busy machine: these timings are inflated; rerun on a quiet one**)"
    return line


def gpu_names(gpu: dict[str, Any]) -> list[str]:
    """The GPUs NVML named; one whose name NVML refused is shown by its index."""
    devices = gpu.get("devices", [])
    if not isinstance(devices, list):  # the device count itself was refused
        return [f"GPUs unknown ({devices.get('absent', devices)})"]
    return [d["name"] if isinstance(d.get("name"), str) else f"GPU {d.get('index', '?')}" for d in devices]


def console_tables(record: dict[str, Any]) -> list[Any]:
    """The headline table for the terminal (rich), and one of the cases not measured, with the reasons."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"segbench {escape(record['suite']['name'])}: ms per call, e2e from uint8 array to labels")
    columns = ["model", "pipeline", "N x H x W", "e2e p50 ms", "p99", "FPS", "network p50 ms", "outside network",
               "speed-up", "agreement", "mIoU"]  # fmt: skip
    for name in columns:
        table.add_column(name, justify="left" if name in ("model", "pipeline") else "right", overflow="fold")
    for case in record["cases"]:
        if case["status"] == "ok" and not case.get("clip"):
            row = summary_row(case)
            table.add_row(*(escape(row[name]) for name in columns))
    tables = [table] if table.row_count else []
    for (label, folder), cases in clip_groups(record["cases"]).items():
        video = Table(title=f"on video: {escape(label)} over {escape(Path(folder).name)}, ms per frame; flicker = "
                            "label changes where the truth does not")  # fmt: skip
        rows = [video_row(c) for c in cases]
        for name in rows[0]:
            video.add_column(name, justify="left" if name in ("model", "pipeline") else "right", overflow="fold")
        for row in rows:
            video.add_row(*(escape(value) for value in row.values()))
        tables.append(video)
    for status, (title, _) in NOT_MEASURED.items():
        style = "bold red" if status == "failed" else "yellow"
        listed = Table(title=f"[{style}]{title.lower()}[/]: {escape(NOT_MEASURED[status][1])}")
        for name in ("case", "reason"):
            listed.add_column(name, overflow="fold")
        for case in record["cases"]:
            if case["status"] == status:
                listed.add_row(escape(case["id"]), escape(case["reason"]))
        tables += [listed] if listed.row_count else []
    return tables
