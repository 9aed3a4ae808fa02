"""A generated labelled video: the shapes of segbench.data.shapes moving smoothly over a textured backdrop.

Why it exists: robots and cars see video, and what their users watch is the label map
over time. Whether a model's labels flicker from frame to frame -- and whether FP16 or
INT8 makes them flicker more -- needs frames whose ground truth is known and changes
only where something moved. Each shape follows a smooth Lissajous path and turns
slowly, its texture moving with it; the band sways; the light rises and falls and
sweeps round; every frame gets its own sensor noise, and the video codec (MJPEG) its
own compression. The same arguments give the same frames and labels.

    python -m segbench.data.clip OUT_DIR --frames 300 --seed 0 --size 240x320 --fps 30

writes OUT_DIR/clip.avi (MJPEG), OUT_DIR/labels/000000.png ... (palette PNGs of class
ids, one per frame, named as segrun names a video's frames) and OUT_DIR/clip.json
(the arguments, classes and palette; written last, so a clip without it is unfinished).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from segbench.data.progress import counting, finish_command
from segbench.data.scenes import (
    CLASSES,
    PALETTE,
    SHAPE_KINDS,
    Scene,
    Shape,
    background_clutter,
    distinct_colour,
    drawn_shape,
    render,
)
from segrt.errors import MissingDependency, SegError
from segrt.image import write_labels_png
from segrt.meta import write_bytes_atomic

VIDEO_NAME, LABELS_DIR, INFO_NAME = "clip.avi", "labels", "clip.json"
FRAMES, SEED, HEIGHT, WIDTH, FPS = 300, 0, 240, 320, 30.0  # the defaults: 10 s of 240x320 video at 30 FPS
SHAPE_TEXTURES = ("flat", "gradient", "stripes", "checker")  # patterns that can travel with a moving shape
BACKDROPS = ("gradient", "clouds", "speckle")
JPEG_QUALITY = 90  # the MJPEG codec's quality: its loss differs frame to frame, as a real camera's does
INSTALL_BENCH = "install the benchmark extra: pip install 'segexport[bench]'"  # as segbench's other OpenCV errors


@dataclass(frozen=True)
class Track:
    """How one shape moves: its look at t = 0, a Lissajous path around its centre, a spin, a travelling wave."""

    shape: Shape
    amplitude: tuple[float, float]  # px, along x and y
    frequency: tuple[float, float]  # Hz
    phase: tuple[float, float]  # rad
    spin: float = 0.0  # rad/s
    wave_speed: float = 0.0  # rad/s: a band's wave travels along it

    def at(self, seconds: float) -> Shape:
        """The shape at time `seconds`: moved, turned, its wave shifted."""
        cx, cy = self.shape.centre
        x = cx + self.amplitude[0] * math.sin(2 * math.pi * self.frequency[0] * seconds + self.phase[0])
        y = cy + self.amplitude[1] * math.sin(2 * math.pi * self.frequency[1] * seconds + self.phase[1])
        return replace(
            self.shape,
            centre=(x, y),
            angle=self.shape.angle + self.spin * seconds,
            phase=self.shape.phase + self.wave_speed * seconds,
        )


@dataclass(frozen=True)
class ClipPlan:
    """Everything a clip is made of; `frame` turns one instant of it into pixels and labels."""

    height: int
    width: int
    fps: float
    backdrop: Scene  # background, its texture, clutter, colour cast, blur and noise level (no shapes)
    tracks: tuple[Track, ...]
    light: tuple[float, float, float, float, float]  # mean gain, gain swing, swing period s, slope, vignette
    light_turn: tuple[float, float]  # light direction at t = 0 (rad), and how fast it turns (rad/s)
    noise_base: int  # frame i's noise seed is noise_base + i

    def scene(self, index: int) -> Scene:
        """The scene of frame `index` (at index / fps seconds)."""
        seconds = index / self.fps
        gain, swing, period, slope, vignette = self.light
        direction = self.light_turn[0] + self.light_turn[1] * seconds
        light = (gain * (1 + swing * math.sin(2 * math.pi * seconds / period)), slope, direction, vignette)
        return replace(
            self.backdrop,
            shapes=tuple(track.at(seconds) for track in self.tracks),
            light=light,
            noise_seed=self.noise_base + index,
            textures_move=True,
        )

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """uint8 H x W x 3 RGB and uint8 H x W labels of frame `index`, before video compression."""
        return render(self.scene(index))


def plan_clip(seed: int, height: int, width: int, fps: float) -> ClipPlan:
    """Draw a clip's backdrop, tracks and light from `seed`: every shape kind at least once, and the band."""
    rng = np.random.default_rng([seed, 2])  # 0 and 1 are the shapes set's train and val streams
    background = tuple(int(v) for v in rng.integers(40, 216, size=3))
    kinds = ["band", *rng.permutation(SHAPE_KINDS), *rng.choice(SHAPE_KINDS, size=int(rng.integers(1, 3)))]
    tracks: list[Track] = []
    for kind in kinds:
        avoid = [background, *(t.shape.colour for t in tracks)]
        tracks.append(_track(str(kind), rng, height, width, avoid))
    backdrop = Scene(
        height=height,
        width=width,
        background=background,  # type: ignore[arg-type]
        background_texture=str(rng.choice(BACKDROPS)),
        clutter=tuple(background_clutter(rng, height, width, background)),  # type: ignore[arg-type]
        cast=tuple(float(v) for v in rng.uniform(0.9, 1.1, size=3)),  # type: ignore[arg-type]
        blur=float(rng.uniform(0.3, 0.8)),
        noise=float(rng.uniform(3.0, 7.0)),
        seed=int(rng.integers(2**31)),
    )
    light = (
        float(rng.uniform(0.85, 1.0)),
        float(rng.uniform(0.15, 0.25)),
        float(rng.uniform(4.0, 8.0)),
        float(rng.uniform(0.2, 0.5)),
        float(rng.uniform(0.2, 0.8)),
    )
    turn = (float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.2, 0.5) * rng.choice([-1, 1])))
    return ClipPlan(height, width, fps, backdrop, tuple(tracks), light, turn, int(rng.integers(2**30)))


