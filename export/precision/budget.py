"""segexport's accuracy budget: the `--max-miou-drop POINTS --val VOCDIR` / `--max-disagreement PCT` options
(parsed in cli.py), their checks before any work, and the step that writes each FP16 / INT8 graph chosen by
`precision_search`, with the tables that explain the choice."""

from __future__ import annotations

import math
import re
import shlex
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segexport.precision.calib_methods import method_flags, method_for
from segexport.precision.scoring import EvalImages, TrialScorer
from segexport.precision.search import HIGHER, Budget, BudgetNotMet, SearchResult
from segexport.request import BudgetOptions
from segrt.errors import SegError

if TYPE_CHECKING:
    import numpy as np

    from segexport.precision.passes import PrecisionResult
    from segexport.progress import Report
    from segexport.request import ExportRequest


def budget_number(text: str | None, flag: str, what: str) -> float | None:
    """A budget flag's value (None when not given), or SegError naming the flag: not a finite number in 0..100."""
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


def budget_from_flags(
    max_miou_drop: str | None,
    max_disagreement: str | None,
    val: Path | None,
    val_count: int | None,
    max_class_iou_drop: str | None = None,
) -> BudgetOptions:
    """The accuracy budget the flags give; a value that is not a number in 0..100 is a SegError naming the flag."""
    drop = budget_number(max_miou_drop, "--max-miou-drop", "mIoU points the reduced graph may lose, e.g. 0.5")
    share = budget_number(max_disagreement, "--max-disagreement", "% of pixels that may differ from FP32, e.g. 2")
    what = "IoU points any one class may lose, e.g. 2"
    return BudgetOptions(
        max_miou_drop=drop,
        max_disagreement=None if share is None else share / 100.0,
        val=val,
        val_count=val_count,
        max_class_iou_drop=budget_number(max_class_iou_drop, "--max-class-iou-drop", what),
    )


def check_budget(options: BudgetOptions, graphs: Sequence[str]) -> None:
    """Refuse an inconsistent budget, and a --val folder that is not a readable VOC set, before any work."""
    from segexport.precision.val_set import open_val

    if not options.wanted:
        if options.val is not None or options.val_count is not None:
            raise SegError(
                "--val and --val-count only apply with --max-miou-drop, --max-class-iou-drop or --max-disagreement"
            )
        return
    flag = (
        "--max-miou-drop" if options.max_miou_drop is not None
        else "--max-class-iou-drop" if options.max_class_iou_drop is not None
        else "--max-disagreement"
    )  # fmt: skip
    if not graphs:
        raise SegError(f"{flag} chooses the precision of the --fp16 / --int8 graphs: add --int8 --calib DIR or --fp16")
    if options.max_miou_drop is not None and options.val is None:
        raise SegError(
            "--max-miou-drop needs --val VOCDIR: a Pascal-VOC folder labelled with the model's classes (its val "
            "split is scored); without labels, budget pixel changes with --max-disagreement PCT"
        )
    if options.max_class_iou_drop is not None and options.val is None:
        raise SegError(
            "--max-class-iou-drop needs --val VOCDIR: a Pascal-VOC folder labelled with the model's classes, every "
            "class present in its val split (each class's IoU is measured there)"
        )
    if options.val_count is not None and (options.val is None or options.val_count < 1):
        raise SegError(f"--val-count {options.val_count}: needs --val and at least 1 image")
    if options.val is not None:
        open_val(options.val)


def check_val_classes(options: BudgetOptions, classes: Sequence[str]) -> None:
    """Once the model's classes are known, before its files are written: --val must be labelled with them."""
    if not options.labelled or options.val is None:
        return
    from segexport.precision.val_set import check_classes, open_val

    every_class = options.max_class_iou_drop is not None
    check_classes(open_val(options.val), tuple(classes), options.val_count, every_class=every_class)


@dataclass
class BudgetRun:
    """What every precision's search of one export shares: the budget and the scorer (FP32 labels once), and
    what each graph is made from (the request, the FP32 graph, the parity photo, the calibration images)."""

    budget: Budget
    scorer: TrialScorer
    request: ExportRequest
    fp32: Path
    image: np.ndarray
    calib: list[Any]


def prepare_budget(
    request: ExportRequest, fp32: Path, card: Any, image: np.ndarray, calib: list[Any], report: Report
) -> BudgetRun | None:
    """Decode the evaluation images and label them with FP32 once; None without a budget."""
    options = request.budget
    if not options.wanted:
        return None
    from segexport.precision.val_set import open_val, val_images

    budget = Budget(options.max_miou_drop, options.max_disagreement, options.max_class_iou_drop)
    with report.step("accuracy budget: decode the images, label them with FP32") as detail:
        if options.val is not None:
            evaluation = val_images(open_val(options.val), options.val_count, labelled=options.labelled)
        elif calib:
            evaluation = EvalImages(f"the {len(calib)} --calib images", tuple(calib))
        else:
            name = request.onnx.image.name if request.onnx.image else "the model's parity image"
            evaluation = EvalImages(f"the --image photo ({name})", (image,))
        scorer = TrialScorer(evaluation, fp32, card)
        miou = "" if scorer.reference_miou is None else f", FP32 mIoU {100 * scorer.reference_miou:.2f} %"
        detail["text"] = f"{evaluation.where}{miou}; budget: {budget.words()}"
    return BudgetRun(budget, scorer, request, fp32, image, calib)


