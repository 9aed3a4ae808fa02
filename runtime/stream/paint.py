"""The overlay and colour map of a stream's frames, made with integer tables built once per run.

A stream pays the blend per frame, on the cores the model needs: here the palette times alpha, and which
classes keep the image, are tables looked up by label, in integers (3-4x cheaper than a float32 blend, within
one level of it). `segrt.overlay` blends with this too, so segrun, segros and a user's call agree exactly.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np


class Painter:
    """Colours and overlays for one palette, alpha and set of ignored classes."""

    def __init__(self, palette: Sequence[Sequence[int]], alpha: float = 0.5, ignore: Collection[int] = ()) -> None:
        table = np.zeros((256, 3), np.uint8)
        colours = np.asarray(palette, np.uint8).reshape(-1, 3)[:256]
        table[: len(colours)] = colours
        table[list(ignore)] = 0
        self.colours = table  # what colorize gives: ignored classes black
        weight = round(alpha * 256)
        self._keep = 256 - weight  # the image's weight over 256
        painted = table.astype(np.uint16) * weight + 128  # + 128: round to nearest after >> 8
        kept = np.zeros(256, bool)
        kept[[0, *ignore]] = True  # background and ignored classes keep the image
        painted[kept] = 128
        self._painted = painted
        self._image_weight = np.where(kept, 256, self._keep).astype(np.uint16)

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        return np.take(self.colours, labels, axis=0)  # take along an axis: several times faster than table[labels]

    def overlay(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """image * (1 - alpha) + colour * alpha where the class is shown; the image itself elsewhere."""
        blended = image.astype(np.uint16)
        blended *= np.take(self._image_weight, labels)[..., None]
        blended += np.take(self._painted, labels, axis=0)
        blended >>= 8
        return blended.astype(np.uint8)
