"""The `segbench` command: run a suite file or one case, or compare two runs.

segbench benchmarks/suites/cpu-quick.toml
segbench --model fcn_resnet50 --weights none --backend ort-cpu --precision int8 --shape 1x612x640
segbench compare RUN_A RUN_B
segbench served build/triton/unet_shapes
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segbench.cases.suite import Case, Suite, load_suite, suite_from_dict
from segbench.cases.suite_keys import BACKENDS, PRECISIONS
from segbench.parser import OneLineParser
from segrt.errors import MissingDependency, SegError, rich_say
from segrt.errors import run_command as command
from segrt.signals import interrupt_once

INSTALL_BENCH = "install the benchmark extra: pip install 'segexport[bench]'"
# What a run imports: the terminal (rich), memory and CPU load (psutil), the plots, the baseline and the
# exports (torch, torchvision, onnx). Checked before the suite is read, so a missing one costs a sentence.
RUN_MODULES = ("rich", "psutil", "matplotlib", "torch", "torchvision", "onnx")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="segbench",
        description="Latency per stage, throughput, memory, energy and label accuracy of segmentation models on "
        "every backend and precision, beside the plain PyTorch pipeline, in one run.",
        epilog="Examples: segbench benchmarks/suites/cpu-quick.toml  |  segbench --model fcn_resnet50 --weights none "
        "--backend ort-cpu --precision int8 --shape 1x612x640  |  segbench compare RUN_A RUN_B",
    )
    parser.add_argument("suite", nargs="?", type=Path, help="suite file (benchmarks/suites/*.toml)")
    one = parser.add_argument_group("one case without a suite file")
    one.add_argument("--model", help="segexport model: fcn_resnet50, unet_shapes, ..., or package.module:factory")
    one.add_argument("--weights", help="segexport --weights (none: random weights)")
    one.add_argument("--input-size", help="segexport --input-size: network input HxW, or S for the shorter side")
    one.add_argument("--export-arg", action="append", default=[], metavar="ARG", help="more segexport flags; repeat")
    one.add_argument("--backend", default="ort-cpu", help=f"{', '.join(BACKENDS)} (default ort-cpu)")
    one.add_argument("--precision", help=f"{', '.join(PRECISIONS)} (default fp32)")
    one.add_argument("--no-fuse", action="store_true", help="the --no-fuse graph with host pre/post-processing")
    one.add_argument(
        "--file",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="run this ONNX graph or engine, made earlier from --model, instead of exporting it (its card gives the "
        "precision and graph kind); repeat to run files side by side, e.g. before and after a change",
    )
    one.add_argument(
        "--calib",
        help="INT8 calibration images: a folder or a .txt list (default: the folder of the model's sample "
        "image, else of the bundled photo)",
    )
    one.add_argument("--device", help="pytorch-eager only: cpu or cuda")
    one.add_argument(
        "--shape",
        action="append",
        metavar="NxHxW",
        help="batch x image size; repeat (default 1x612x640); with a suite: only these of its shapes",
    )
    run = parser.add_argument_group("running")
    run.add_argument("-o", "--out", type=Path, help="run directory (default build/segbench-runs/<suite>-<time>)")
    run.add_argument(
        "--cache",
        type=Path,
        default=Path("build/segbench-cache"),
        help="where exports are kept and reused (default build/segbench-cache; delete it to export afresh)",
    )
    run.add_argument("--dataset", type=Path, help="Pascal-VOC folder for mIoU (overrides the suite's)")
    run.add_argument("--image", type=Path, help="photo to run on (default: the suite's, or the bundled 612x640 one)")
    run.add_argument("--warmup", type=int, help="untimed calls per case (overrides the suite)")
    run.add_argument("--iterations", type=int, help="timed calls per case, at least (overrides the suite)")
    run.add_argument(
        "--min-seconds", type=float, help="keep sampling a case at least this long, too (overrides the suite)"
    )
    run.add_argument("--seconds", type=float, help="time budget per case (overrides the suite)")
    run.add_argument("--threads", type=int, help="CPU threads for ONNX Runtime and torch")
    run.add_argument(
        "--camera-fps",
        type=float,
        metavar="FPS",
        help="also run each batch-1 case with frames arriving at FPS, counting dropped and late frames "
        "(overrides the suite)",
    )
    run.add_argument("--camera-seconds", type=float, help="seconds of camera frames per case (default 10)")
    run.add_argument(
        "--no-baseline",
        action="store_true",
        help="do not add the pytorch-eager baseline (one that a suite's runs name still runs)",
    )
    run.add_argument("--list", action="store_true", help="print the cases and exit")
    return parser


def compare_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="segbench compare", description="Put two segbench runs side by side.")
    parser.add_argument("a", type=Path, help="run directory or results.json (A, e.g. before)")
    parser.add_argument("b", type=Path, help="run directory or results.json (B, e.g. after)")
    parser.add_argument("-o", "--out", type=Path, help="also write the comparison as Markdown to this file")
    return parser


def export_arg_keys(model: str, flags: list[str]) -> dict[str, Any]:
    """--export-arg segexport flags -> the suite's model keys (segexport's ModelOptions fields): segexport's own
    parser reads them, so they mean what they mean on its command line."""
    if not flags:
        return {}
    from segexport.cli import build_parser, request_from_args

    parser = build_parser()
    try:
        request = request_from_args(parser.parse_args([model, *flags]))
    except SystemExit:
        raise SegError(f"--export-arg {' '.join(flags)}: segexport does not take these flags") from None
    plain = request_from_args(parser.parse_args([model]))
    if (request.onnx, request.precision, request.engine) != (plain.onnx, plain.precision, plain.engine):
        raise SegError(
            f"--export-arg {' '.join(flags)}: only segexport's model flags apply here (--checkpoint, --num-classes, "
            f"--unet-base, ...); segbench picks the graph, precision and engine from --backend and --precision"
        )
    options = request.model
    keys: dict[str, Any] = {}
    for name, value in vars(options).items():
        if name == "name" or value == getattr(type(options)(model), name):
            continue
        if name == "input_size":
            value = "x".join(map(str, value))
        keys[name] = str(value) if isinstance(value, Path) else (list(value) if isinstance(value, tuple) else value)
    return keys


def suite_from_args(args: argparse.Namespace) -> Suite:
    if args.suite and args.model:
        raise SegError("give a suite file or --model, not both")
    if args.file and not args.model:
        raise SegError(
            "--file needs --model (with the --weights and --input-size the file was exported with): its labels are "
            "scored against that model's PyTorch reference; in a suite, give file = in a run"
        )
    if args.file and (args.precision or args.no_fuse):
        raise SegError("--precision and --no-fuse come from each --file's card; drop them")
    if args.suite:
        suite = load_suite(args.suite, add_baseline=False if args.no_baseline else None)
        if args.shape:
            suite = suite.only_shapes(args.shape)
    elif args.model:
        precision = args.precision or "fp32"
        run: dict[str, Any] = {"backend": args.backend, "precision": precision, "fused": not args.no_fuse}
        if args.device:
            run["device"] = args.device
        runs = [{"backend": args.backend, "file": str(path)} for path in args.file] or [run]
        model: dict[str, Any] = {"name": args.model, **export_arg_keys(args.model, args.export_arg), "runs": runs}
        if args.weights:
            model["weights"] = args.weights
        if args.input_size:
            model["input_size"] = args.input_size
        if args.calib:
            model["calib"] = args.calib
        data = {"name": f"{args.model}-{args.backend}-{'files' if args.file else precision}", "model": [model]}
        data["shapes"] = args.shape or ["1x612x640"]
        data["baseline"] = not args.no_baseline
        suite = suite_from_dict(data)
    else:
        raise SegError("give a suite file (benchmarks/suites/cpu-quick.toml) or --model NAME; see segbench --help")
    for name in ("warmup", "iterations", "min_seconds", "seconds", "threads", "camera_fps", "camera_seconds"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warmup" else 1e-9):
            flag = "--" + name.replace("_", "-")
            raise SegError(f"{flag} {value}: must be {'>= 0' if name == 'warmup' else 'positive'}")
    suite = suite.with_overrides(
        warmup=args.warmup,
        iterations=args.iterations,
        min_seconds=args.min_seconds,
        seconds=args.seconds,
        threads=args.threads,
        image=args.image,
        camera_fps=args.camera_fps,
        camera_seconds=args.camera_seconds,
    )
    if suite.min_seconds is not None and suite.seconds is not None and suite.min_seconds > suite.seconds:
        raise SegError(
            f"a case's minimum sampling time ({suite.min_seconds:g} s) is above its budget ({suite.seconds:g} s); "
            f"give --min-seconds and --seconds that fit"
        )
    return suite


class Progress:
    """A rich progress bar over the cases, and one over the current case's samples; a line per finished case."""

    def __init__(self, console: Any, total: int, iterations: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        )
        self.cases = self.bar.add_task("cases", total=total)
        self.samples = self.bar.add_task("samples", total=iterations)
        self.iterations = iterations
        self.total = iterations

    def __enter__(self) -> Progress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def start_case(self, case: Case, total: int | None = None) -> None:
        """A new case; `total` is its sample count where it is fixed (a clip's frames), else the suite's iterations."""
        from rich.markup import escape

        self.total = total or self.iterations
        self.bar.update(self.cases, description=f"[bold]{escape(case.id)}")
        self.bar.reset(self.samples, total=self.total, description="export, load, warm up")

    def sample(self, count: int) -> None:
        # past `iterations` a case samples on until its minimum time: the bar then counts what it has
        total = max(self.total, count)
        self.bar.update(self.samples, completed=count, total=total, description="timed samples")

    def finish_case(self, result: dict[str, Any]) -> None:
        from rich.markup import escape

        self.bar.advance(self.cases)
        if result["status"] == "ok" and result.get("clip"):
            e2e, clip = result["timing"]["e2e"], result["accuracy"]["clip"]
            self.console.print(
                f"[green]✓[/] {escape(result['id'])}: {clip['frames']} frames, e2e p50 {e2e['p50']:.2f} ms, "
                f"mIoU over the clip {_share(clip['miou'])}, flicker {_share(clip['flicker'], 2)}",
                highlight=False,
            )
        elif result["status"] == "ok":
            e2e = result["timing"]["e2e"]
            camera = result.get("camera")
            at_rate = (
                f", at {camera['fps']:g} FPS {100 * camera['deadline_miss_share']:.0f} % of frames missed "
                "their deadline"
                if camera
                else ""
            )
            self.console.print(
                f"[green]✓[/] {escape(result['id'])}: e2e p50 {e2e['p50']:.2f} ms, {e2e['fps']:.1f} FPS, "
                f"agreement {100 * result['accuracy']['pixel_agreement']:.2f} %{at_rate}",
                highlight=False,
            )
        else:
            reason = escape(f"{result['id']}: {result['reason']}")
            mark = "[bold red]✗ failed[/]" if result["status"] == "failed" else "[yellow]- skipped[/]"
            self.console.print(f"{mark} {reason}", highlight=False)