def budgeted_graph(run: BudgetRun, precision: str, out: Path, report: Report) -> PrecisionResult:
    """Search, explain and write the `precision` graph within budget."""
    from rich.markup import escape

    from segexport.precision import budget_report

    title = f"{precision}: fewest nodes kept in {HIGHER[precision]} within budget"
    report.console.print(f"[bold]{title}[/] ({escape(run.budget.words())}, on {escape(run.scorer.evaluation.where)})")
    with tempfile.TemporaryDirectory(prefix=".segexport-search-", dir=out) as scratch_name:
        try:
            result = _search(run, precision, Path(scratch_name), report)
        except BudgetNotMet as exc:
            budget_report.print_search(report.console, exc.result)
            raise
    budget_report.print_search(report.console, result)
    flags = rebuild_flags(run.request.precision.keep_fp32, result.kept)
    if precision != "fp16":  # and calibrated the same way, whatever the pass's default is by then
        flags += method_flags(method_for(run.request.precision.calib_method, precision))
    if result.kept:
        words = " ".join(shlex.quote(flag) for flag in flags)
        # node names can hold [ ]: printed as they are, so the flags can be copied
        report.console.print(
            f"the same graph without the search: {words} (also in the card)", highlight=False, markup=False
        )
    written = _write(result, run, precision, out, flags)
    report.steps.append((title, result.seconds, budget_report.summary_line(result, written.summary)))
    return written


def _search(run: BudgetRun, precision: str, scratch: Path, report: Report) -> SearchResult:
    import onnx

    from segexport.precision import budget_report
    from segexport.precision import search as precision_search
    from segexport.precision.calibration import write_calibration_npz
    from segexport.precision.passes import match_nodes
    from segrt.meta import read_card

    source = onnx.load(str(run.fp32))
    user_keep = match_nodes(source, run.request.precision.keep_fp32)
    npz_files = write_calibration_npz(list(run.calib) or [run.image], read_card(run.fp32), scratch / "calib")
    method = run.request.precision.calib_method
    convert = _converter(precision, run.fp32, npz_files, user_keep, run.request.verbose > 0, method)
    with budget_report.progress(report.console, len(run.scorer.evaluation.images)) as monitor:
        run.scorer.on_image = monitor.advance
        try:
            return precision_search.search_precision(
                precision, convert, _read_out(precision, source), run.scorer, run.budget, scratch=scratch,
                monitor=monitor,
            )  # fmt: skip
        finally:
            run.scorer.on_image = None


def _converter(
    precision: str, fp32: Path, npz_files: list[Path], user_keep: list[str], verbose: bool, method: str | None
) -> Any:
    """The precision pass of segexport (`precision.convert_fp16` / `quantize_int8_*`) with nodes kept."""
    from segexport.precision import passes

    if precision == "fp16":
        return lambda kept, folder: passes.convert_fp16(
            fp32, npz_files, folder, keep_fp32=[*user_keep, *kept], verbose=verbose
        )
    quantize = passes.quantize_int8_tensorrt if precision == "int8" else passes.quantize_int8_cpu

    def convert(kept: Sequence[str], folder: Path) -> Any:
        keep = [*user_keep, *kept]
        return quantize(fp32, npz_files, folder, keep_fp32=keep, verbose=verbose, calib_method=method)

    return convert


def _read_out(precision: str, source: Any) -> Any:
    from segexport.precision.keep_fp16 import Fp16Graph
    from segexport.precision.keep_qdq import CPU_QUANTIZATION, TENSORRT_QUANTIZATION, QdqGraph

    if precision == "fp16":
        return lambda proto: Fp16Graph(proto, source)
    quantization = TENSORRT_QUANTIZATION if precision == "int8" else CPU_QUANTIZATION
    return lambda proto: QdqGraph(proto, source, quantization)


def rebuild_flags(user_patterns: Sequence[str], kept: Sequence[str]) -> list[str]:
    """The --keep-fp32 flags that exclude again what the search's conversions excluded: the user's own
    patterns as given, then exactly the nodes the search kept (anchored, escaped regexes)."""
    return [
        part
        for pattern in (*user_patterns, *(f"^{re.escape(name)}$" for name in kept))
        for part in ("--keep-fp32", pattern)
    ]


def _write(result: SearchResult, run: BudgetRun, precision: str, out: Path, flags: list[str]) -> PrecisionResult:
    """Check the chosen graph on the photo (gated only by an explicit --min-agreement: the budget is the gate)
    and write it with its card, which records the budget, the figures and the nodes kept."""
    from segexport.onnx.export import save_onnx
    from segexport.parity import check_agreement, compare_with_fp32
    from segexport.precision import budget_report
    from segexport.precision.passes import PrecisionResult, calibration_record, make_card, summarize
    from segrt.meta import artifact_name, file_sha256, read_card

    fp32 = run.fp32
    card = read_card(fp32)
    target = out / artifact_name("model", precision)
    parity = compare_with_fp32(result.proto, precision, fp32, run.image, card)
    if run.request.min_agreement is not None:
        fix = "lower --min-agreement, or tighten the budget so more nodes are kept"
        check_agreement(parity, run.request.min_agreement, f"{target} was not written", fix)
    new_card = make_card(card, precision, result.proto, file_sha256(fp32))
    checks = {
        "parity": parity.record(f"{fp32.name} on ONNX Runtime CPU", "the --image photo"),
        "accuracy_budget": budget_report.card_record(result, run.scorer.evaluation.where, flags),
    }
    if precision != "fp16":
        checks["calibration"] = calibration_record(precision, run.request.precision.calib_method, len(run.calib or [1]))
    save_onnx(result.proto, target, new_card.replace(checks=checks))
    return PrecisionResult(precision, target, parity, summarize(result.proto, precision))
