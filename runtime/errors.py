"""The one error type segrt and segexport raise for bad input; the CLIs print it in one line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


class SegError(Exception):
    """Bad input or a missing piece, explained in one sentence that names the file and the fix.

    `exit_code` is what the command-line tools exit with: 2 for bad input, 3 for a
    missing dependency or device (the work that could be done was done).
    """

    exit_code = 2


class MissingDependency(SegError):
    """An optional package or device is absent; the message says what to install."""

    exit_code = 3


def require(module: str, install: str) -> object:
    """Import an optional heavy module lazily, or raise one sentence saying how to get it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # also OSError-free ImportErrors from broken native libs
        raise MissingDependency(f"{module} is not installed ({exc}); {install}") from None


def first_line(error: BaseException | str, *, with_type: bool = False, limit: int = 300) -> str:
    """What an exception (or a tool's message) says, in one line: its first non-empty line, cut to `limit`
    characters; `with_type` puts the exception's type in front ("ValueError: ..."). The one helper every
    message that quotes a third-party error uses."""
    text = error if isinstance(error, str) else str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    name = type(error).__name__ if isinstance(error, BaseException) else ""
    if not lines:
        return name or "no message"
    return f"{name}: {lines[0][:limit]}" if with_type and name else lines[0][:limit]


def run_command(
    prog: str, work: Callable[[], int], say: Callable[[str, str], None] | None = None, interrupted: str = ""
) -> int:
    """The shell around every command's work: a SegError is one line `prog: error: ...` and its exit code (2, or 3
    for a missing piece), Ctrl-C or SIGTERM is `prog: interrupted` and 130. `say(head, rest)` prints a line (plain
    on stderr by default; the rich CLIs colour the head); `interrupted` is what follows the interrupted head."""

    def plain(head: str, rest: str) -> None:
        print(f"{head}{rest}", file=sys.stderr)

    say = say or plain
    try:
        return work()
    except SegError as exc:
        say(f"{prog}: error:", f" {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        say(f"{prog}: interrupted", interrupted)
        return 130


def rich_say(console: Any) -> Callable[[str, str], None]:
    """`run_command`'s `say` for a rich console: the head in bold red, the rest as it is (markup escaped)."""
    from rich.markup import escape

    def say(head: str, rest: str) -> None:
        console.print(f"[bold red]{head}[/]{escape(rest)}", highlight=False, soft_wrap=True)

    return say
