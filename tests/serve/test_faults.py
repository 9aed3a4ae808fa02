"""Bad requests and faults against the real server: each gets an error naming the problem, and the server
goes on answering; load, disconnects and SIGTERM lose nothing and leave nothing hanging.

Every loop is bounded in requests and seconds and talks to 127.0.0.1 only. No assertion depends on
how fast the machine is: only on what was answered.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import segrt

IMAGE = (np.arange(64 * 80 * 3) % 251).astype(np.uint8).reshape(64, 80, 3)


def raw_infer(server, array: np.ndarray, *, datatype: str = "UINT8", model: str = "unet") -> str | None:
    """Send `array` as the `image` input with tritonclient's own request (no segrt checks); the error or None."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=60)
    request = httpclient.InferInput("image", list(array.shape), datatype)
    request.set_data_from_numpy(array)
    try:
        client.infer(model, [request])
        return None
    except InferenceServerException as exc:
        return exc.message()
    finally:
        client.close()


def assert_still_answers(server, exported) -> None:
    local = segrt.load(exported("unet"))
    with segrt.load(f"{server.url}/unet") as seg:
        assert np.array_equal(seg(IMAGE), local(IMAGE))


@pytest.mark.parametrize(
    ("array", "datatype", "words"),
    [
        (IMAGE[None].astype(np.float32), "FP32", r"data-type is 'FP32', but model 'unet' expects 'UINT8'"),
        (IMAGE[None, ..., 0].copy(), "UINT8", r"unexpected shape for input 'image'"),
        (np.zeros((1, 0, 0, 3), np.uint8), "UINT8", r"empty batch or image"),
        (np.zeros((1, 0, 80, 3), np.uint8), "UINT8", r"empty batch or image"),
        (np.zeros((9, 64, 80, 3), np.uint8), "UINT8", r"batch-size must be <= 8"),
    ],
    ids=["float32", "rank-3", "0x0-image", "empty-rows", "batch-beyond-max"],
)
def test_bad_request_gets_an_error_naming_it_and_the_next_is_answered(server, exported, array, datatype, words):
    import re

    message = raw_infer(server, array, datatype=datatype)
    assert message is not None and re.search(words, message), message
    assert_still_answers(server, exported)


def test_unknown_model_in_a_request_is_named(server, exported):
    message = raw_infer(server, IMAGE[None], model="no_such_model")
    assert message is not None and "no_such_model" in message, message
    assert_still_answers(server, exported)


def _infer_header(shape: list[int], size: int) -> bytes:
    header = {
        "inputs": [{"name": "image", "shape": shape, "datatype": "UINT8", "parameters": {"binary_data_size": size}}],
        "outputs": [{"name": "labels", "parameters": {"binary_data": True}}],
    }
    return json.dumps(header).encode()


