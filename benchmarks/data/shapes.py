"""A generated labelled segmentation set, written in Pascal-VOC layout (numpy + Pillow only).

Why it exists: FP16 and INT8 change a network's answers, and only a trained model
on labelled data shows by how much; nothing can be downloaded, so the data are
drawn here. Seven classes of shapes and regions -- textured, overlapping (the shape
drawn last owns the pixel), at varied scale and rotation, under uneven light with
blur, noise and JPEG loss. Colour and texture are drawn independently of the
class, so only geometry tells the classes apart. The same command and seed give
byte-identical files.

    python -m segbench.data.shapes OUT_DIR --train 3200 --val 200 --seed 0   # the reference model's data
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from segbench.data.progress import counting, finish_command
from segbench.data.scenes import CLASSES, PALETTE, sample
from segrt.errors import SegError
from segrt.image import write_labels_png
from segrt.meta import atomic_write, write_bytes_atomic


def _jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def generate(
    out_dir: str | Path,
    *,
    train: int,
    val: int,
    seed: int,
    workers: int | None = None,
    on_sample: Callable[[int], None] | None = None,
) -> Path:
    """Write `train` + `val` samples under `out_dir` in Pascal-VOC layout; returns `out_dir`.

    JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette PNG, values are class
    ids), ImageSets/Segmentation/{train,val}.txt, and dataset.json recording the
    command's arguments, classes and palette (written last: a set without it is unfinished).
    Ids are `train_00000`, `val_00000`, ... Samples are drawn by `workers` processes
    (default: one per core); each sample has its own seed, so the files do not depend on
    how many. `on_sample(n)` is told each time n more samples are written.
    """
    if train < 0 or val < 0 or train + val == 0:
        raise SegError(f"--train {train} --val {val}: ask for at least one sample, and no negative counts")
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise SegError(f"{root}: exists and is not a folder; choose another output folder")
    images, labels_dir, sets = root / "JPEGImages", root / "SegmentationClass", root / "ImageSets" / "Segmentation"
    try:
        for folder in (images, labels_dir, sets):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegError(f"{root}: cannot create the dataset folders ({exc.strerror})") from None
    jobs = [(root, seed, split, index) for split, count in (("train", train), ("val", val)) for index in range(count)]
    _run_jobs(jobs, workers, on_sample)
    for split, count in (("train", train), ("val", val)):
        names = [f"{split}_{index:05d}" for index in range(count)]
        atomic_write(sets / f"{split}.txt", lambda tmp, names=names: tmp.write_text("".join(f"{n}\n" for n in names)))
    info = {
        "generator": "segbench.data.shapes",
        "command": f"python -m segbench.data.shapes {root} --train {train} --val {val} --seed {seed}",
        "seed": seed,
        "train": train,
        "val": val,
        "classes": list(CLASSES),
        "palette": [list(c) for c in PALETTE],
    }
    write_bytes_atomic(root / "dataset.json", (json.dumps(info, indent=2) + "\n").encode())
    return root


def _write_sample(job: tuple[Path, int, str, int]) -> None:
    """Draw one sample and write its image and label map (a worker process's unit of work)."""
    root, seed, split, index = job
    name = f"{split}_{index:05d}"
    scene, image, labels = sample(seed, split, index)
    write_bytes_atomic(root / "JPEGImages" / f"{name}.jpg", _jpeg_bytes(image, int(scene.extras["jpeg_quality"])))
    write_labels_png(root / "SegmentationClass" / f"{name}.png", labels, PALETTE)


def _run_jobs(
    jobs: list[tuple[Path, int, str, int]], workers: int | None, on_sample: Callable[[int], None] | None
) -> None:
    """Every job, in this process or spread over worker processes (spawned: the caller may hold torch's threads)."""
    workers = min(workers or os.cpu_count() or 1, max(len(jobs) // 32, 1))
    if workers == 1:
        for job in jobs:
            _write_sample(job)
            if on_sample:
                on_sample(1)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for _ in pool.map(_write_sample, jobs, chunksize=16):
            if on_sample:
                on_sample(1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m segbench.data.shapes",
        description="Generate the labelled shapes segmentation set in Pascal-VOC layout (deterministic per seed).",
    )
    parser.add_argument("out_dir", type=Path, help="output folder (created; files of the same names are replaced)")
    parser.add_argument("--train", type=int, default=3200, help="training samples (default 3200)")
    parser.add_argument("--val", type=int, default=200, help="validation samples (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed; the same seed gives the same files (default 0)")
    parser.add_argument("--workers", type=int, help="processes drawing samples (default: one per core)")
    args = parser.parse_args(argv)

    def work() -> str:
        with counting(f"drawing the shapes set into {args.out_dir}", max(args.train + args.val, 0)) as advance:
            root = generate(
                args.out_dir, train=args.train, val=args.val, seed=args.seed, workers=args.workers, on_sample=advance
            )
        return f"wrote {args.train} train + {args.val} val samples to {root} (classes: {', '.join(CLASSES)})"

    return finish_command("segbench.data.shapes", work)


if __name__ == "__main__":
    sys.exit(main())
