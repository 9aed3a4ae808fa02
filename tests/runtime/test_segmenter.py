"""segrt.load and Segmenter on ONNX Runtime CPU with real exported models."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

import segrt
from segrt.errors import MissingDependency, SegError
from segrt.meta import sidecar_path


@pytest.mark.parametrize("name", ["unet", "fcn50"])
def test_unfused_model_with_host_steps_gives_the_fused_labels(exported, name, photo):
    fused, unfused = segrt.load(exported(name)), segrt.load(exported(f"{name}-unfused"))
    assert fused.card.fused and not unfused.card.fused
    for image in (photo, np.ascontiguousarray(photo[50:331, 20:500])):
        assert (fused(image) == unfused(image)).mean() >= 0.999
    assert {"pre", "infer", "post"} <= set(unfused.timings) and "infer" in fused.timings


def test_batch_list_and_single_calls_agree(exported, photo):
    seg = segrt.load(exported("unet"))
    other = np.ascontiguousarray(photo[::-1])
    single = [seg(photo), seg(other)]
    batch = seg(np.stack([photo, other]))
    assert isinstance(batch, np.ndarray) and batch.shape == (2, 612, 640) and batch.dtype == np.uint8
    assert (batch[0] == single[0]).all() and (batch[1] == single[1]).all()
    small = np.ascontiguousarray(photo[:61, :45])
    mixed = seg([photo, small, other])
    assert [m.shape for m in mixed] == [(612, 640), (61, 45), (612, 640)]
    assert (mixed[0] == single[0]).all() and (mixed[2] == single[1]).all() and (mixed[1] == seg(small)).all()


def test_non_contiguous_views_give_the_same_labels(exported, photo):
    seg = segrt.load(exported("unet"))
    view = photo[::2, ::-2]
    assert (seg(view) == seg(np.ascontiguousarray(view))).all()


def test_classes_and_palette_come_from_the_card(exported):
    seg = segrt.load(exported("fcn50"))
    assert seg.classes[0] == "__background__" and len(seg.classes) == 21
    assert seg.palette[15] == (192, 128, 128)
    assert "fcn_resnet50" in repr(seg) and "ort-cpu" in repr(seg)


def test_one_segmenter_shared_by_four_threads_gives_serial_results(exported, photo):
    seg = segrt.load(exported("unet"))
    images = [np.ascontiguousarray(np.roll(photo, 37 * i, axis=1)) for i in range(8)]
    serial = [seg(im) for im in images]
    results: dict[int, np.ndarray] = {}

    def work(offset: int) -> None:
        for i in range(offset, len(images), 4):
            results[i] = seg(images[i])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all((results[i] == serial[i]).all() for i in range(len(images)))


def test_load_refuses_bad_requests_naming_the_file(exported, tmp_path):
    path = exported("unet")
    with pytest.raises(SegError, match="unknown backend 'cuda'"):
        segrt.load(path, "cuda")
    with pytest.raises(SegError, match="the tensorrt backend runs engines; build one with `segexport"):
        segrt.load(path, "tensorrt")
    with pytest.raises(SegError, match=r"nowhere\.onnx: no such file"):
        segrt.load(tmp_path / "nowhere.onnx")
    with pytest.raises(
        SegError, match=r"no model\.fp16\.onnx for precision fp16; export it with `segexport MODEL --fp16`"
    ):
        segrt.load(path.parent, precision="fp16")


def test_gpu_provider_missing_is_a_missing_dependency(exported):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(MissingDependency, match="install onnxruntime-gpu"):
        segrt.load(exported("unet"), "ort-cuda")


def test_a_card_describing_another_graph_is_refused(exported, tmp_path):
    fused_dir, unfused_dir = exported("unet").parent, exported("unet-unfused").parent
    target = tmp_path / "model.onnx"
    shutil.copy(unfused_dir / "model.onnx", target)
    card = segrt.meta.read_card(fused_dir / "model.onnx")
    segrt.meta.write_sidecar(target, card)  # a correct sha256, but a fused card on an unfused graph
    with pytest.raises(SegError, match=r"says fused .* but the graph's input is \['N', 3, 'H', 'W'\]"):
        segrt.load(target)
    sidecar_path(target).write_text("{}")
    with pytest.raises(SegError, match="records no sha256"):
        segrt.load(target)


def test_corrupt_onnx_is_a_clear_error(tmp_path):
    for name, content in (("random.onnx", np.random.default_rng(0).bytes(4096)), ("empty.onnx", b"")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(SegError, match=rf"{name}: ONNX Runtime cannot load it"):
            segrt.load(tmp_path / name)
