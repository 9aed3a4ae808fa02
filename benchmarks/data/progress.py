"""A progress bar for long counted work (generating a labelled set), shared by segbench and the generators' commands,
and the way a generator's command ends (its one-line summary, or its error on one line).

The generators need only numpy and Pillow; rich draws the bar where it is installed, and
without it the work runs silently to its one-line summary.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from segrt.errors import SegError


@contextmanager
def counting(description: str, total: int, console: Any = None) -> Iterator[Callable[[int], None]]:
    """Yield `advance(n)`, which moves a bar of `total` items on by n; the bar is gone when the block ends."""
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    except ImportError:
        yield lambda count: None
        return
    from rich.console import Console
    from rich.markup import escape

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console if console is not None else Console(stderr=True),
    )
    with bar:
        task = bar.add_task(escape(description), total=total)
        yield lambda count: bar.advance(task, count)


def finish_command(prog: str, work: Callable[[], str]) -> int:
    """Run a generator command's `work`: its one-line summary on stdout and exit 0, or its SegError on one line
    of stderr and that error's exit code."""
    try:
        summary = work()
    except SegError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(summary)
    return 0
