"""segexport's accuracy budget: `--max-miou-drop POINTS --val VOCDIR` and `--max-disagreement PCT`, their
checks before any work, and the step that writes each FP16 / INT8 graph chosen by `precision_search`,
with the tables that explain the choice."""

from __future__ import annotations

import argparse
import math
import re
import shlex
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segexport.precision_search import HIGHER, Budget, BudgetNotMet, SearchResult
from segexport.trial_scoring import EvalImages, TrialScorer
from segrt.errors import SegError

_BUDGET_FLAGS = ("--max-miou-drop", "--max-disagreement")


def add_budget_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the accuracy budget (with --fp16 / --int8). Owned by the budget work."""
    group = parser.add_argument_group(
        "accuracy budget (with --fp16 / --int8)",
        "Keep the most sensitive nodes in higher precision until the reduced graph loses at most this much "
        "against FP32; the nodes kept are recorded in the card.",
    )
    group.add_argument(
        "--max-miou-drop",
        metavar="POINTS",
        help="most mIoU points the graph may lose against FP32 on --val (e.g. 0.5)",
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


def budget_wanted(args: argparse.Namespace) -> bool:
    return args.max_miou_drop is not None or args.max_disagreement is not None


def parse_budget(args: argparse.Namespace) -> Budget:
    """The budget the flags give; SegError naming the flag for a value that is not a finite number in range."""
    drop = _number(args.max_miou_drop, "--max-miou-drop", "mIoU points the reduced graph may lose, e.g. 0.5")
    share = _number(args.max_disagreement, "--max-disagreement", "% of pixels that may differ from FP32, e.g. 2")
    return Budget(max_miou_drop=drop, max_disagreement=None if share is None else share / 100.0)


def _number(text: str | None, flag: str, what: str) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise SegError(f"{flag} {text}: not a number; give the {what}") from None
    if not math.isfinite(value) or value < 0 or value > 100:
        problem = "not a finite number" if not math.isfinite(value) else "outside 0..100"
        raise SegError(f"{flag} {text}: {problem}; give the {what}")
    return value


def check_budget_flags(args: argparse.Namespace) -> None:
    """Refuse inconsistent budget flags, and a --val folder that is not a readable VOC set, before any work."""
    from segexport.val_set import open_val

    if not budget_wanted(args):
        if args.val is not None or args.val_count is not None:
            raise SegError("--val and --val-count only apply with --max-miou-drop or --max-disagreement")
        return
    flag = _BUDGET_FLAGS[0] if args.max_miou_drop is not None else _BUDGET_FLAGS[1]
    if not (args.fp16 or args.int8):
        raise SegError(f"{flag} chooses the precision of the --fp16 / --int8 graphs: add --int8 --calib DIR or --fp16")
    parse_budget(args)
    if args.max_miou_drop is not None and args.val is None:
        raise SegError(
            "--max-miou-drop needs --val VOCDIR: a Pascal-VOC folder labelled with the model's classes (its val "
            "split is scored); without labels, budget pixel changes with --max-disagreement PCT"
        )
    if args.val_count is not None and (args.val is None or args.val_count < 1):
        raise SegError(f"--val-count {args.val_count}: needs --val and at least 1 image")
    if args.val is not None:
        open_val(args.val)


def check_val_classes(args: argparse.Namespace, classes: Sequence[str]) -> None:
    """Once the model's classes are known, before its files are written: --val must be labelled with them."""
    if args.max_miou_drop is None or args.val is None:
        return
    from segexport.val_set import check_classes, open_val

    check_classes(open_val(args.val), tuple(classes), args.val_count)


@dataclass
class BudgetRun:
    """What every precision's search of one command shares: the budget and the scorer (FP32 labels once)."""

    budget: Budget
    scorer: TrialScorer


def prepare_budget(
    args: argparse.Namespace, onnx_path: Path, card: Any, image: Any, calib_images: list[Any], report: Any
) -> BudgetRun | None:
    """Decode the evaluation images and label them with FP32 once; None without a budget."""
    if not budget_wanted(args):
        return None
    from segexport.val_set import open_val, val_images

    budget = parse_budget(args)
    with report.step("accuracy budget: decode the images, label them with FP32") as detail:
        if args.val is not None:
            evaluation = val_images(open_val(args.val), args.val_count, labelled=args.max_miou_drop is not None)
        elif calib_images:
            evaluation = EvalImages(f"the {len(calib_images)} --calib images", tuple(calib_images))
        else:
            evaluation = EvalImages(f"the --image photo {args.image.name}", (image,))
        scorer = TrialScorer(evaluation, onnx_path, card)
        miou = "" if scorer.reference_miou is None else f", FP32 mIoU {100 * scorer.reference_miou:.2f} %"
        detail["text"] = f"{evaluation.where}{miou}; budget: {budget.words()}"
    return BudgetRun(budget, scorer)


