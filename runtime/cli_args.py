"""segrun's command line: the parser and the checks of its options that need no file (see segrt.cli)."""

from __future__ import annotations

import argparse
from pathlib import Path

from segrt.backends import BACKENDS
from segrt.class_stats import CSV_NAME
from segrt.errors import SegError
from segrt.precisions import USER_PRECISIONS
from segrt.sources import OUTPUT_SUFFIXES

SAVE_KINDS = tuple(OUTPUT_SUFFIXES)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segrun",
        description="Segment images, folders, videos, cameras or network streams with a segexport model "
        "(ONNX or TensorRT engine).",
        epilog="Examples: segrun build/unet_shapes photos/ -o out/ --save labels,overlay; "
        "segrun build/unet_shapes rtsp://cam1/live rtsp://cam2/live --save overlay",
    )
    parser.add_argument(
        "model", help="model.onnx, model.engine, a segexport output folder, or a served model: http://HOST:8000/MODEL"
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        help="image files, folders of images, video files, a camera index or /dev/videoN, a stream URL "
        "(rtsp://, http(s)://, udp://, rtp://), or a GStreamer pipeline ending in appsink",
    )
    parser.add_argument("-o", "--out", type=Path, default=Path("segrun-out"), help="output folder (default segrun-out)")
    parser.add_argument(
        "--save",
        default="labels,overlay",
        help="what to write, comma-separated: labels (class ids: a palette PNG, for a video a lossless FFV1 .mkv), "
        "overlay, color (for a video or stream, an H.264 .mp4 each), confidence (a graph exported with "
        "--confidence: a grey PNG, for a video an FFV1 .mkv); or none (default labels,overlay)",
    )
    parser.add_argument("--frames", action="store_true", help="a video or stream writes a PNG/JPEG per frame instead")
    parser.add_argument(
        "--view",
        metavar="[HOST:]PORT",
        help="serve the overlays live as they are made, in a web page at http://HOST:PORT/ (HOST default 127.0.0.1)",
    )
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="TOPIC",
        help="a bag input (.mcap, or a rosbag2 folder): an image topic to segment into OUT/NAME.segmented.mcap; repeat",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds a stream may stay silent, opening or reading (default 10)"
    )
    parser.add_argument(
        "--reconnect", type=int, default=3, help="times a stream that stops is opened again, with backoff (default 3)"
    )
    parser.add_argument(
        "--no-batch", action="store_true", help="run live sources' frames one by one, not one batch per size"
    )
    parser.add_argument(
        "--backend",
        choices=tuple(BACKENDS),
        help="default: TensorRT for engines, the best ONNX Runtime provider for ONNX",
    )
    parser.add_argument("--precision", choices=USER_PRECISIONS, help="pick that file in a model folder")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: all cores)")
    parser.add_argument("--cuda-graph", action="store_true", help="TensorRT: capture a CUDA graph per input shape")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity, 0..1 (default 0.5)")
    parser.add_argument("--max-frames", type=int, help="stop each video, camera or stream after this many frames")
    parser.add_argument(
        "--stats",
        action="store_true",
        help=f"print the share of pixels per class at the end, and write each frame's shares to OUT/{CSV_NAME}",
    )
    parser.add_argument(
        "--ignore-class",
        action="append",
        default=[],
        metavar="NAME",
        help="leave this class (a name from the model card) out of overlays, colour maps and stats; repeat",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-frame lines, only the summary")
    return parser


def parse_save(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    if kinds == ("none",):
        return ()
    unknown = [k for k in kinds if k not in SAVE_KINDS]
    if unknown or not kinds:
        raise SegError(f"--save {text!r}: use labels, overlay, color, confidence (comma-separated) or none")
    return kinds


def check_numbers(args: argparse.Namespace) -> None:
    """The numeric options, each refused in one line naming it."""
    if not 0.0 <= args.alpha <= 1.0:
        raise SegError(f"--alpha {args.alpha}: must be within 0..1")
    if args.timeout <= 0:
        raise SegError(f"--timeout {args.timeout:g}: must be more than 0 seconds")
    if args.reconnect < 0:
        raise SegError(f"--reconnect {args.reconnect}: must be 0 or more")
    if args.max_frames is not None and args.max_frames < 1:
        raise SegError(f"--max-frames {args.max_frames}: must be 1 or more")