def _track(kind: str, rng: np.random.Generator, height: int, width: int, avoid: Sequence[tuple[int, ...]]) -> Track:
    """One shape and its path, kept inside the frame: a shape cut by the border is no longer its class."""
    side = min(height, width)
    look = {
        "colour": distinct_colour(rng, avoid),  # type: ignore[arg-type]
        "texture": str(rng.choice(SHAPE_TEXTURES)),
        "texture_seed": int(rng.integers(2**31)),
        "angle": float(rng.uniform(0, 2 * np.pi)),
    }
    frequency = (float(rng.uniform(0.04, 0.15)), float(rng.uniform(0.04, 0.15)))
    phase = (float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi)))
    if kind == "band":  # across the frame, roughly level; it sways up and down and its wave travels
        shape = Shape(
            "band",
            (width / 2, float(rng.uniform(0.35, 0.65) * height)),
            (float(rng.uniform(0.06, 0.09) * side), float(rng.uniform(0.03, 0.07) * side)),
            period=float(rng.uniform(0.7, 1.3) * side),
            **{**look, "angle": float(rng.uniform(-0.3, 0.3))},
        )
        return Track(shape, (0.0, 0.12 * height), frequency, phase, spin=0.0, wave_speed=float(rng.uniform(0.5, 1.5)))
    radius = float(side * rng.uniform(0.1, 0.18))
    aspect = {"ellipse": (0.5, 1.0), "rectangle": (0.4, 1.0), "triangle": (0.7, 1.2), "ring": (0.7, 1.0)}
    low, high = aspect.get(kind, (0.85, 1.0))
    radii = (radius, radius * float(rng.uniform(low, high)))
    margin = 0.8 * max(radii)
    amplitude = (float(rng.uniform(0.1, 0.3) * width), float(rng.uniform(0.1, 0.3) * height))
    amplitude = (min(amplitude[0], width / 2 - margin), min(amplitude[1], height / 2 - margin))
    centre = (
        float(rng.uniform(margin + amplitude[0], width - margin - amplitude[0])),
        float(rng.uniform(margin + amplitude[1], height - margin - amplitude[1])),
    )
    shape = drawn_shape(kind, centre, radii, rng, **look)
    return Track(shape, amplitude, frequency, phase, spin=float(rng.uniform(-0.6, 0.6)))


# --- writing -----------------------------------------------------------------------------------------


