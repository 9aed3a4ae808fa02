"""segrt's Triton side without a server: server URLs, what a missing tritonclient or server says, and
Triton's start-up failures read from its log into one line (the log lines are copied from real runs)."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import segrt
from segrt.backends import triton
from segrt.backends.triton import TritonBackend, is_server_url, parse_server_url
from segrt.meta import ModelCard
from segrt.triton_server import ServerOptions, explain_failure


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("http://127.0.0.1:8000/unet_shapes", ("http", "127.0.0.1", 8000, "unet_shapes", "")),
        ("grpc://localhost/unet", ("grpc", "localhost", 8001, "unet", "")),
        ("http://10.0.0.5:9000/v2/models/unet/versions/2", ("http", "10.0.0.5", 9000, "unet", "2")),
        ("http://[::1]:8000/unet", ("http", "[::1]", 8000, "unet", "")),
    ],
)
def test_server_urls_parse(url, parts):
    address = parse_server_url(url)
    assert (address.scheme, address.host, address.port, address.model, address.version) == parts
    assert is_server_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/", "https://host/unet", "http://host/a/b/c", "grpc://:1/m"])
def test_a_url_that_names_no_model_is_refused(url):
    with pytest.raises(segrt.SegError, match="not a model on a Triton server"):
        parse_server_url(url)


def test_model_files_are_not_urls():
    assert not is_server_url("build/unet/model.onnx") and not is_server_url(Path("http://x/y"))


def test_unreachable_server_or_missing_client_is_one_sentence():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/unet"
    if importlib.util.find_spec("tritonclient") is None:  # the torch-free runtime venv has no serving extra
        with pytest.raises(segrt.MissingDependency, match=r"pip install 'segexport\[serve\]'"):
            segrt.load(url)
    else:
        with pytest.raises(segrt.SegError, match=rf"cannot reach a Triton server at 127.0.0.1:{port}.*segserve"):
            segrt.load(url)


OPTIONS = ServerOptions(Path("build/triton"))
NO_ORT = (
    "E1201 21:39:44.915845 8290 model_lifecycle.cc:642] \"failed to load 'unet_shapes' version 1: Invalid argument: "
    "unable to find backend library for backend 'onnxruntime', try specifying runtime on the model configuration.\"\n"
    "error: creating server: Internal - failed to load all models"
)
PORT = (
    'E1201 21:39:51.753729 8384 main.cc:257] "failed to start HTTP service: Unavailable - '
    "Socket '127.0.0.1:18200' already in use \""
)
MISMATCH = (
    "E1201 pb_stub.cc] Failed to initialize: AttributeError: '_thread.RLock' object has no attribute '_recursion_count'"
)


def test_triton_start_failures_become_one_line_with_the_fix():
    line = explain_failure(NO_ORT, OPTIONS)
    assert "Triton refused model 'unet_shapes'" in line and "no onnxruntime backend" in line
    assert "--triton-backend python" in line and "\n" not in line
    assert "127.0.0.1:18200 is already in use" in explain_failure(PORT, OPTIONS)
    assert "a Python with a shared libpython" in explain_failure(MISMATCH, OPTIONS)
    other = 'I1201 21:39:44.9 8290 server.cc:1] "start"\nE1201 21:39:44.914518 8290 server.cc:241] "something broke"'
    assert explain_failure(other, OPTIONS) == "tritonserver stopped before it was ready: something broke"


class StandInClient:
    """What TritonBackend asks of tritonclient's HTTP client, answered for one served model without a server."""

    card = ModelCard("stand-in", ("background", "object"), ((0, 0, 0), (200, 0, 0)), (0.5,) * 3, (0.5,) * 3, (32, 32))

    def __init__(self, endpoint: str, **timeouts: float) -> None:
        self.endpoint = endpoint
        self.closes = 0

    def is_model_ready(self, model: str, version: str) -> bool:
        return True

    def get_model_config(self, model: str, version: str) -> dict:
        return {
            "max_batch_size": 8,
            "input": [{"name": "image"}],
            "output": [{"name": "labels"}],
            "parameters": {"segexport.card": {"string_value": self.card.to_json()}},
        }

    def infer(self, model: str, inputs: list, **options: object) -> SimpleNamespace:
        labels = (inputs[0].data[..., 0] % 2).astype(np.uint8)
        return SimpleNamespace(as_numpy=lambda name: labels)

    def close(self) -> None:
        self.closes += 1


class StandInInput:
    def __init__(self, name: str, shape: list[int], datatype: str) -> None:
        self.name = name

    def set_data_from_numpy(self, data: np.ndarray) -> None:
        self.data = data


def stand_in_tritonclient(monkeypatch, client: type = StandInClient) -> None:
    module = SimpleNamespace(InferenceServerClient=client, InferInput=StandInInput, InferRequestedOutput=lambda n: n)
    monkeypatch.setattr(triton, "require", lambda name, install: module)


def test_triton_backend_keeps_the_one_life_cycle(monkeypatch):
    """close() twice is fine, a run after close() is a SegError naming the server, and `with` closes."""
    stand_in_tritonclient(monkeypatch)
    batch = np.zeros((1, 4, 4, 3), np.uint8)
    with TritonBackend(parse_server_url("http://127.0.0.1:8000/unet")) as backend:
        client = backend._client
        assert backend.run(batch).shape == (1, 4, 4)
    assert client.closes == 1
    backend.close()  # a second close
    assert client.closes == 1
    with pytest.raises(segrt.SegError, match=r"http://127\.0\.0\.1:8000/unet: this Segmenter was closed"):
        backend.run(batch)


@pytest.mark.parametrize("fused", [True, False])
def test_a_served_engines_profile_bounds_the_image_only_when_the_engine_takes_the_image(monkeypatch, fused):
    """A fused engine takes the image itself, so its profile's largest image is the client's limit; an unfused
    engine's server resizes any image to the network size first, so the client sends any size, as segrt would."""
    engine = {"image_shapes": {"min": [1, 32, 32], "opt": [1, 64, 64], "max": [2, 96, 128]}}

    class EngineClient(StandInClient):
        card = StandInClient.card.replace(fused=fused, tensorrt=engine)

    stand_in_tritonclient(monkeypatch, EngineClient)
    with triton.open_served("http://127.0.0.1:8000/unet") as served:
        assert served.backend.max_batch_shape() == (8, *((96, 128) if fused else (triton.UNBOUNDED,) * 2), 3)
        large = np.zeros((200, 300, 3), np.uint8)
        if fused:
            refusal = r"image 200x300 is larger than http://127\.0\.0\.1:8000/unet's profile allows \(96x128\)"
            with pytest.raises(segrt.SegError, match=refusal):
                served(large)
        else:
            assert served(large).shape == (200, 300)
