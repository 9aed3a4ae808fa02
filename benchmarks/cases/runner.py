"""Runs a suite's cases one after another on the same inputs and collects what each measured.

Per case: export what it needs (once, cached), load it, take the labels of the first
call for accuracy, time warm-up and samples, sample memory and power meanwhile, then
time the bare network of the same backend and precision (the --no-fuse graph on an
already pre-processed tensor). Every case is kept with a status: "ok"; "skipped" when
this machine cannot run it (no TensorRT, no CUDA, a package not installed); "failed"
when its model, export, parity check or run failed, with the reason. A failed case
makes segbench exit 1, so an exporter regression is never a quiet skip.
"""

from __future__ import annotations

import gc
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from segbench.cases.artifacts import ExportCache, unavailable_reason
from segbench.cases.suite import Case, ModelSpec, Suite
from segbench.measure.resources import ResourceSampler
from segbench.measure.timing import Timed, Window, outside_share, time_alternating, time_calls, time_frames
from segbench.scoring import accuracy
from segrt import scoring
from segrt.backends import BACKENDS
from segrt.errors import MissingDependency, SegError

REFERENCE_WORDS = (
    "FP32 PyTorch, the exported network with the deploy graph's steps (bilinear resize to the network size "
    "without antialiasing, normalize, upsample logits, argmax), on the same input images"
)


def make_batch(photo: np.ndarray, batch: int, height: int, width: int) -> np.ndarray:
    """N x H x W x 3 uint8: the photo resized to H x W (bilinear), then flipped variants so frames differ."""
    from PIL import Image

    image = photo
    if photo.shape[:2] != (height, width):
        image = np.asarray(Image.fromarray(photo).resize((width, height), Image.Resampling.BILINEAR))
    variants = [image, image[:, ::-1], image[::-1], image[::-1, ::-1]]
    return np.ascontiguousarray(np.stack([variants[i % len(variants)] for i in range(batch)]))


