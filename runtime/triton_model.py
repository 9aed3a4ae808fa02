"""Triton's Python backend model that serves a segexport artefact through segrt (copied in as `1/model.py`).

It runs inside Triton's Python backend stub, which provides `triton_python_backend_utils`;
the stub's Python needs segrt installed (`pip install segexport`, plus `[tensorrt]` for engines).
Each request is an N x H x W x 3 uint8 batch; requests the dynamic batcher hands over together
that share an image size run as one segrt call. A graph exported with --confidence also answers
its confidence maps, output "confidence". Bad input is an error reply naming the problem,
never a crashed instance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # only inside Triton's Python backend stub

import segrt

FILE_PARAMETER = "segexport.file"


class TritonPythonModel:
    """One instance: one `segrt.Segmenter` on the file named in config.pbtxt's parameters."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        name = config["parameters"][FILE_PARAMETER]["string_value"]
        file = Path(args["model_repository"]) / args["model_version"] / name
        device = int(args.get("model_instance_device_id") or 0)
        self.seg = segrt.load(file, device=device)

    def execute(self, requests: list[Any]) -> list[Any]:
        images: list[np.ndarray | None] = []
        errors: list[str | None] = []
        for request in requests:
            batch = pb_utils.get_input_tensor_by_name(request, "image").as_numpy()
            problem = _problem(batch)
            images.append(None if problem else batch)
            errors.append(problem)
        answers = self._segment(images, errors)
        responses = []
        for answer, error in zip(answers, errors, strict=True):
            if error is not None or answer is None:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(error or "no answer")))
                continue
            outputs = [pb_utils.Tensor("labels", answer[0])]
            if answer[1] is not None:
                outputs.append(pb_utils.Tensor("confidence", answer[1]))
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses

    def _segment(self, images: list[np.ndarray | None], errors: list[str | None]) -> list[Any]:
        """(labels, confidence maps or None) per request; the requests of one image size run as one call (that is
        the dynamic batch)."""
        labels: list[Any] = [None] * len(images)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, batch in enumerate(images):
            if batch is not None:
                by_shape.setdefault(batch.shape[1:], []).append(index)
        for indices in by_shape.values():
            try:
                joined, maps = self._call(np.concatenate([images[i] for i in indices]))
            except segrt.SegError:
                for i in indices:  # run them one by one, so each request gets its own answer
                    labels[i], errors[i] = self._one(images[i])
                continue
            start = 0
            for i in indices:
                count = len(images[i])  # type: ignore[arg-type]
                labels[i] = (joined[start : start + count], None if maps is None else maps[start : start + count])
                start += count
        return labels

    def _call(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels, and the confidence maps of a graph that has them."""
        return self.seg(batch, confidence=True) if self.seg.has_confidence else (self.seg(batch), None)

    def _one(self, batch: np.ndarray | None) -> tuple[Any, str | None]:
        try:
            return self._call(batch), None  # type: ignore[arg-type]
        except segrt.SegError as exc:
            return None, str(exc)

    def finalize(self) -> None:
        self.seg.close()


def _problem(batch: np.ndarray) -> str | None:
    """What Triton's own checks let through but segrt cannot run: an empty batch or image."""
    if batch.ndim != 4 or batch.shape[-1] != 3:
        return f"image: expected N x H x W x 3 uint8, got {batch.dtype} {list(batch.shape)}"
    if 0 in batch.shape:
        return f"image: empty batch or image, shape {list(batch.shape)}; send at least one image of 1x1 pixels"
    return None
