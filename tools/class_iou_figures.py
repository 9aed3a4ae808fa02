"""Each class's IoU of an FP32 graph and of its FP16 / INT8 graphs (both INT8 flavours, each calibration method),
on a labelled Pascal-VOC val split, scored as segexport's accuracy budget scores them (the TensorRT Q/DQ graph
node by node on ONNX Runtime CPU). Prints a markdown table. The figures of docs/precision.md:

    python tools/class_iou_figures.py build/unet_shapes/model.onnx --val build/shapes \
        --calib build/shapes/ImageSets/Segmentation/train.txt --out /tmp/class-iou
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from segexport.precision.calib_methods import CALIB_METHODS
from segexport.precision.calibration import read_calibration_images
from segexport.precision.passes import make_precision_graph
from segexport.precision.scoring import TrialScore, TrialScorer
from segexport.precision.val_set import open_val, val_images
from segrt.meta import read_card


def row(name: str, score: TrialScore, classes: tuple[str, ...], seconds: float) -> str:
    ious = score.class_ious or {}
    cells = [f"{100 * ious[c]:.2f}" if ious.get(c) is not None else "—" for c in classes]
    miou = "—" if score.miou is None else f"{100 * score.miou:.2f}"
    drop = "—" if score.miou_drop is None else f"{score.miou_drop:+.2f}"
    worst = "—" if score.worst_class is None else f"{score.worst_class} {score.worst_class_drop:+.2f}"
    return f"| {name} | {' | '.join(cells)} | {miou} | {drop} | {worst} | {seconds:.0f} s |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fp32", type=Path, help="model.onnx written by segexport")
    parser.add_argument("--val", type=Path, required=True, help="Pascal-VOC folder; its val split is scored")
    parser.add_argument("--calib", type=Path, required=True, help="calibration images (folder or .txt list)")
    parser.add_argument("--calib-count", type=int, default=64)
    parser.add_argument("--graphs", default="fp16,int8,int8-cpu", help="comma-separated (default: all three)")
    parser.add_argument("--out", type=Path, required=True, help="scratch folder for the graphs")
    args = parser.parse_args()
    card = read_card(args.fp32)
    evaluation = val_images(open_val(args.val), None, labelled=True)
    scorer = TrialScorer(evaluation, args.fp32, card)
    calib, _ = read_calibration_images(args.calib, args.calib_count)
    image = calib[0]  # the gate is off (min_agreement 0): the figures below are the measure
    print(f"{evaluation.where}; calibrated on {len(calib)} images of {args.calib}\n")
    print(f"| graph | {' | '.join(card.classes)} | mIoU | drop (points) | worst class (points) | made in |")
    print(f"|---|{'---|' * len(card.classes)}---|---|---|---|")
    print(row("FP32", scorer.score(args.fp32, "fp32"), card.classes, 0.0), flush=True)
    for graph in args.graphs.split(","):
        for method in CALIB_METHODS.get(graph, (None,)):
            out = args.out / f"{graph}-{method}"
            out.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            result = make_precision_graph(
                graph, args.fp32, image,
                calib_images=calib, min_agreement=0.0, out=out, calib_method=method,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            name = graph if method is None else f"{graph}, {method}"
            print(row(name, scorer.score(result.path, graph), card.classes, seconds), flush=True)


if __name__ == "__main__":
    main()
