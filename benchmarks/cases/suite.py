"""A benchmark suite: the TOML file that names the matrix, validated into a flat list of cases.

    name = "cpu-quick"
    shapes = ["1x612x640"]            # N x H x W of the uint8 images fed to each case
    warmup = 2
    iterations = 10                   # at least this many samples per case
    min_seconds = 3                   # and at least this long; `seconds = 30` stops a case earlier
    [[model]]
    name = "fcn_resnet50"             # what `segexport` takes: a zoo name or package.module:factory
    weights = "none"
    input_size = "520x520"
    runs = [{ backend = "ort-cpu" }, { backend = "ort-cpu", fused = false }]
    video = "build/shapes-clip"       # each run also goes over this labelled clip, frame by frame
    [generate]                        # segbench's own labelled data, made on first use and reused
    shapes = "build/shapes"
    clip = { out = "build/shapes-clip", frames = 300 }

Every error names the file and the key in one line. Each model gets the pytorch-eager
baseline (on CPU, and on CUDA too when one of its runs is on a GPU) unless its runs name one.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from segbench.cases.suite_keys import (
    BACKENDS,
    BASELINE,
    DEVICES,
    EXPORT_OPTION_KEYS,
    GENERATE_KEYS,
    MODEL_KEYS,
    PRECISIONS,
    RUN_KEYS,
    SUITE_KEYS,
    check_keys,
    check_model_name,
    parse_shapes,
    typed_value,
)
from segbench.data.generated import ClipSet, GeneratedSet, ShapesSet
from segexport.engine.profile import parse_shape
from segexport.request import ModelOptions
from segrt import ENGINE_SUFFIXES
from segrt.backends import BACKENDS as BACKEND_ROWS
from segrt.errors import MissingDependency, SegError
from segrt.meta import read_card


@dataclass(frozen=True)
class ModelSpec:
    """One model of the suite: how segexport builds it (its ModelOptions), and where its labelled data are."""

    options: ModelOptions
    label: str = ""
    calib: Path | None = None
    calib_count: int | None = None
    dataset: Path | None = None
    budget_val: Path | None = None  # the labelled set an accuracy budget is measured on (segexport --val)

    @property
    def name(self) -> str:
        return self.options.name

    def export_options(self) -> dict[str, Any]:
        """The options that differ from segexport's defaults, as plain JSON values (results, cache keys)."""
        defaults = ModelOptions(self.options.name)
        return {
            key: str(value) if isinstance(value, Path) else (list(value) if isinstance(value, tuple) else value)
            for key, value in vars(self.options).items()
            if value != getattr(defaults, key)
        }


@dataclass(frozen=True)
class Case:
    """One measurement: a model on a backend at a precision, batch size and image size."""

    model: ModelSpec
    backend: str
    precision: str = "fp32"
    fused: bool = True
    confidence: bool = False  # the fused graph's confidence output too (segexport --confidence), fetched each call
    device: str = "cpu"
    batch: int = 1
    height: int = 612
    width: int = 640
    clip: Path | None = None  # a labelled clip folder: the case runs over its frames (its size, batch 1)
    stream: bool = False  # a clip case also goes through segrun's pipeline, beside the serial loop
    autograd: bool = False  # pytorch-eager only: autograd left on (torchvision's docs snippet as written)
    max_miou_drop: float | None = None  # the graph segexport chooses within this mIoU budget (points)
    file: Path | None = None  # a file made earlier, run as it is instead of the model's export

    @property
    def is_baseline(self) -> bool:
        """The PyTorch pipeline (with or without autograd): no exported file, the eager model."""
        return self.backend == BASELINE

    @property
    def is_reference_baseline(self) -> bool:
        """The baseline the speed-ups are over: the PyTorch pipeline under no_grad."""
        return self.is_baseline and not self.autograd

    @property
    def pipeline(self) -> str:
        """backend, precision and graph kind, without the shape: the key cases share their work by."""
        if self.is_baseline:
            return f"{self.backend} {self.device}{' autograd' if self.autograd else ''}"
        budget = "" if self.max_miou_drop is None else f" ≤{self.max_miou_drop:g} mIoU pts"
        given = "" if self.file is None else f" file {self.file}"
        kind = "fused +confidence" if self.confidence else "fused" if self.fused else "unfused"
        return f"{self.backend} {self.precision}{budget} {kind}{given}"

    @property
    def id(self) -> str:
        if self.clip is not None:
            return f"{self.model.label} | {self.pipeline} | clip {self.clip.name}"
        return f"{self.model.label} | {self.pipeline} | {self.batch}x{self.height}x{self.width}"


