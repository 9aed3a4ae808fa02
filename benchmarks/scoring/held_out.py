"""The images a run scores must be held out of those its graphs were calibrated or chosen on: compared by content
(sha256), so a copy under another name counts too."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def first_shared_image(used: Iterable[Path], scored: Iterable[Path]) -> tuple[Path, Path] | None:
    """The first file of `used` whose bytes equal a file of `scored`, with that scored file; None when none does."""
    scored_by_hash = {_digest(path): path for path in scored}
    for path in used:
        image = scored_by_hash.get(_digest(path))
        if image is not None:
            return path, image
    return None


def _digest(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()
