"""The flags that say what the exported graph returns (--no-fuse, --confidence), and the `OnnxOptions` they make.

Kept beside `segexport.cli` so its parser stays one screen per group; the CLI calls these two functions only.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from segexport.request import OnnxOptions


def add_graph_output_arguments(group: argparse._ArgumentGroup) -> None:
    """--no-fuse (the plain network's logits) and --confidence (a second, uint8 output of the fused graph)."""
    group.add_argument(
        "--no-fuse",
        action="store_true",
        help="export the plain network (float NCHW in, logits out) without pre/post-processing",
    )
    group.add_argument(
        "--confidence",
        action="store_true",
        help="add a second output to the fused graph, `confidence`: uint8 N x H x W, per pixel round(255 x the top "
        "class's softmax probability) (a one-class model: of its likelier label), computed at the network's output "
        "size and resized bilinearly; segrt returns it with seg(image, confidence=True)",
    )


def onnx_options(args: argparse.Namespace) -> OnnxOptions:
    """The `OnnxOptions` of a parsed command line."""
    from segexport.request import OnnxOptions

    return OnnxOptions(
        fuse=not args.no_fuse, confidence=args.confidence, opset=args.opset, image=args.image, out=args.out
    )