def _share(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f} %"


def require_modules(modules: Sequence[str], purpose: str) -> None:
    """One sentence naming every module `purpose` needs that is not installed, and what to install."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise MissingDependency(f"{purpose} needs {', '.join(missing)}, which {verb} not installed; {INSTALL_BENCH}")


def run_command(args: argparse.Namespace, console: Any) -> int:
    require_modules(RUN_MODULES, "segbench (its baseline, exports, resource samples and plots)")
    from segbench.cases.preflight import check_measured, check_something_to_measure, preflight
    from segbench.cases.run import run_suite
    from segbench.report.markdown import console_tables
    from segbench.report.results import write_run

    suite = suite_from_args(args)
    if args.list:
        print("\n".join(case.id for case in suite.cases))
        return 0
    check_something_to_measure(suite)
    made = make_generated(suite, console)
    checked = preflight(
        suite, args.dataset
    )  # a bad photo, labelled set, clip or calibration: refused before the run folder
    out = args.out or Path("build/segbench-runs") / f"{suite.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        log = (out / "export.log").open("a")
    except OSError as exc:
        raise SegError(f"{out}: cannot write the run directory ({exc.strerror}); choose another with --out") from None
    with log, Progress(console, len(suite.cases), suite.iterations) as progress:
        record = run_suite(
            suite, cache=args.cache, log=log, dataset=args.dataset, progress=progress, checked=checked, generated=made
        )
    results = write_run(out, record)
    for table in console_tables(record):
        console.print(table)
    console.print(f"wrote {results}, {out / 'report.md'} and the plots (exports logged in {out / 'export.log'})")
    failed = [c for c in record["cases"] if c["status"] == "failed"]
    if failed:
        console.print(
            f"[bold red]segbench: {len(failed)} of {len(record['cases'])} cases failed[/] (listed above with "
            f"their reasons, and in {out / 'report.md'}); exit code 1",
            highlight=False,
        )
    if not failed:
        check_measured(record["cases"])  # nothing measured: exit 3, after the report that lists the skips
    return 1 if failed else 0


def make_generated(suite: Suite, console: Any) -> list[dict[str, Any]]:
    """The suite's generated sets, made here where missing (with a progress bar); what each is and whether it was made.

    Nothing is made for a suite none of whose cases this machine can run.
    """
    from segbench.cases.artifacts import unavailable_reason
    from segbench.data.generated import ensure, require_modules

    if not suite.generate or all(unavailable_reason(case) for case in suite.cases):
        return []
    require_modules(suite.generate)  # OpenCV missing is said now, not after the shapes set's minutes
    made = []
    for generated in suite.generate:
        started = time.monotonic()
        fresh = ensure(generated, console)
        if fresh:
            console.print(f"made {generated.words()} in {time.monotonic() - started:.0f} s; later runs reuse it")
        made.append({"set": generated.words(), "made_now": fresh, "seconds": time.monotonic() - started})
    return made


def compare_command(argv: Sequence[str], console: Any) -> int:
    from segbench.report import compare
    from segbench.report.results import load_run
    from segrt.meta import atomic_write

    args = compare_parser().parse_args(argv)
    a, b = load_run(args.a), load_run(args.b)
    console.print(compare.console_table(a, b))
    for line in compare.environment_differences(a, b):
        console.print(f"differs: {line}", highlight=False)
    if args.out:
        text = compare.markdown(a, b, str(args.a), str(args.b))
        atomic_write(args.out, lambda tmp: tmp.write_text(text))
        console.print(f"wrote {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from rich.console import Console
    except ImportError:  # the terminal output itself is rich's: say so without it
        print(f"segbench: error: rich is not installed; {INSTALL_BENCH}", file=sys.stderr)
        return MissingDependency.exit_code

    argv = list(sys.argv[1:] if argv is None else argv)
    console = Console(stderr=True)

    def work() -> int:
        if argv[:1] == ["compare"]:
            return compare_command(argv[1:], Console())
        if argv[:1] == ["served"]:  # a model through a Triton server beside local segrt: segbench/served.py
            from segbench.cases.served import served_command

            return served_command(argv[1:], console)
        return run_command(build_parser().parse_args(argv), console)

    with interrupt_once():
        return command("segbench", work, rich_say(console), interrupted="; no results.json was written for this run")


if __name__ == "__main__":
    sys.exit(main())
