"""Text lists the user names on the command line (`--classes`, `--calib` lists), read one way."""

from __future__ import annotations

from pathlib import Path

from segrt.errors import SegError


def read_lines(path: Path, what: str, fix: str, reading: str = "it") -> list[str]:
    """The non-empty, stripped lines of a UTF-8 text file the user named, or SegError: "`what`: cannot read
    `reading` (reason); `fix`" (--classes and --calib lists are read this way)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SegError(f"{what}: cannot read {reading} ({reason}); {fix}") from None
    return [line.strip() for line in lines if line.strip()]


def read_class_names(text: str) -> tuple[str, ...]:
    """--classes: a text file with one name per line, else comma-separated names."""
    path = Path(text)
    if path.is_file():
        names = read_lines(path, f"--classes {path}", "give a text file with one name per line")
    else:
        names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise SegError(f"--classes {text!r}: no class names given")
    return tuple(names)
