"""mkdocs hook: let mkdocstrings' loader (griffe) find segexport, segrt and segbench when run as `mkdocs`.

The packages live in folders not named after them (export/, runtime/, benchmarks/), so griffe finds them
by importing them through the editable install of '.[docs]' and then reads their files. Started as the
`mkdocs` console script, Python puts the script's folder (the venv's bin/) first on sys.path, and griffe
takes the `segexport` console script there for the package ("segexport.export could not be found").
`python -m mkdocs` has no such entry; this hook removes it, so both ways build the same site.
"""

from __future__ import annotations

import sys
from pathlib import Path


def on_startup(command: str, dirty: bool) -> None:
    script_folder = Path(sys.argv[0]).resolve().parent
    sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != script_folder]
