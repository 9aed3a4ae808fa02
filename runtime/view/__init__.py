"""The live view: segrun's overlays served as they are made, to any browser (`segrun ... --view [HOST:]PORT`).

`address` reads and binds the `--view` address, `feeds` keeps each source's newest frame and encodes it once for
every viewer, `page` is the web page, `handler` answers a request, `server` is the `ViewServer` segrun holds.
"""

from __future__ import annotations

from segrt.view.server import ViewServer

__all__ = ["ViewServer"]
