"""A Triton server as a backend: `segrt.load("http://127.0.0.1:8000/unet_shapes")` (or `grpc://...:8001/...`).

The model's card travels in its config.pbtxt (written by `segexport --triton`), so the Segmenter
has the same classes and palette as a local one. The server does every step of the frame, so the
client sends the uint8 images and gets the labels back, whatever graph the server runs.
tritonclient is imported lazily: without it, one sentence says what to install.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from segrt.errors import SegError, first_line, require
from segrt.meta import ModelCard
from segrt.timing import stopwatch

INSTALL = "install the serving extra: pip install 'segexport[serve]' (or just tritonclient[http,grpc])"
CARD_PARAMETER = "segexport.card"
SCHEMES = {"http": 8000, "grpc": 8001}
UNBOUNDED = 1 << 30  # an ONNX graph's image size limit: none


def is_server_url(text: object) -> bool:
    """Whether `text` names a server (http:// or grpc://) rather than a file."""
    return isinstance(text, str) and re.match(r"^(http|grpc)://", text) is not None


@dataclass(frozen=True)
class ServerAddress:
    """`http://host:port/model` split into its parts (also `.../v2/models/model[/versions/N]`)."""

    scheme: str
    host: str
    port: int
    model: str
    version: str = ""

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        version = f"/versions/{self.version}" if self.version else ""
        return f"{self.scheme}://{self.endpoint}/{self.model}{version}"


def parse_server_url(text: str) -> ServerAddress:
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    path = parts.path.strip("/")
    match = re.fullmatch(r"(?:v2/models/)?([^/]+)(?:/versions/(\d+))?", path)
    if parts.scheme not in SCHEMES or not parts.hostname or not match:
        raise SegError(
            f"{text}: not a model on a Triton server; write http://HOST:PORT/MODEL (HTTP, default port 8000) or "
            f"grpc://HOST:PORT/MODEL (gRPC, 8001)"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    try:
        port = parts.port or SCHEMES[parts.scheme]
    except ValueError:
        raise SegError(f"{text}: the port is not a number") from None
    return ServerAddress(parts.scheme, host, port, match.group(1), match.group(2) or "")


class TritonBackend:
    """One client connection to one served model (not shared between threads: make one per thread).

    `run` sends a uint8 N x H x W x 3 batch as one request and returns the N x H x W labels; the server's
    dynamic batcher may join it with other clients' requests. `timings["infer"]` is the round trip.
    """

    def __init__(self, address: ServerAddress, *, timeout_s: float = 120.0) -> None:
        self.address = address
        self.name = f"triton-{address.scheme}"
        self.device = f"server {address.endpoint}"
        self.timings: dict[str, float] = {}
        self.timeout_s = timeout_s
        self._module: Any = require(f"tritonclient.{address.scheme}", INSTALL)
        self._client: Any = self._connect()
        config = self._model_config()
        self.max_batch_size = int(config.get("max_batch_size", 0))
        self.served_card, self.served_sha256 = _served_card(config, str(address))
        self.input_name, self.output_name, self.confidence_name = _io_names(
            config, str(address), self.served_card.confidence_name
        )

    def _connect(self) -> Any:
        module, address = self._module, self.address
        try:
            if address.scheme == "http":
                client = module.InferenceServerClient(
                    address.endpoint, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
                )
            else:
                client = module.InferenceServerClient(address.endpoint)
            ready = client.is_model_ready(address.model, address.version)
        except Exception as exc:  # connection refused, DNS, TLS: tritonclient raises many kinds
            raise SegError(
                f"{address}: cannot reach a Triton server at {address.endpoint} ({_reason(exc)}); "
                f"start one with `segserve REPO`"
            ) from None
        if not ready:
            served = _ready_models(client)
            raise SegError(
                f"{address}: the server has no ready model {address.model!r}; it serves: "
                f"{', '.join(served) or 'nothing'}"
            )
        return client

    def _model_config(self) -> dict[str, Any]:
        try:
            if self.address.scheme == "http":
                config = self._client.get_model_config(self.address.model, self.address.version)
            else:
                config = self._client.get_model_config(self.address.model, self.address.version, as_json=True)
                config = config["config"]
        except Exception as exc:
            raise SegError(f"{self.address}: cannot read the model's configuration ({_reason(exc)})") from None
        if self.address.scheme == "grpc":  # gRPC's JSON spells fields in camelCase
            config = {_snake(key): value for key, value in config.items()}
            config["max_batch_size"] = config.get("max_batch_size", 0)
        return config

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._infer(batch, [self.output_name])[0]

    def run_with_confidence(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and confidence maps of a model served with its confidence output (exported with --confidence)."""
        if self.confidence_name is None:
            raise SegError(f"{self.address}: the served model has no confidence output; export it with --confidence")
        labels, confidence = self._infer(batch, [self.output_name, self.confidence_name])
        return labels, confidence

    def _infer(self, batch: np.ndarray, names: list[str]) -> list[np.ndarray]:
        if self._client is None:
            raise SegError(f"{self.address}: this Segmenter was closed; load the model again")
        module = self._module
        self.timings = {}
        request = module.InferInput(self.input_name, list(batch.shape), "UINT8")
        request.set_data_from_numpy(np.ascontiguousarray(batch))
        wanted = [module.InferRequestedOutput(name) for name in names]
        extra = {"client_timeout": self.timeout_s} if self.address.scheme == "grpc" else {}
        try:
            with stopwatch(self.timings, "infer"):
                result = self._client.infer(
                    self.address.model, [request], model_version=self.address.version, outputs=wanted, **extra
                )
        except Exception as exc:
            raise SegError(
                f"{self.address}: the server answered a {tuple(batch.shape)} batch with an error: {_reason(exc)}"
            ) from None
        arrays = [result.as_numpy(name) for name in names]
        for name, array in zip(names, arrays, strict=True):
            if array is None:
                raise SegError(f"{self.address}: the reply has no {name!r} output")
        return arrays

    def max_batch_shape(self) -> tuple[int, ...] | None:
        """Requests of at most max_batch_size images; a fused engine's profile bounds the image size too. An
        unfused engine's does not: the server resizes any image to the network size first, as segrt does."""
        shapes = self.served_card.tensorrt.get("image_shapes") if self.served_card.fused else None
        image_max = (shapes or {}).get("max")
        height, width = (int(image_max[1]), int(image_max[2])) if image_max else (UNBOUNDED, UNBOUNDED)
        return (max(self.max_batch_size, 1), height, width, 3)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # a connection the server dropped is closed all the same
                client.close()

    def __enter__(self) -> TritonBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_served(url: str, *, timeout_s: float = 120.0) -> Any:
    """A `Segmenter` over the model at `url` (see `parse_server_url`), with the served card's classes and palette."""
    from segrt.segmenter import Segmenter

    backend = TritonBackend(parse_server_url(url), timeout_s=timeout_s)
    # the server runs every step, pre- and post-processing of an unfused graph included: to this side it is fused
    return Segmenter(backend, backend.served_card.replace(fused=True), str(backend.address))


def _io_names(config: dict[str, Any], where: str, confidence: str | None) -> tuple[str, str, str | None]:
    """The input's, the labels' and the confidence map's names (`confidence`, the served card's: None where the
    model has none)."""
    inputs, outputs = config.get("input") or [], config.get("output") or []
    names = [output["name"] for output in outputs]
    labels = [name for name in names if name != confidence]
    if len(inputs) != 1 or len(labels) != 1 or len(names) != 1 + (confidence is not None):
        raise SegError(
            f"{where}: not a segexport model (one batched uint8 image input, one labels output and the confidence "
            f"output its card names, if any)"
        )
    if config.get("max_batch_size", 0) < 1:
        raise SegError(f"{where}: not a segexport model (one batched uint8 image input and one labels output)")
    return inputs[0]["name"], labels[0], confidence


def _served_card(config: dict[str, Any], where: str) -> tuple[ModelCard, str]:
    entry = (config.get("parameters") or {}).get(CARD_PARAMETER) or {}
    text = entry.get("string_value") or entry.get("stringValue")
    if not text:
        raise SegError(f"{where}: its config.pbtxt carries no segexport model card; write it with segexport --triton")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise SegError(f"{where}: its model card is not valid JSON; write the repository again") from None
    return ModelCard.from_dict(data, source=f"{where} (served card)"), str(data.get("sha256", ""))


def _ready_models(client: Any) -> list[str]:
    try:
        index = client.get_model_repository_index()
    except Exception:
        return []
    entries = index if isinstance(index, list) else getattr(index, "models", [])
    names = []
    for entry in entries:
        name, state = (entry.get("name"), entry.get("state")) if isinstance(entry, dict) else (entry.name, entry.state)
        if state == "READY":
            names.append(name)
    return sorted(names)


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _reason(exc: BaseException) -> str:
    message = exc.message() if callable(getattr(exc, "message", None)) else str(exc)
    return first_line(message) if message and message.strip() else type(exc).__name__
