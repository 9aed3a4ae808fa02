"""Through a real Triton server, segrt gives the labels, classes and palette a local Segmenter gives."""

from __future__ import annotations

import numpy as np
import pytest

import segrt


@pytest.mark.parametrize("scheme", ["http", "grpc"])
@pytest.mark.parametrize("name", ["unet", "unet-unfused"])
def test_served_labels_equal_local_labels(server, exported, photo, scheme, name):
    local = segrt.load(exported(name))
    served_name = "unet" if name == "unet" else "unet_unfused"
    base = server.url if scheme == "http" else server.grpc_url
    small = np.ascontiguousarray(photo[100:197, 200:331])
    with segrt.load(f"{base}/{served_name}") as seg:
        assert seg.classes == local.classes and seg.palette == local.palette
        assert seg.backend.name == f"triton-{scheme}"
        assert np.array_equal(seg(photo), local(photo))
        mixed = seg([photo, small, photo[::-1]])  # two sizes: two requests
        for got, image in zip(mixed, [photo, small, photo[::-1]], strict=True):
            assert np.array_equal(got, local(np.ascontiguousarray(image)))
        batch = np.stack([photo, photo[:, ::-1]])
        assert np.array_equal(seg(batch), local(batch))
        assert seg.timings["infer"] > 0


def test_a_batch_larger_than_max_batch_size_is_split_into_requests(server, exported, photo):
    local = segrt.load(exported("unet"))
    images = np.stack([np.roll(photo[:64, :80], shift, axis=1) for shift in range(11)])  # 11 > max_batch_size 8
    with segrt.load(f"{server.url}/unet") as seg:
        assert seg.backend.max_batch_shape()[0] == 8
        assert np.array_equal(seg(images), local(images))


def test_life_cycle_close_twice_and_run_after_close(server, photo):
    seg = segrt.load(f"{server.url}/unet")
    seg.close()
    seg.close()
    with pytest.raises(segrt.SegError, match="closed"):
        seg(photo)


def test_segrun_takes_a_server_url(server, exported, photo_path, tmp_path):
    from PIL import Image

    from segrt.cli import main

    assert main([f"{server.url}/unet", str(photo_path), "-o", str(tmp_path / "served"), "-q"]) == 0
    assert main([str(exported("unet")), str(photo_path), "-o", str(tmp_path / "local"), "-q"]) == 0
    served = np.asarray(Image.open(tmp_path / "served" / "astronaut.png"))
    local = np.asarray(Image.open(tmp_path / "local" / "astronaut.png"))
    assert np.array_equal(served, local)


def test_unknown_model_names_the_models_served(server):
    with pytest.raises(segrt.SegError, match=r"no ready model 'nope'; it serves: unet, unet_unfused"):
        segrt.load(f"{server.url}/nope")


def test_local_only_options_are_refused_for_a_server(server):
    with pytest.raises(segrt.SegError, match="apply to local files"):
        segrt.load(f"{server.url}/unet", precision="fp16")


def test_segbench_served_counts_only_the_timed_calls_batches(server, exported, photo):
    """segbench served: the server's batch statistics cover the timed calls, not the warm-up calls before them."""
    from segbench.cases.served import ServedSettings, run_served

    settings = ServedSettings(clients=(1, 3), requests=4, seconds=60, warmup=2, height=96, width=128)
    cases = run_served(f"{server.url}/unet", exported("unet"), photo, settings, log=lambda _: None)
    assert [(c["pipeline"], c["clients"]) for c in cases] == [
        ("served (http)", 1), ("local segrt", 1), ("served (http)", 3), ("local segrt", 3),
    ]  # fmt: skip
    for case in cases:
        assert case["calls"] == 4 * case["clients"] and case["label_agreement"] == 1.0
        if case["pipeline"].startswith("served"):
            executed = sum(int(size) * count for size, count in case["server_batches"].items())
            assert executed == case["frames"], case["server_batches"]  # 2 warm-up calls per client not counted