@dataclass(frozen=True)
class Suite:
    """A validated suite: its settings and the cases it expands to, in run order."""

    name: str
    cases: tuple[Case, ...]
    description: str = ""
    source: Path | None = None
    image: Path | None = None
    warmup: int = 2
    iterations: int = 10
    min_seconds: float | None = None
    seconds: float | None = None
    threads: int | None = None
    camera_fps: float | None = None
    camera_seconds: float = 10.0
    notes: tuple[str, ...] = field(default_factory=tuple)
    generate: tuple[GeneratedSet, ...] = ()

    def with_overrides(self, **changes: Any) -> Suite:
        """A copy with the CLI's overrides (None leaves a setting as the file has it)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def only_shapes(self, shapes: list[str]) -> Suite:
        """The suite's cases at these N x H x W only (segbench SUITE --shape); clip cases stay.

        A shape the suite does not run is refused, so a typo cannot leave a run of clips alone.
        """
        try:
            wanted = [parse_shape(s) for s in shapes]
        except ValueError as exc:
            raise SegError(f"--shape: {exc}") from None
        have = {(c.batch, c.height, c.width) for c in self.cases if c.clip is None}
        missing = [s for s in wanted if s not in have]
        if missing:
            listed = ", ".join("x".join(map(str, s)) for s in sorted(have))
            raise SegError(
                f"--shape {'x'.join(map(str, missing[0]))}: {self.source or self.name} does not run it; "
                f"it runs {listed}"
            )
        kept = tuple(c for c in self.cases if c.clip is not None or (c.batch, c.height, c.width) in wanted)
        return replace(self, cases=kept)


def load_suite(path: str | os.PathLike[str], *, add_baseline: bool | None = None) -> Suite:
    """Read and validate a suite file; raises SegError naming the file and the key.

    `add_baseline` overrides the file's `baseline` key (segbench --no-baseline), so the
    suite's notes say what was added only when it was.
    """
    path = Path(path)
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 (JetPack 6)
        try:
            import tomli as tomllib
        except ImportError:
            raise MissingDependency(
                "reading a suite file on Python 3.10 needs tomli; install the benchmark extra: "
                "pip install 'segexport[bench]'"
            ) from None
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SegError(f"{path}: no such suite file; the shipped ones are in benchmarks/suites/") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SegError(f"{path}: cannot read the suite file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SegError(f"{path}: not valid TOML ({exc})") from None
    if add_baseline is not None:
        data["baseline"] = add_baseline
    return suite_from_dict(data, source=path)


def suite_from_dict(data: dict[str, Any], *, source: Path | None = None) -> Suite:
    """Validate parsed TOML (or the CLI's one-case dict) into a Suite."""
    where = str(source) if source else "command line"
    check_keys(data, SUITE_KEYS, where, "the top level")
    name = typed_value(data, "name", str, where, "name", default=source.stem if source else "segbench")
    shapes = parse_shapes(typed_value(data, "shapes", list, where, "shapes", default=["1x612x640"]), where, "shapes")
    warmup = typed_value(data, "warmup", int, where, "warmup", default=2)
    iterations = typed_value(data, "iterations", int, where, "iterations", default=10)
    min_seconds = typed_value(data, "min_seconds", (int, float), where, "min_seconds", default=None)
    seconds = typed_value(data, "seconds", (int, float), where, "seconds", default=None)
    threads = typed_value(data, "threads", int, where, "threads", default=None)
    positive = (v is None or v > 0 for v in (min_seconds, seconds, threads))
    if warmup < 0 or iterations < 1 or not all(positive):
        raise SegError(f"{where}: warmup must be >= 0, iterations >= 1, min_seconds, seconds and threads positive")
    _check_time_limits(min_seconds, seconds, where)
    camera_fps = typed_value(data, "camera_fps", (int, float), where, "camera_fps", default=None)
    camera_seconds = typed_value(data, "camera_seconds", (int, float), where, "camera_seconds", default=10.0)
    if (camera_fps is not None and camera_fps <= 0) or camera_seconds <= 0:
        raise SegError(f"{where}: camera_fps and camera_seconds must be positive")
    image = typed_value(data, "image", str, where, "image", default=None)
    models = typed_value(data, "model", list, where, "model", default=None)
    if not models:
        raise SegError(f"{where}: no [[model]] table; a suite names at least one model")
    add_baseline = typed_value(data, "baseline", bool, where, "baseline", default=True)
    cases: list[Case] = []
    notes: list[str] = []
    for index, table in enumerate(models):
        model_cases, note = _model_cases(table, shapes, where, f"model[{index}]", add_baseline)
        cases += model_cases
        notes += [note] if note else []
    generate = _generate(typed_value(data, "generate", dict, where, "generate", default={}), where)
    return Suite(
        name=name,
        description=typed_value(data, "description", str, where, "description", default=""),
        source=source,
        image=Path(image) if image else None,
        warmup=warmup,
        iterations=iterations,
        min_seconds=float(min_seconds) if min_seconds is not None else None,
        seconds=float(seconds) if seconds is not None else None,
        threads=threads,
        camera_fps=float(camera_fps) if camera_fps is not None else None,
        camera_seconds=float(camera_seconds),
        cases=tuple(cases),
        notes=tuple(notes),
        generate=generate,
    )


def _generate(table: dict[str, Any], where: str) -> tuple[GeneratedSet, ...]:
    """The [generate] table: which folders are segbench's generated sets, and with which settings."""
    check_keys(table, GENERATE_KEYS, where, "generate")
    made: list[GeneratedSet] = []
    for name in ("shapes", "budget_shapes"):  # the second shapes set: what accuracy budgets are measured on
        if name in table:
            made.append(_shapes_set(table[name], where, name))
    if "clip" in table:
        made.append(_clip_set(table["clip"], where))
    return tuple(made)


def _shapes_set(value: Any, where: str, name: str) -> ShapesSet:
    value = {"out": value} if isinstance(value, str) else value
    if not isinstance(value, dict):
        raise SegError(f'{where}: generate.{name} must be a folder ("build/shapes") or a table {{ out = ... }}')
    keys = {"out": "folder", "train": "train images", "val": "val images", "seed": "seed"}
    check_keys(value, keys, where, f"generate.{name}")
    counts = {
        k: typed_value(value, k, int, where, f"generate.{name}.{k}", default=None) for k in ("train", "val", "seed")
    }
    return ShapesSet(_generated_out(value, where, name), **{k: v for k, v in counts.items() if v is not None})


def _clip_set(value: Any, where: str) -> ClipSet:
    if not isinstance(value, dict):
        raise SegError(f'{where}: generate.clip must be a table {{ out = "build/shapes-clip", frames = 300 }}')
    keys = {"out": "folder", "frames": "frames", "seed": "seed", "size": '"HxW"', "fps": "frame rate"}
    check_keys(value, keys, where, "generate.clip")
    options: dict[str, Any] = {}
    for key in ("frames", "seed"):
        if key in value:
            options[key] = typed_value(value, key, int, where, f"generate.clip.{key}", default=None)
    if "fps" in value:
        options["fps"] = float(typed_value(value, "fps", (int, float), where, "generate.clip.fps", default=None))
    if "size" in value:
        text = typed_value(value, "size", str, where, "generate.clip.size", default=None)
        try:
            options["height"], options["width"] = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise SegError(f'{where}: generate.clip.size {text!r} is not "HxW" (e.g. "240x320")') from None
    clip = ClipSet(_generated_out(value, where, "clip"), **options)
    if clip.frames < 2 or min(clip.height, clip.width) < 64 or clip.fps <= 0:
        raise SegError(f"{where}: generate.clip needs frames >= 2, a size of at least 64x64 and a positive fps")
    return clip


def _generated_out(value: dict[str, Any], where: str, key: str) -> Path:
    out = typed_value(value, "out", str, where, f"generate.{key}.out", default=None)
    if not out:
        raise SegError(f"{where}: generate.{key} has no out; give the folder to make it in")
    return Path(out)


def _check_time_limits(min_seconds: float | None, seconds: float | None, where: str) -> None:
    """A minimum above the budget would be cut by it every time: refuse it rather than measure something else."""
    if min_seconds is not None and seconds is not None and min_seconds > seconds:
        raise SegError(f"{where}: min_seconds {min_seconds:g} is above the budget seconds {seconds:g}; lower it")


def _model_cases(
    table: Any, shapes: list[tuple[int, int, int]], where: str, key: str, add_baseline: bool
) -> tuple[list[Case], str]:
    if not isinstance(table, dict):
        raise SegError(f"{where}: {key} must be a table ([[model]])")
    check_keys(table, MODEL_KEYS, where, key)
    name = typed_value(table, "name", str, where, f"{key}.name", default=None)
    if not name:
        raise SegError(f"{where}: {key} has no name; give the segexport model name")
    check_model_name(name, where, key)
    input_size = typed_value(table, "input_size", str, where, f"{key}.input_size", default=None)
    options = _model_options(table, name, where, key)
    calib = typed_value(table, "calib", str, where, f"{key}.calib", default=None)
    dataset = typed_value(table, "dataset", str, where, f"{key}.dataset", default=None)
    budget_val = typed_value(table, "budget_val", str, where, f"{key}.budget_val", default=None)
    default_label = f"{name}@{input_size}" if input_size else name
    spec = ModelSpec(
        options=options,
        label=typed_value(table, "label", str, where, f"{key}.label", default=default_label),
        calib=Path(calib) if calib else None,
        calib_count=typed_value(table, "calib_count", int, where, f"{key}.calib_count", default=None),
        dataset=Path(dataset) if dataset else None,
        budget_val=Path(budget_val) if budget_val else None,
    )
    if "shapes" in table:
        shapes = parse_shapes(
            typed_value(table, "shapes", list, where, f"{key}.shapes", default=[]), where, f"{key}.shapes"
        )
    runs = typed_value(table, "runs", list, where, f"{key}.runs", default=None)
    if not runs:
        raise SegError(f'{where}: {key} ({name}) has no runs; add runs = [{{ backend = "ort-cpu" }}]')
    pipelines = [_run(run, spec, where, f"{key}.runs[{i}]") for i, run in enumerate(runs)]
    note = ""
    if add_baseline:
        wanted = ["cpu"] + (["cuda"] if any(p.device == "cuda" for p in pipelines) else [])
        have = {p.device for p in pipelines if p.is_reference_baseline}
        added = [Case(spec, BASELINE, device=d) for d in wanted if d not in have]
        if added:
            pipelines = added + pipelines
            note = f"{spec.label}: added the {BASELINE} baseline on {', '.join(c.device for c in added)}"
    cases = [replace(p, batch=n, height=h, width=w) for (n, h, w) in shapes for p in pipelines]
    video = typed_value(table, "video", str, where, f"{key}.video", default=None)
    stream = typed_value(table, "stream", bool, where, f"{key}.stream", default=False)
    if video:  # the clip's frame size is read with the clip; 0 x 0 until then
        cases += [replace(p, batch=1, height=0, width=0, clip=Path(video), stream=stream and not p.is_baseline)
                  for p in pipelines]  # fmt: skip
    return cases, note


def _model_options(table: dict[str, Any], name: str, where: str, key: str) -> ModelOptions:
    """segexport's ModelOptions from a [[model]] table's export keys, each type-checked."""
    from segexport.request import parse_input_size

    given = {
        k: typed_value(table, k, kind, where, f"{key}.{k}", default=None) for k, kind in EXPORT_OPTION_KEYS.items()
    }
    fields = {k: v for k, v in given.items() if v is not None}
    try:
        if "input_size" in fields:
            fields["input_size"] = parse_input_size(fields["input_size"])
        if "checkpoint" in fields:
            fields["checkpoint"] = Path(fields["checkpoint"])
        if "classes" in fields:
            fields["classes"] = tuple(str(c) for c in fields["classes"])
    except ValueError as exc:
        raise SegError(f"{where}: {key}.input_size: {exc}") from None
    return ModelOptions(name, **fields)


def _run(run: Any, spec: ModelSpec, where: str, key: str) -> Case:
    if not isinstance(run, dict):
        raise SegError(f'{where}: {key} must be a table like {{ backend = "ort-cpu" }}')
    check_keys(run, RUN_KEYS, where, key)
    backend = typed_value(run, "backend", str, where, f"{key}.backend", default=None)
    if backend not in BACKENDS:
        raise SegError(f"{where}: {key}: unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    precision = typed_value(run, "precision", str, where, f"{key}.precision", default="fp32")
    if precision not in PRECISIONS:
        raise SegError(f"{where}: {key}: unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    fused = typed_value(run, "fused", bool, where, f"{key}.fused", default=True)
    confidence = typed_value(run, "confidence", bool, where, f"{key}.confidence", default=False)
    if confidence and (not fused or backend == BASELINE or "file" in run):
        raise SegError(f"{where}: {key}: confidence is an output of the fused graph segbench exports; drop it here")
    device = typed_value(run, "device", str, where, f"{key}.device", default=None)
    if backend == BASELINE:
        if device not in (None, *DEVICES):
            raise SegError(f"{where}: {key}: unknown device {device!r}; use one of {', '.join(DEVICES)}")
        if precision != "fp32" or not fused:
            raise SegError(f"{where}: {key}: {BASELINE} is the plain FP32 PyTorch pipeline; drop precision and fused")
        if "file" in run:
            raise SegError(f"{where}: {key}: {BASELINE} runs the PyTorch model itself; a file needs another backend")
        autograd = typed_value(run, "autograd", bool, where, f"{key}.autograd", default=False)
        return Case(spec, backend, device=device or "cpu", autograd=autograd)
    for only in ("device", "autograd"):
        if only in run:
            raise SegError(f"{where}: {key}: {only} applies to {BASELINE} only; drop it for the backend {backend}")
    if "file" in run:
        return _file_run(run, spec, backend, where, key)
    budget = _budget(run, spec, precision, where, key)
    device = BACKEND_ROWS[backend].device
    return Case(spec, backend, precision, fused, confidence, device, max_miou_drop=budget)


def _file_run(run: dict[str, Any], spec: ModelSpec, backend: str, where: str, key: str) -> Case:
    """A run over a file made earlier: its card says its precision and graph kind, and that it is this model's."""
    path = Path(typed_value(run, "file", str, where, f"{key}.file", default=""))
    given = [name for name in ("precision", "fused", "max_miou_drop") if name in run]
    if given:
        raise SegError(f"{where}: {key}: {', '.join(given)} come from {path}'s card; drop them from a file run")
    if not path.is_file():
        raise SegError(f"{where}: {key}.file: {path}: no such file; give an ONNX graph or engine segexport wrote")
    kind = "engine" if path.suffix in ENGINE_SUFFIXES else "onnx"
    if kind != BACKEND_ROWS[backend].runs:
        wanted = "a TensorRT engine" if BACKEND_ROWS[backend].runs == "engine" else "an ONNX graph"
        raise SegError(f"{where}: {key}.file: {path}: the backend {backend} runs {wanted}; give one or another backend")
    try:
        card = read_card(path)
    except SegError as exc:
        raise SegError(f"{where}: {key}.file: {exc}") from None
    if card.model != spec.name:
        raise SegError(
            f"{where}: {key}.file: {path} was exported from {card.model}, not {spec.name}; its labels would be "
            f"scored against the wrong reference: list it under the [[model]] it came from"
        )
    precision = "int8" if card.precision == "int8-cpu" else card.precision  # the graph ONNX Runtime's CPU runs
    return Case(spec, backend, precision, card.fused, device=BACKEND_ROWS[backend].device, file=path)


def _budget(run: dict[str, Any], spec: ModelSpec, precision: str, where: str, key: str) -> float | None:
    """A run's max_miou_drop: for a reduced precision, with a budget_val set to measure it on."""
    budget = typed_value(run, "max_miou_drop", (int, float), where, f"{key}.max_miou_drop", default=None)
    if budget is None:
        return None
    if precision == "fp32" or not 0 <= budget <= 100:
        raise SegError(f"{where}: {key}: max_miou_drop {budget} needs precision fp16 or int8 and 0..100 points")
    if spec.budget_val is None:
        raise SegError(
            f"{where}: {key}: max_miou_drop needs the model's budget_val, a labelled set the budget is measured on "
            f"(not its dataset, which scores the result)"
        )
    return float(budget)
