"""The generated labelled sets a suite names: made on first use with a progress bar, then reused.

A suite's `[generate]` table says which folders are segbench's own generated data --
the shapes set (segbench.data.shapes) and the labelled clip (segbench.data.clip) -- so a fresh
clone's first `segbench benchmarks/suites/cpu-quick.toml` makes them instead of stopping
at a missing folder. A folder is reused when the record its generator wrote last
(dataset.json, clip.json) names the same settings; otherwise it is made (again).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from segrt.errors import MissingDependency, SegError

# The README's install (`pip install -e '.[bench]'`) is the one extra that holds every generator's modules.
INSTALL_BENCH = "install the benchmark extra: pip install 'segexport[bench]'"
MODULE_WORDS = {"PIL": "Pillow (PIL)", "cv2": "OpenCV (cv2)"}


@dataclass(frozen=True)
class ShapesSet:
    """The labelled shapes set: `python -m segbench.data.shapes OUT --train N --val N --seed S`."""

    out: Path
    train: int = 3200
    val: int = 200
    seed: int = 0
    modules: ClassVar[tuple[str, ...]] = ("PIL",)  # what its generator imports beyond numpy

    @property
    def record(self) -> Path:
        return self.out / "dataset.json"

    def wanted(self) -> dict[str, Any]:
        return {"train": self.train, "val": self.val, "seed": self.seed}

    def words(self) -> str:
        return f"the labelled shapes set {self.out} ({self.train} train + {self.val} val images, seed {self.seed})"

    def count(self) -> int:
        return self.train + self.val

    def make(self, advance: Callable[[int], None]) -> None:
        from segbench.data import shapes

        shapes.generate(self.out, train=self.train, val=self.val, seed=self.seed, on_sample=advance)


@dataclass(frozen=True)
class ClipSet:
    """The labelled clip: `python -m segbench.data.clip OUT --frames N --seed S --size HxW --fps F`."""

    out: Path
    frames: int = 300
    seed: int = 0
    height: int = 240
    width: int = 320
    fps: float = 30.0
    modules: ClassVar[tuple[str, ...]] = ("PIL", "cv2")  # drawn with Pillow, written as MJPEG by OpenCV

    @property
    def record(self) -> Path:
        return self.out / "clip.json"

    def wanted(self) -> dict[str, Any]:
        from segbench.data.clip import settings

        return settings(frames=self.frames, seed=self.seed, height=self.height, width=self.width, fps=self.fps)

    def words(self) -> str:
        return (
            f"the labelled clip {self.out} ({self.frames} frames of {self.height}x{self.width} at {self.fps:g} FPS, "
            f"seed {self.seed})"
        )

    def count(self) -> int:
        return self.frames

    def make(self, advance: Callable[[int], None]) -> None:
        from segbench.data.clip import generate_clip

        generate_clip(self.out, on_frame=advance, **{k: v for k, v in asdict(self).items() if k != "out"})


GeneratedSet = ShapesSet | ClipSet


def is_ready(generated: GeneratedSet) -> bool:
    """Whether the folder holds a finished set made with these settings (its generator's record, written last)."""
    try:
        record = json.loads(generated.record.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not isinstance(record, dict):
        return False
    return all(record.get(key) == value for key, value in generated.wanted().items())


def require_modules(sets: Sequence[GeneratedSet]) -> None:
    """Refuse, in one line, sets whose generators cannot import what they need: before minutes go on making another."""
    unmade = [s for s in sets if not is_ready(s)]
    wanted = dict.fromkeys(name for s in unmade for name in s.modules)
    missing = [name for name in wanted if importlib.util.find_spec(name) is None]
    if missing:
        needed = ", ".join(MODULE_WORDS.get(name, name) for name in missing)
        verb = "is" if len(missing) == 1 else "are"
        wanting = "; ".join(s.words() for s in unmade if set(s.modules) & set(missing))
        raise MissingDependency(f"making {wanting} needs {needed}, which {verb} not installed; {INSTALL_BENCH}")


def ensure(generated: GeneratedSet, console: Any = None) -> bool:
    """Make the set unless it is there already; True when it was made now. Shows a progress bar while it works."""
    from segbench.data.progress import counting

    if is_ready(generated):
        return False
    require_modules([generated])
    if generated.out.exists() and not generated.out.is_dir():
        raise SegError(f"{generated.out}: exists and is not a folder; move it, or point [generate] elsewhere")
    with counting(f"making {generated.words()}, once", generated.count(), console) as advance:
        generated.make(advance)
    return True
