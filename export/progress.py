"""What an export shows while it runs: a spinner per step, then its time and result; a summary at the end. Titles,
results and notes are shown as text: a path or a library's words in them are never read as rich markup."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text


@dataclass
class Report:
    """The steps a run did with their time and figures, and the files it wrote with their sizes.

    `console` is a rich Console: the CLI's on stderr, a quiet or file-backed one for callers of
    `segexport.export` that want no output (segbench logs each export to a file).
    """

    console: Any
    steps: list[tuple[str, float, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @classmethod
    def quiet(cls) -> Report:
        from rich.console import Console

        return cls(Console(quiet=True))

    @contextmanager
    def step(self, title: str) -> Iterator[dict[str, str]]:
        """Show a spinner while the block runs, then a line with its time and `detail["text"]`."""
        detail = {"text": ""}
        start = time.perf_counter()
        with self.console.status(Text(f"{title} ...")):
            yield detail
        self.done(title, time.perf_counter() - start, detail["text"])

    def done(self, title: str, seconds: float, text: str) -> None:
        """Record and show a step that was timed elsewhere (an engine build reports its own time)."""
        self.steps.append((title, seconds, text))
        line = Text.assemble(("✓", "green"), f" {title} ", (f"({seconds:.1f} s)", "dim"), f" {text}")
        self.console.print(line, highlight=False, soft_wrap=True)

    def note(self, text: str) -> None:
        """One line that is not a step: something the user must know (an engine left unchecked)."""
        self.console.print(Text.assemble(("!", "yellow"), f" {text}"), highlight=False, soft_wrap=True)

    def add_file(self, path: Path) -> None:
        self.files.append(path)

    def print_summary(self) -> None:
        from rich.table import Table

        steps = Table(title="segexport summary", title_justify="left")
        steps.add_column("step", overflow="fold")
        steps.add_column("time", justify="right", no_wrap=True)
        steps.add_column("result", overflow="fold")
        for title, seconds, text in self.steps:
            steps.add_row(Text(title), f"{seconds:.1f} s", Text(text))
        folders = {path.parent for path in self.files}
        where = f" in {folders.pop()}" if len(folders) == 1 else ""
        files = Table(show_header=True)
        files.add_column(Text(f"file written{where}"), overflow="fold")
        files.add_column("size", justify="right")
        for path in self.files:
            files.add_row(Text(path.name if where else str(path)), file_size(path.stat().st_size))
        self.console.print(steps)
        self.console.print(files)


def file_size(count: float) -> str:
    """1536 -> "1.5 KiB": binary units, named as such."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return str(count)
