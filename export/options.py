"""The `segexport` flags of the precision graphs (--fp16, --int8 and their calibration) and of the accuracy budget:
the argument groups `segexport.cli.build_parser` adds (their values become a request in `cli.request_from_args`)."""

from __future__ import annotations

import argparse
from pathlib import Path

INT8_TARGETS = ("tensorrt", "cpu", "both")


def add_precision_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the precision step (FP16 / INT8 ONNX graphs). Owned by the precision work."""
    from segexport.defaults import AUTOCAST_IMAGES, DEFAULT_CALIB_COUNT
    from segexport.precision.calib_methods import CALIB_METHODS

    defaults = ", ".join(f"{methods[0]} for {graph}" for graph, methods in CALIB_METHODS.items())

    group = parser.add_argument_group("precision (ONNX -> ONNX, each checked against FP32 on --image)")
    group.add_argument(
        "--fp16",
        action="store_true",
        help="also write model.fp16.onnx: FP16 mixed precision (ModelOpt AutoCast; numerically sensitive nodes "
        f"stay FP32, found on {AUTOCAST_IMAGES} --calib images or the --image photo)",
    )
    group.add_argument(
        "--int8",
        action="store_true",
        help="also write model.int8.onnx (Q/DQ for TensorRT, ModelOpt) and model.int8-cpu.onnx (Q/DQ for "
        "ONNX Runtime CPU), calibrated on --calib",
    )
    group.add_argument(
        "--int8-target",
        choices=INT8_TARGETS,
        help="which INT8 graph --int8 writes: tensorrt (model.int8.onnx), cpu (model.int8-cpu.onnx, and no "
        "engine), or both (default)",
    )
    group.add_argument(
        "--calib",
        type=Path,
        metavar="DIR",
        help="folder of calibration images (searched recursively), like the ones the model will see, or a .txt "
        "list of them (a Pascal-VOC ImageSets/Segmentation/train.txt works); each is fed to the graph at its own "
        "size, as segrt does",
    )
    group.add_argument(
        "--calib-count",
        type=int,
        default=DEFAULT_CALIB_COUNT,
        metavar="N",
        help=f"calibration images to use, spread over the folder (default {DEFAULT_CALIB_COUNT}, or all if fewer)",
    )
    group.add_argument(
        "--keep-fp32",
        action="append",
        default=[],
        metavar="REGEX",
        help="keep nodes whose name matches REGEX in FP32 (not FP16, not quantized); repeatable",
    )
    group.add_argument(  # checked by precision/calib_methods.py, so a bad value is one line, not argparse's usage
        "--calib-method",
        metavar="METHOD",
        help="how INT8 sets its activation ranges on the --calib images: minmax, entropy, or percentile (the "
        f"CPU graph only); default: {defaults}; recorded in each graph's card",
    )


def add_budget_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the accuracy budget (with --fp16 / --int8): export/precision/budget.py."""
    group = parser.add_argument_group(
        "accuracy budget (with --fp16 / --int8)",
        "Keep the most sensitive nodes in higher precision until the reduced graph loses at most this much "
        "against FP32; the nodes kept are recorded in the card.",
    )
    group.add_argument(
        "--max-miou-drop", metavar="POINTS", help="most mIoU points the graph may lose against FP32 on --val (e.g. 0.5)"
    )
    group.add_argument(
        "--max-class-iou-drop",
        metavar="POINTS",
        help="most IoU points any one class may lose against FP32 on --val (e.g. 2), every class present there; "
        "with --max-miou-drop both hold",
    )
    group.add_argument(
        "--max-disagreement",
        metavar="PCT",
        help="most pixels, in %%, whose label may differ from FP32's: on --val's images, else on the --calib images",
    )
    group.add_argument(
        "--val", type=Path, metavar="VOCDIR", help="Pascal-VOC folder whose val split the budget is measured on"
    )
    group.add_argument(
        "--val-count", type=int, metavar="N", help="score on N val images spread over the split (default: all)"
    )
