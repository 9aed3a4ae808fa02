"""A progress bar for long counted work (generating a labelled set), shared by segbench and the generators' commands.

The generators need only numpy and Pillow; rich draws the bar where it is installed, and
without it the work runs silently to its one-line summary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


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
