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


def test_an_engine_asked_of_a_folder_without_one_says_how_to_build_it(exported, tmp_path):
    folder = exported("unet").parent  # model.onnx and no engine
    graph = folder / "model.onnx"
    with pytest.raises(SegError) as refused:
        segrt.load(folder, backend="tensorrt")
    words = str(refused.value)
    assert "no model.engine or model.rtx.engine for precision fp32" in words, words
    assert f"build one from model.onnx with `segexport {graph} --engine`" in words and "--rtx" in words, words
    with pytest.raises(SegError, match=r"and no model\.fp16\.onnx to build one from; export and build with "
                       r"`segexport MODEL --fp16` \(or add --rtx\)"):  # fmt: skip
        segrt.load(folder, backend="tensorrt", precision="fp16")


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
    # read by segrt itself before ONNX Runtime, to check the card against the graph before a session is built
    for name, content, words in (
        ("random.onnx", np.random.default_rng(0).bytes(4096), "not a readable ONNX file"),
        ("empty.onnx", b"", "empty file, not an ONNX model"),
    ):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(SegError, match=rf"{name}: {words}"):
            segrt.load(tmp_path / name)


# --- what ONNX Runtime on a CPU cannot show: a stand-in backend ------------------------------------------


def _hammer(call, workers: int = 4, calls_each: int = 3) -> None:
    """Call `call(image)` from `workers` threads at once."""
    image = np.zeros((8, 8, 3), np.uint8)
    threads = [threading.Thread(target=lambda: [call(image) for _ in range(calls_each)]) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_segmenter_lets_one_thread_at_a_time_into_its_backend(stand_in):
    """ONNX Runtime is thread-safe anyway; a TensorRT context is not, so the Segmenter's lock must serialize."""
    unguarded = stand_in(delay_s=0.02).backend
    _hammer(lambda image: unguarded.run(image[None]))
    assert unguarded.most_inside > 1  # the detector sees overlapping callers when nothing serializes them
    seg = stand_in(delay_s=0.02)
    _hammer(seg)
    assert seg.backend.most_inside == 1 and len(seg.backend.batch_shapes) == 12


def test_images_larger_than_the_profile_are_refused_naming_the_limit(stand_in):
    seg = stand_in(limit=(2, 100, 120, 3))
    assert seg(np.zeros((100, 120, 3), np.uint8)).shape == (100, 120)
    for height, width in ((101, 50), (50, 121)):
        with pytest.raises(SegError, match=rf"image {height}x{width} is larger than stand-in\.engine's profile allows"):
            seg(np.zeros((height, width, 3), np.uint8))
    with pytest.raises(SegError, match=r"\(100x120\); resize it, or rebuild the engine with a larger --max-shape"):
        seg([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 130, 3), np.uint8)])
    assert seg.backend.batch_shapes == [(1, 100, 120, 3)]  # nothing too large reached the backend


def test_a_batch_above_the_profile_n_runs_in_profile_sized_chunks_in_order(stand_in):
    seg = stand_in(limit=(2, 64, 64, 3))
    batch = np.zeros((5, 10, 12, 3), np.uint8)
    batch[..., 0] = np.arange(5)[:, None, None]  # the stand-in's labels are the red channel mod 3
    labels = seg(batch)
    assert seg.backend.batch_shapes == [(2, 10, 12, 3), (2, 10, 12, 3), (1, 10, 12, 3)]
    assert labels.shape == (5, 10, 12) and [int(m[0, 0]) for m in labels] == [0, 1, 2, 0, 1]


def test_an_unbounded_backend_gets_the_whole_batch(stand_in):
    seg = stand_in()
    seg(np.zeros((7, 300, 400, 3), np.uint8))
    assert seg.backend.batch_shapes == [(7, 300, 400, 3)]


def test_leaving_a_with_block_closes_the_backend(stand_in):
    with stand_in() as seg:
        seg(np.zeros((4, 4, 3), np.uint8))
    assert seg.backend.closed