def test_truncated_binary_payload_is_refused(server, exported):
    header = _infer_header([1, 64, 80, 3], IMAGE.nbytes)
    body = header + IMAGE.tobytes()[: IMAGE.nbytes // 2]  # the header promises the whole image
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request("POST", "/v2/models/unet/infer", body, {"Inference-Header-Content-Length": str(len(header))})
    reply = connection.getresponse()
    text = reply.read().decode()
    connection.close()
    assert reply.status == 400 and "unexpected" in text.lower(), (reply.status, text)
    assert_still_answers(server, exported)


def test_client_that_disconnects_mid_request_costs_nothing(server, exported):
    header = _infer_header([1, 64, 80, 3], IMAGE.nbytes)
    body = header + IMAGE.tobytes()
    host, port = server.url.removeprefix("http://").split(":")
    request_head = (
        f"POST /v2/models/unet/infer HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
        f"Inference-Header-Content-Length: {len(header)}\r\n\r\n"
    ).encode()
    for cut in (len(request_head) // 2, len(request_head) + len(body) // 2, len(request_head) + len(body)):
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall((request_head + body)[:cut])  # the last one sends all, then leaves before the reply
    assert_still_answers(server, exported)
    assert server.process.poll() is None


def server_rss_mib(server) -> float:
    """Resident memory of tritonserver and its backend stubs (its children), from /proc."""
    total, pending = 0, [server.process.pid]
    while pending:
        pid = pending.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
        total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
    return total / 1024


def served_counts(server, model: str = "unet") -> tuple[int, int]:
    """(successful inferences, failed requests) from Triton's statistics."""
    import urllib.request

    with urllib.request.urlopen(f"{server.url}/v2/models/{model}/stats", timeout=30) as response:
        stats = json.loads(response.read())["model_stats"][0]
    return int(stats["inference_count"]), int(stats["inference_stats"]["fail"]["count"])


def wait_until_counted(server, count: int, seconds: float = 30) -> None:
    """Triton counts a request as it releases it, just after the reply: wait (a while) until `count` are."""
    deadline = time.monotonic() + seconds
    while served_counts(server)[0] < count and time.monotonic() < deadline:
        time.sleep(0.1)


def run_clients(url: str, clients: int, requests: int, seconds: float, expected: np.ndarray) -> tuple[int, list[str]]:
    """`clients` threads, each with its own Segmenter, sending up to `requests` images or for `seconds`."""
    answered, errors, lock = [0], [], threading.Lock()
    start = threading.Barrier(clients)

    def client() -> None:
        try:
            with segrt.load(url) as seg:
                start.wait(timeout=60)
                deadline = time.monotonic() + seconds
                for _ in range(requests):
                    if time.monotonic() > deadline:
                        break
                    labels = seg(IMAGE)
                    with lock:
                        answered[0] += 1
                        if not np.array_equal(labels, expected):
                            errors.append("wrong labels")
        except Exception as exc:
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    return answered[0], errors


def test_sixteen_clients_lose_nothing_and_server_memory_stays_steady(server, exported):
    expected = segrt.load(exported("unet"))(IMAGE)
    url = f"{server.url}/unet"
    start_count = served_counts(server)[0]
    warm, _ = run_clients(url, 16, 10, 30.0, expected)  # warm-up: instances, arenas and connection buffers settle
    wait_until_counted(server, start_count + warm)  # else its last answers would be counted in the window below
    before_count, before_fail = served_counts(server)
    rss_before = server_rss_mib(server)
    answered, errors = run_clients(url, 16, 40, 30.0, expected)
    wait_until_counted(server, before_count + answered)
    after_count, after_fail = served_counts(server)
    rss_after = server_rss_mib(server)
    assert errors == []
    assert answered >= 16 and after_count - before_count == answered  # each answer was one inference: none lost
    assert after_fail == before_fail
    assert rss_after - rss_before < 32, f"server RSS {rss_before:.0f} -> {rss_after:.0f} MiB"


def test_sigterm_with_requests_in_flight_answers_or_refuses_each(fresh_server, exported):
    server = fresh_server(exit_timeout_s=10)
    expected = segrt.load(exported("unet"))(IMAGE)
    outcomes: list[str] = []
    lock = threading.Lock()

    def client() -> None:  # sends until refused: after the server is gone, the next request is refused for sure
        with segrt.load(f"{server.url}/unet") as seg:
            while True:
                try:
                    labels = seg(np.stack([IMAGE] * 4))
                    outcome = "answered" if all(np.array_equal(x, expected) for x in labels) else "wrong labels"
                except segrt.SegError:
                    outcome = "refused"
                with lock:
                    outcomes.append(outcome)
                if outcome != "answered":
                    return

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(outcomes) < 16 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.stop(timeout_s=60) == 0  # SIGTERM while the clients keep sending
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a request hung after SIGTERM"
    assert "wrong labels" not in outcomes and outcomes.count("answered") >= 16
    assert outcomes.count("refused") == 8  # each client's last request: the server stopped taking them


@pytest.fixture(scope="module")
def profiled_server(tmp_path_factory, exported):
    """A server of its own on the test ONNX whose card carries an engine's profile (at most 4x64x96): the
    client's refusal reads only the served card, so it runs without a GPU or an engine."""
    import shutil

    from segexport.triton.repository import write_repository
    from segrt.meta import read_card, write_sidecar
    from segrt.triton_server import Ports, ServerOptions, TritonServer, free_ports

    folder = tmp_path_factory.mktemp("profiled")
    onnx = folder / "model.onnx"
    shutil.copyfile(exported("unet"), onnx)
    profile = {"image_shapes": {"min": [1, 32, 32], "opt": [2, 64, 80], "max": [4, 64, 96]}}
    write_sidecar(onnx, read_card(exported("unet")).replace(tensorrt=profile))
    write_repository(onnx, folder / "repo", backend="python")
    options = ServerOptions(folder / "repo", ports=Ports(*free_ports()), exit_timeout_s=5)
    with TritonServer(options).start() as running:
        yield running


@pytest.mark.parametrize(("height", "width"), [(65, 96), (64, 97)], ids=["too-tall", "too-wide"])
def test_image_beyond_an_engines_profile_is_refused_before_it_is_sent(profiled_server, exported, height, width):
    before = served_counts(profiled_server)
    with segrt.load(f"{profiled_server.url}/unet") as seg:
        too_big = np.zeros((height, width, 3), np.uint8)
        with pytest.raises(segrt.SegError, match=rf"image {height}x{width} is larger than .*allows \(64x96\)"):
            seg(too_big)
        assert served_counts(profiled_server) == before  # refused on this side: the server never saw it
        assert np.array_equal(seg(IMAGE), segrt.load(exported("unet"))(IMAGE))  # 64x80 fits: answered
    assert served_counts(profiled_server) == (before[0] + 1, before[1])