@dataclass
class Runner:
    """What the cases of one run share: the suite, the photo, the export cache, references and memos."""

    suite: Suite
    photo: np.ndarray
    exports: ExportCache
    dataset: Path | None = None  # overrides each model's own dataset (segbench --dataset)
    on_sample: Callable[[int], None] | None = None
    clips: dict[Path, Any] = field(default_factory=dict)  # clip folder -> segbench.data.video.LabelledClip
    references: dict[ModelSpec, Any] = field(default_factory=dict)
    dataset_scores: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)

    def reference(self, spec: ModelSpec) -> Any:
        if spec not in self.references:
            from segbench.cases.baseline import build_reference

            self.references[spec] = build_reference(spec, self.suite.threads)
        return self.references[spec]

    def run_case(self, case: Case) -> dict[str, Any]:
        """The record of one case: status, raw samples, stages, network time, resources, accuracy."""
        record = describe(case)
        reason = unavailable_reason(case)
        if reason:
            return {**record, "status": "skipped", "reason": reason}
        step = "model"  # what was being done when an error came: the reason's first word
        try:
            self.reference(case.model)  # the baseline's network and every case's FP32 reference
            if case.clip is not None:  # the clip's frame size decides the export's shape (a TensorRT profile)
                height, width = self.clips[case.clip].labels.shape[1:]
                case = replace(case, height=height, width=width)
                record.update(height=height, width=width)
            step = "export"
            file = None if case.is_baseline else self._file(case, fused=case.fused)
            step = "run"
            measured = self._measure_clip(case, file) if case.clip is not None else self._measure(case, file)
            return {**record, **measured}
        except MissingDependency as exc:  # a driver or library the machine lacks: not a failure of the case
            return {**record, "status": "skipped", "reason": str(exc)}
        except SegError as exc:
            return {**record, "status": "failed", "reason": f"{step}: {exc}"}
        except Exception as exc:  # a library error or a bug: keep the other cases, keep the traceback in the log
            missing = missing_package(exc)
            if missing:
                return {**record, "status": "skipped", "reason": missing}
            if self.exports.log is not None:
                traceback.print_exc(file=self.exports.log)
            return {**record, "status": "failed", "reason": f"{step}: {type(exc).__name__}: {exc}"}
        finally:
            gc.collect()

    def _file(self, case: Case, *, fused: bool) -> Path:
        """The case's graph or engine (`fused`, or its --no-fuse twin): the file it names, else its export."""
        if case.file is not None and fused == case.fused:
            self.exports.name_in_log(case.file, "given to this run: run as it is, not exported")
            return case.file
        shape = (case.batch, case.height, case.width)
        return self.exports.model_file(
            case.model,
            backend=case.backend,
            precision=case.precision,
            fused=fused,
            shape=shape,
            max_miou_drop=case.max_miou_drop,
            confidence=case.confidence and fused,
        )

    def _measure(self, case: Case, file: Path | None) -> dict[str, Any]:
        batch = make_batch(self.photo, case.batch, case.height, case.width)
        reference = self.reference(case.model)  # built before sampling (run_case): its memory is not the case's
        window = Window()
        sampler = ResourceSampler(gpu_index=0 if case.device == "cuda" else None)
        pipeline = None
        try:
            with sampler:  # loading, warm-up and samples: the memory a user's process needs for this case
                pipeline, details = self._open(case, file)
                labels = pipeline(batch)  # the first warm-up call; its labels are scored
                network_input = pipeline.network_input

                def call() -> dict[str, float]:
                    pipeline(batch)
                    return pipeline.timings

                timed = self._time(call, case.batch, window)
            camera = self._camera(case, call)
            predict = lambda image: pipeline(np.array(image[None]))[0]  # noqa: E731 - a writable copy for torch
            dataset = self._dataset_score(case, predict, details.pop("classes"))
            network = timed_network(timed) if case.is_baseline else self._alternated_network(case, batch, call)
            tail = self._tail(case, file, batch, call, timed)
            confidence = self._confidence_cost(case, batch, call) if case.confidence else None
        finally:
            if pipeline is not None:
                pipeline.close()
        result: dict[str, Any] = {
            "status": "ok",
            **details,
            "network_input": network_input,  # [H, W]: what the speed-up compares is not always the same network size
            "timing": timed.as_dict(),
            "resources": sampler.summary(window),
            "accuracy": {
                "reference": REFERENCE_WORDS,
                "pixel_agreement": accuracy.pixel_agreement(labels, reference.labels_for(batch)),
                "dataset": dataset,
            },
        }
        if camera is not None:
            result["camera"] = camera
        result["tail"] = tail
        if confidence is not None:
            result["confidence"] = confidence
        outside = network.pop("outside", None)
        result["network"] = network
        if outside is not None:
            result["outside_network"] = outside
            result["outside_network_share"] = outside["share"]
        return result

    def _measure_clip(self, case: Case, file: Path | None) -> dict[str, Any]:
        """The case over its labelled clip, frame by frame: per-frame latency, mIoU over the clip, flicker."""
        from segbench.scoring.temporal import score_clip

        clip = self.clips[case.clip]  # type: ignore[index]
        reference = self.reference(case.model)
        truth_reference = reference.labels_for(clip.frames)  # FP32 PyTorch on every frame, before the case's memory
        window = Window()
        sampler = ResourceSampler(gpu_index=0 if case.device == "cuda" else None)
        labels = np.empty_like(clip.labels)
        pipeline = None
        try:
            with sampler:
                pipeline, details = self._open(case, file)

                def call(index: int) -> dict[str, float]:
                    labels[index] = pipeline(clip.frames[index : index + 1])[0]
                    return pipeline.timings

                timed = time_frames(call, len(clip.frames), warmup=max(self.suite.warmup, 1), window=window,
                                    on_sample=self.on_sample)  # fmt: skip
            network_input = pipeline.network_input
        finally:
            if pipeline is not None:
                pipeline.close()
        scores = score_clip(labels, clip.labels, details.pop("classes"))
        stream = None
        if case.stream and file is not None:
            from segbench.measure.stream import measure_stream

            stream = measure_stream(file, clip.video, backend=case.backend, threads=self.suite.threads)
        return {
            **({"stream": stream} if stream is not None else {}),
            "status": "ok",
            **details,
            "video": clip.describe(),
            "network_input": network_input,
            "timing": timed.as_dict(),
            "resources": sampler.summary(window),
            "accuracy": {
                "reference": REFERENCE_WORDS,
                "pixel_agreement": accuracy.pixel_agreement(labels, truth_reference),
                "clip": scores.as_dict(),
            },
            "network": {"absent": "the bare network is timed on the photo cases"},
        }

    def _open(self, case: Case, file: Path | None) -> tuple[Any, dict[str, Any]]:
        if case.is_baseline:
            from segbench.cases.baseline import EagerPipeline

            reference = self.reference(case.model)
            pipeline = EagerPipeline(reference, case.device, autograd=case.autograd)
            details = {
                "file": None,
                "steps": f"PIL image -> {pipeline.transforms_name} -> eager model (aux head included, "
                f"{'autograd on' if case.autograd else 'no_grad'}) "
                "-> F.interpolate -> argmax",
                "classes": reference.card.classes,
            }
            return pipeline, details
        import segrt

        seg = segrt.load(file, backend=case.backend, threads=self.suite.threads)
        from segbench.cases.budgeted import budget_details

        details = {
            "file": str(file),
            "file_precision": seg.card.precision,
            **({"accuracy_budget": budget_details(seg.card)} if case.max_miou_drop is not None else {}),
            "steps": "fused graph: uint8 image in, labels out" if seg.card.fused else "host pre -> graph -> host post",
            "classes": seg.classes,
        }
        return _SegmenterCall(seg, confidence=case.confidence), details

    def _time(self, call: Callable[[], dict[str, float]], frames: int, window: Window | None = None) -> Timed:
        suite = self.suite
        return time_calls(
            call,
            frames_per_call=frames,
            warmup=max(suite.warmup - 1, 0),
            iterations=suite.iterations,
            min_seconds=suite.min_seconds,
            seconds=suite.seconds,
            window=window,
            on_sample=self.on_sample,
        )

    def _camera(self, case: Case, call: Callable[[], object]) -> dict[str, Any] | None:
        """The case at the suite's camera rate (batch 1 only: a camera delivers one frame at a time)."""
        if self.suite.camera_fps is None or case.batch != 1:
            return None
        from segbench.measure.camera import run_at_camera_rate

        return run_at_camera_rate(call, self.suite.camera_fps, self.suite.camera_seconds).as_dict()

    def _alternated_network(self, case: Case, batch: np.ndarray, call: Callable[[], object]) -> dict[str, Any]:
        """The bare network on the same backend and precision (--no-fuse graph, tensor already pre-processed),
        timed in blocks alternating with the case's own call, so the share outside the network sees one load."""
        if case.max_miou_drop is not None:
            return {"absent": "a graph chosen against an accuracy budget has no --no-fuse twin with the same nodes"}
        if case.file is not None and case.fused:
            return {"absent": "a fused file run as given has no --no-fuse twin made with it"}
        import segrt
        from segrt.image import preprocess

        try:
            file = self._file(case, fused=False)  # an unfused file is its own bare network
            seg = segrt.load(file, backend=case.backend, threads=self.suite.threads)
        except SegError as exc:
            return {"absent": f"no --no-fuse graph at this precision: {exc}"}
        try:
            tensor = preprocess(batch, seg.card)
            for _ in range(max(self.suite.warmup, 1)):
                seg.backend.run(tensor)
            suite = self.suite
            timed = time_alternating(
                call,
                lambda: seg.backend.run(tensor),
                iterations=suite.iterations,
                min_seconds=suite.min_seconds,
                seconds=suite.seconds,
            )
        finally:
            seg.close()
        return {
            "file": str(file),
            "input": list(tensor.shape),
            "p50_ms": float(np.median(timed.flat(1))),
            "alternated_e2e_p50_ms": float(np.median(timed.flat(0))),
            "samples_ms": timed.second_ms,
            "alternated_e2e_samples_ms": timed.first_ms,
            "outside": outside_share(timed.first_ms, timed.second_ms),
        }

    def _confidence_cost(self, case: Case, batch: np.ndarray, call: Callable[[], object]) -> dict[str, Any]:
        """This call alternated with the labels-only graph's (segbench.measure.confidence)."""
        import segrt
        from segbench.measure.confidence import measure_confidence_cost

        suite = self.suite
        with segrt.load(self._file(replace(case, confidence=False), fused=True), backend=case.backend,
                        threads=suite.threads) as labels_only:  # fmt: skip
            return measure_confidence_cost(call, lambda: labels_only(batch), iterations=suite.iterations,
                                           min_seconds=suite.min_seconds, seconds=suite.seconds)  # fmt: skip

    def _tail(
        self, case: Case, file: Path | None, batch: np.ndarray, call: Callable[[], object], timed: Any
    ) -> dict[str, Any]:
        """The fused tail's share of the call and its bytes at 1080x1920 (segbench.measure.tail); the notebook's own
        tail (its "post" stage: interpolate, argmax) for the baseline."""
        from segbench.measure import tail

        if case.is_baseline:
            stages = timed.as_dict()["stages"]
            post, whole = stages.get("post", {}).get("mean"), timed.stats().mean
            classes = self.reference(case.model).card.num_classes
            return {"share": post / whole if post else None, "bytes_1080p": tail.eager_tail_bytes(classes)}
        providers = BACKENDS[case.backend].providers if case.backend in BACKENDS else ()
        if file is None or not case.fused or file.suffix != ".onnx" or not providers:
            return {"absent": "the tail is cut out of a fused ONNX graph run on ONNX Runtime"}
        import onnxruntime as ort

        def session(model: bytes) -> Any:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            if self.suite.threads:
                options.intra_op_num_threads = self.suite.threads
            return ort.InferenceSession(model, options, providers=list(providers))

        suite = self.suite
        return tail.measure_tail(
            file,
            batch,
            call,
            session,
            iterations=suite.iterations,
            min_seconds=suite.min_seconds,
            seconds=suite.seconds,
        )

    def _dataset_score(self, case: Case, predict: Callable[[np.ndarray], np.ndarray], classes: Any) -> dict[str, Any]:
        """mIoU of this pipeline on the labelled set (once per pipeline, whatever the batch and shape)."""
        root = self.dataset or case.model.dataset
        if root is None:
            return {"absent": "no labelled set (--dataset DIR, or dataset = in the suite)"}
        key = (case.model, case.pipeline)
        if key not in self.dataset_scores:
            try:
                samples = accuracy.open_dataset(root)
                self.dataset_scores[key] = scoring.score_dataset(predict, samples, classes).as_dict()
            except SegError as exc:
                self.dataset_scores[key] = {"absent": f"{root}: {exc}"}
        return self.dataset_scores[key]

    def reference_scores(self) -> dict[str, Any]:
        """The FP32 PyTorch reference's own mIoU per model, so each case's drift in points is visible."""
        from segexport.parity import torch_labels

        scores: dict[str, Any] = {}
        for spec, reference in self.references.items():
            root = self.dataset or spec.dataset
            if root is None:
                continue
            try:
                samples = accuracy.open_dataset(root)
                predict = lambda image, r=reference: torch_labels(r.model, np.array(image), r.card)[0]  # noqa: E731
                scores[spec.label] = scoring.score_dataset(predict, samples, reference.card.classes).as_dict()
            except SegError as exc:
                scores[spec.label] = {"absent": f"{root}: {exc}"}
        return scores