def generate_clip(
    out_dir: str | os.PathLike[str],
    *,
    frames: int = FRAMES,
    seed: int = SEED,
    height: int = HEIGHT,
    width: int = WIDTH,
    fps: float = FPS,
    on_frame: Callable[[int], None] | None = None,
) -> Path:
    """Write the clip's video, one label PNG per frame and clip.json under `out_dir`; returns `out_dir`.

    The video is written under a temporary name and renamed; clip.json comes last.
    `on_frame(n)` is told each time n more frames are written.
    """
    cv2 = _opencv("writing the labelled clip")
    _check_settings(frames, height, width, fps)
    root = Path(out_dir)
    try:
        (root / LABELS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegError(f"{root}: cannot create the clip folder ({exc.strerror}); choose another folder") from None
    (root / INFO_NAME).unlink(missing_ok=True)  # the clip is unfinished until it is written again
    plan = plan_clip(seed, height, width, fps)
    scratch = root / f".{VIDEO_NAME}.tmp.avi"  # OpenCV picks the container from the suffix
    writer = cv2.VideoWriter(str(scratch), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise SegError(f"{scratch}: OpenCV cannot write an MJPEG video here; check the folder is writable")
    try:
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, JPEG_QUALITY)
        for index in range(frames):
            image, labels = plan.frame(index)
            writer.write(np.ascontiguousarray(image[..., ::-1]))  # OpenCV takes BGR
            write_labels_png(root / LABELS_DIR / f"{index:06d}.png", labels, PALETTE)
            if on_frame:
                on_frame(1)
        writer.release()
        os.replace(scratch, root / VIDEO_NAME)
    finally:
        writer.release()
        scratch.unlink(missing_ok=True)
    for stale in sorted((root / LABELS_DIR).glob("*.png"))[frames:]:  # a longer clip made here before
        stale.unlink()
    info = {
        "generator": "segbench.data.clip",
        "command": f"python -m segbench.data.clip {root} --frames {frames} --seed {seed} --size {height}x{width} "
        f"--fps {fps:g}",
        **settings(frames=frames, seed=seed, height=height, width=width, fps=fps),
        "video": VIDEO_NAME,
        "labels": LABELS_DIR,
        "codec": f"MJPEG, quality {JPEG_QUALITY}",
        "classes": list(CLASSES),
        "palette": [list(c) for c in PALETTE],
    }
    write_bytes_atomic(root / INFO_NAME, (json.dumps(info, indent=2) + "\n").encode())
    return root


def settings(*, frames: int, seed: int, height: int, width: int, fps: float) -> dict[str, int | float]:
    """The arguments that decide a clip's content, as clip.json records them (and a cache compares them)."""
    return {"frames": frames, "seed": seed, "height": height, "width": width, "fps": float(fps)}


def _check_settings(frames: int, height: int, width: int, fps: float) -> None:
    if frames < 2:
        raise SegError(f"--frames {frames}: a clip needs at least 2 frames (flicker compares consecutive frames)")
    if min(height, width) < 64 or max(height, width) > 4096:
        raise SegError(f"--size {height}x{width}: give a height and width from 64 to 4096 pixels")
    if not fps > 0:
        raise SegError(f"--fps {fps:g}: must be positive")


def _opencv(purpose: str) -> object:
    try:
        import cv2
    except ImportError:
        raise MissingDependency(f"{purpose} needs OpenCV, which is not installed; {INSTALL_BENCH}") from None
    return cv2


def parse_size(text: str) -> tuple[int, int]:
    """ "240x320" -> (240, 320): height, width."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SegError(f"--size {text!r}: give HEIGHTxWIDTH, e.g. 240x320") from None
    return height, width


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m segbench.data.clip",
        description="Generate the labelled shapes video: MJPEG frames plus one label PNG per frame (deterministic).",
    )
    parser.add_argument("out_dir", type=Path, help="output folder (created; a clip already there is replaced)")
    parser.add_argument("--frames", type=int, default=FRAMES, help=f"frames (default {FRAMES})")
    parser.add_argument("--seed", type=int, default=SEED, help="the same seed gives the same clip")
    parser.add_argument(
        "--size", default=f"{HEIGHT}x{WIDTH}", help=f"HEIGHTxWIDTH of the frames (default {HEIGHT}x{WIDTH})"
    )
    parser.add_argument("--fps", type=float, default=FPS, help=f"frame rate (default {FPS:g})")
    args = parser.parse_args(argv)

    def work() -> str:
        height, width = parse_size(args.size)
        with counting(f"drawing the labelled clip into {args.out_dir}", max(args.frames, 0)) as advance:
            root = generate_clip(
                args.out_dir, frames=args.frames, seed=args.seed, height=height, width=width, fps=args.fps,
                on_frame=advance,
            )  # fmt: skip
        size = f"{height}x{width}, {args.fps:g} FPS"
        return f"wrote {args.frames} frames ({size}): {root / VIDEO_NAME}, {root / LABELS_DIR}/"

    return finish_command("segbench.data.clip", work)


if __name__ == "__main__":
    sys.exit(main())