def budgeted_graph(
    run: BudgetRun,
    args: argparse.Namespace,
    precision: str,
    onnx_path: Path,
    image: Any,
    calib_images: list[Any],
    out: Path,
    report: Any,
) -> Any:
    """Search, explain and write the `precision` graph within budget; returns its precision.PrecisionResult."""
    from segexport import budget_report

    title = f"{precision}: fewest nodes kept in {HIGHER[precision]} within budget"
    report.console.print(f"[bold]{title}[/] ({run.budget.words()}, on {run.scorer.evaluation.where})")
    with tempfile.TemporaryDirectory(prefix=".segexport-search-", dir=out) as scratch_name:
        try:
            result = _search(run, args, precision, onnx_path, image, calib_images, Path(scratch_name), report)
        except BudgetNotMet as exc:
            budget_report.print_search(report.console, exc.result)
            raise
    budget_report.print_search(report.console, result)
    if result.kept:
        flags = " ".join(shlex.quote(flag) for flag in rebuild_flags(result.kept))
        report.console.print(f"the same graph without the search: {flags} (also in the card)", highlight=False)
    written = _write(result, args, precision, onnx_path, image, out, run)
    report.steps.append((title, result.seconds, budget_report.summary_line(result, written.summary)))
    return written


def _search(
    run: BudgetRun,
    args: argparse.Namespace,
    precision: str,
    onnx_path: Path,
    image: Any,
    calib_images: list[Any],
    scratch: Path,
    report: Any,
) -> SearchResult:
    import onnx

    from segexport import budget_report, precision_search
    from segexport.precision import match_nodes, write_calibration_npz
    from segrt.meta import read_card

    card = read_card(onnx_path)
    source = onnx.load(str(onnx_path))
    user_keep = match_nodes(source, args.keep_fp32)
    npz_files = write_calibration_npz(list(calib_images) or [image], card, scratch / "calib")
    convert = _converter(precision, onnx_path, npz_files, user_keep, args.verbose > 0)
    with budget_report.progress(report.console, len(run.scorer.evaluation.images)) as monitor:
        run.scorer.on_image = monitor.advance
        try:
            return precision_search.search_precision(
                precision, convert, _read_out(precision, source), run.scorer, run.budget, scratch=scratch,
                monitor=monitor,
            )  # fmt: skip
        finally:
            run.scorer.on_image = None


def _converter(precision: str, fp32_path: Path, npz_files: list[Path], user_keep: list[str], verbose: bool) -> Any:
    """The precision pass of segexport (`precision.convert_fp16` / `quantize_int8_*`) with nodes kept."""
    from segexport import precision as passes

    pass_for = {
        "fp16": passes.convert_fp16,
        "int8": passes.quantize_int8_tensorrt,
        "int8-cpu": passes.quantize_int8_cpu,
    }[precision]

    def convert(kept: Sequence[str], folder: Path) -> Any:
        return pass_for(fp32_path, npz_files, folder, keep_fp32=[*user_keep, *kept], verbose=verbose)

    return convert


def _read_out(precision: str, source: Any) -> Any:
    from segexport.fp16_keep import Fp16Graph
    from segexport.qdq_keep import CPU_QUANTIZATION, TENSORRT_QUANTIZATION, QdqGraph

    if precision == "fp16":
        return lambda proto: Fp16Graph(proto, source)
    quantization = TENSORRT_QUANTIZATION if precision == "int8" else CPU_QUANTIZATION
    return lambda proto: QdqGraph(proto, source, quantization)


def rebuild_flags(kept: Sequence[str]) -> list[str]:
    """The --keep-fp32 flags that exclude exactly these nodes again (anchored, escaped regexes)."""
    return [part for name in kept for part in ("--keep-fp32", f"^{re.escape(name)}$")]


def _write(
    result: SearchResult,
    args: argparse.Namespace,
    precision: str,
    onnx_path: Path,
    image: Any,
    out: Path,
    run: BudgetRun,
) -> Any:
    """Check the chosen graph on the photo (gated only by an explicit --min-agreement: the budget is the gate)
    and write it with its card, which records the budget, the figures and the nodes kept."""
    from segexport import budget_report
    from segexport.onnx_export import check_agreement, save_onnx
    from segexport.precision import PrecisionResult, compare_with_fp32, make_card, summarize
    from segrt.meta import artifact_name, file_sha256, read_card

    card = read_card(onnx_path)
    target = out / artifact_name("model", precision)
    parity = compare_with_fp32(result.proto, precision, onnx_path, image, card)
    if args.min_agreement is not None:
        fix = "lower --min-agreement, or tighten the budget so more nodes are kept"
        check_agreement(parity, args.min_agreement, f"{target} was not written", fix)
    new_card = make_card(card, precision, result.proto, file_sha256(onnx_path))
    checks = {
        "parity": parity.record(f"{onnx_path.name} on ONNX Runtime CPU", "the --image photo"),
        "accuracy_budget": budget_report.card_record(result, run.scorer.evaluation.where, rebuild_flags(result.kept)),
    }
    save_onnx(result.proto, target, new_card.replace(checks=checks))
    return PrecisionResult(precision, target, parity, summarize(result.proto, precision))
