"""Soak run: many frames of mixed sizes through one Segmenter, resident memory sampled as it goes.

    python -m segbench.cases.soak build/unet_shapes --frames 10000 --out benchmarks/results/cpu-2core/soak.json

A runtime that sits in a vehicle for hours must not grow. The run fails (exit 1)
when RSS after warm-up grows by more than --max-growth percent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segrt.errors import SegError


def frame_sizes(count: int, seed: int) -> list[tuple[int, int]]:
    """Camera sizes (70 %) and 27 odd sizes (30 %), in a seeded random order."""
    rng = np.random.default_rng(seed)
    common = [(480, 640), (720, 1280), (612, 640), (256, 256), (1080, 1920)]
    odd = [(int(h), int(w)) for h, w in rng.integers(1, 900, (27, 2))]
    return [
        common[int(rng.integers(len(common)))] if rng.random() < 0.7 else odd[int(rng.integers(len(odd)))]
        for _ in range(count)
    ]


def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def soak(
    model: str,
    *,
    frames: int,
    every: int = 500,
    warmup: int = 500,
    seed: int = 0,
    backend: str | None = "ort-cpu",
    threads: int | None = None,
) -> dict[str, object]:
    """Run `frames` frames and return the RSS samples and their growth after `warmup` frames."""
    import segrt

    seg = segrt.load(model, backend, threads=threads)
    rng = np.random.default_rng(seed)
    pool = {size: rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in set(frame_sizes(frames, seed))}
    samples: list[dict[str, float]] = []
    start = time.perf_counter()
    for index, size in enumerate(frame_sizes(frames, seed), 1):
        labels = seg(pool[size])
        if labels.shape != size:
            raise SegError(f"frame {index}: labels {labels.shape} for a {size} image")
        if index % every == 0 or index == frames:
            samples.append(
                {"frame": index, "rss_mib": round(rss_mib(), 2), "elapsed_s": round(time.perf_counter() - start, 2)}
            )
            print(f"soak: {index}/{frames} frames, RSS {samples[-1]['rss_mib']:.1f} MiB", file=sys.stderr)
    seg.close()
    after_warmup = [s["rss_mib"] for s in samples if s["frame"] >= warmup]
    baseline = after_warmup[0] if after_warmup else samples[0]["rss_mib"]
    growth = 100.0 * (max(after_warmup or [baseline]) - baseline) / baseline
    return {
        "model": str(model),
        "backend": seg.backend.name,
        "frames": frames,
        "warmup_frames": warmup,
        "distinct_sizes": len(pool),
        "samples": samples,
        "rss_start_mib": samples[0]["rss_mib"],
        "rss_end_mib": samples[-1]["rss_mib"],
        "rss_growth_after_warmup_pct": round(growth, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segbench.cases.soak", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="model file or segexport output folder")
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=500, help="sample RSS every N frames")
    parser.add_argument("--warmup", type=int, default=500, help="frames before the RSS baseline")
    parser.add_argument("--max-growth", type=float, default=5.0, help="percent RSS growth allowed after warm-up")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path, help="write the record as JSON here")
    args = parser.parse_args(argv)
    try:
        record = soak(args.model, frames=args.frames, every=args.every, warmup=args.warmup, threads=args.threads)
    except SegError as exc:
        print(f"soak: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.out:
        from segrt.meta import atomic_write

        text = json.dumps(record, indent=2) + "\n"
        atomic_write(args.out, lambda tmp: tmp.write_text(text))
    growth = record["rss_growth_after_warmup_pct"]
    print(
        f"soak: {record['frames']} frames, RSS {record['rss_start_mib']} -> {record['rss_end_mib']} MiB, "
        f"growth after warm-up {growth} % (limit {args.max_growth} %)",
        file=sys.stderr,
    )
    return 0 if float(growth) <= args.max_growth else 1  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
