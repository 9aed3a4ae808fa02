"""The report's stream section: segrun's overlapped pipeline beside the serial loop over a clip
(segbench.measure.stream), per model and pipeline."""

from __future__ import annotations

from typing import Any

from segbench.report.figures import markdown_table, ms


def stream_lines(record: dict[str, Any]) -> list[str]:
    cases = [c for c in record["cases"] if c["status"] == "ok" and c.get("stream")]
    if not cases:
        return []
    header = ["model", "pipeline", "model alone: p50 ms (FPS)", "serial loop FPS (x model)",
              "segrun pipeline FPS (x model)", "capture to written p50 / p99 ms: serial", "pipeline"]  # fmt: skip
    body = []
    for case in cases:
        stream = case["stream"]
        model, serial, piped = stream["model"], stream["serial"], stream["pipeline"]
        body.append([
            case["label"], case["pipeline"], f"{ms(model['p50_ms'])} ({model['fps']:.1f})",
            f"{serial['fps']:.1f} ({serial['vs_model']:.2f}x)", f"{piped['fps']:.1f} ({piped['vs_model']:.2f}x)",
            f"{ms(serial['written_p50_ms'])} / {ms(serial['written_p99_ms'])}",
            f"{ms(piped['written_p50_ms'])} / {ms(piped['written_p99_ms'])}",
        ])  # fmt: skip
    words = cases[0]["stream"]["words"]
    return ["## Streams: segrun's pipeline beside the serial loop", "", f"{words}.", "",
            *markdown_table(header, body), ""]  # fmt: skip
