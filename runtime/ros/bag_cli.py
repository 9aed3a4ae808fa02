"""`python -m segrt.ros.bag_cli MODEL BAG --topic T [--topic ...] [-o OUT] [--stats]`: a recorded drive segmented
into OUT/NAME.segmented.mcap. The small entry that makes `segment_bag` usable and testable until segrun reads
bags through its own pipeline (segrun MODEL drive.mcap --topic ...)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from segrt.backends import BACKENDS
from segrt.errors import run_command
from segrt.precisions import USER_PRECISIONS
from segrt.ros.bag_run import BagRun, segment_bag
from segrt.ros.bag_source import BagImages
from segrt.signals import interrupt_once

PROG = "segrt.ros.bag_cli"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Segment the image topics of a ROS 2 bag (a .mcap file, or a rosbag2 folder: MCAP or SQLite) "
        "into NAME.segmented.mcap: every input message, plus TOPIC/labels (mono8) and TOPIC/color (rgb8).",
    )
    parser.add_argument("model", help="model.onnx, model.engine or a segexport output folder")
    parser.add_argument("bag", help="a .mcap file or a rosbag2 folder")
    parser.add_argument("--topic", action="append", required=True, help="an image topic to segment (repeatable)")
    parser.add_argument("-o", "--out", type=Path, default=Path("segrun-out"), help="output folder (default segrun-out)")
    parser.add_argument("--backend", choices=list(BACKENDS), help="default: the best one installed")
    parser.add_argument("--precision", choices=list(USER_PRECISIONS), help="pick the file of this precision")
    parser.add_argument("--ignore-class", type=int, action="append", default=[], help="class id left black")
    parser.add_argument("--stats", action="store_true", help="OUT/stats.csv: each frame's class shares")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with interrupt_once():
        return run_command(PROG, lambda: _run(args), interrupted=" (the bag written so far is readable)")


def _run(args: argparse.Namespace) -> int:
    import segrt

    with BagImages(args.bag, args.topic):  # topics checked before the model loads
        pass
    seg = segrt.load(args.model, args.backend, precision=args.precision)
    try:
        run = segment_bag(seg, args.bag, args.topic, args.out, ignore=args.ignore_class, stats=args.stats)
    finally:
        seg.close()
    _report(run)
    return run.exit_code


def _report(run: BagRun) -> None:
    rate = run.frames / run.seconds if run.seconds else 0.0
    print(f"{run.out_path}: {run.frames} frames segmented, {run.copied} messages copied ({rate:.1f} frames/s)")
    for kind, count in sorted(run.skipped.items()):
        print(f"{PROG}: skipped {count} message(s) ({kind}), the first: {run.problems[kind]}", file=sys.stderr)
    if run.broken:
        print(f"{PROG}: error: {run.broken}", file=sys.stderr)
    if run.stats_path is not None:
        print(f"{run.stats_path}: per-frame class shares")


if __name__ == "__main__":
    sys.exit(main())