class _SegmenterCall:
    """A Segmenter with the EagerPipeline's call/timings/network_input/close shape."""

    def __init__(self, seg: Any, *, confidence: bool = False) -> None:
        self.seg = seg
        self.confidence = confidence  # fetch the confidence map too (its cost is the case's), then drop it
        self.network_input: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.network_input = list(self.seg.card.network_size(*batch.shape[1:3]))
        return self.seg(batch, confidence=True)[0] if self.confidence else self.seg(batch)

    @property
    def timings(self) -> dict[str, float]:
        return self.seg.timings

    def close(self) -> None:
        self.seg.close()


def timed_network(timed: Timed) -> dict[str, Any]:
    """The baseline's network time is its own "compute" stage: the eager model, aux head included.

    Stage and whole call come from the same calls, so they are paired by construction.
    """
    samples = timed.stages_ms.get("compute")
    if not samples:
        return {"absent": "the baseline recorded no compute stage"}
    return {
        "file": None,
        "input": None,
        "p50_ms": float(np.median(samples)),
        "from": "the compute stage above",
        "outside": outside_share([[v] for v in timed.e2e_ms], [[v] for v in samples]),  # each call its own round
    }


OUR_PACKAGES = ("segbench", "segexport", "segrt")


def missing_package(exc: Exception) -> str | None:
    """What to install, when `exc` is a third-party package that is not installed; None for anything else.

    A module of ours that fails to import is a bug, and stays a failure.
    """
    if not isinstance(exc, ModuleNotFoundError) or not exc.name or exc.name.split(".")[0] in OUR_PACKAGES:
        return None
    return f"{exc.name} is not installed; install the benchmark extra: pip install 'segexport[bench]'"


def describe(case: Case) -> dict[str, Any]:
    return {
        "id": case.id,
        "model": case.model.name,
        "label": case.model.label,
        "export_options": case.model.export_options(),
        "backend": case.backend,
        "precision": case.precision,
        "fused": case.fused,
        "device": case.device,
        "autograd": case.autograd,
        "max_miou_drop": case.max_miou_drop,
        "pipeline": case.pipeline,
        "batch": case.batch,
        "height": case.height,
        "width": case.width,
        "clip": str(case.clip) if case.clip is not None else None,
        "given_file": str(case.file) if case.file is not None else None,  # run as it is, not exported
    }
