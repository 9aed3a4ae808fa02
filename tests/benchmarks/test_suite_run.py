"""A tiny real suite, end to end on CPU: exports, baseline, cases, skips, accuracy, and the three outputs.

The tiny U-Net keeps it quick; the graphs, runtime and reports are the real ones.
Cases whose backend this machine lacks must be listed as skipped with the reason;
on a machine that has them they must run.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segbench.cases import artifacts, runner
from segbench.cases.artifacts import unavailable_reason
from segbench.cases.suite import load_suite
from segbench.cli import main
from segbench.measure.timing import MIN_ROUNDS
from segrt.errors import MissingDependency, SegError
from segrt.image import write_labels_png

TINY_MODEL = ["--input-size", "32x32", "--unet-base", "4", "--unet-depth", "2"]

SUITE = """
name = "tiny"
description = "two shapes, every kind of case"
shapes = ["1x48x64", "2x48x64"]
warmup = 1
iterations = 3
camera_fps = 100
camera_seconds = 0.3
[[model]]
name = "unet"
input_size = "32x32"
unet_base = 4
unet_depth = 2
dataset = "{dataset}"
calib = "{calib}"
runs = [
  {{ backend = "ort-cpu" }},
  {{ backend = "ort-cpu", fused = false }},
  {{ backend = "ort-cpu", precision = "int8" }},
  {{ backend = "tensorrt", precision = "fp16" }},
  {{ backend = "ort-cuda" }},
]
"""


def write_calib(folder: Path, seed: int = 2, count: int = 3) -> Path:
    """A folder of `count` random frames to calibrate INT8 on: neither the photo nor the labelled set."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (40, 52, 3), dtype=np.uint8)).save(folder / f"frame{index}.png")
    return folder


def write_voc(root: Path, count: int = 2) -> Path:
    """A Pascal-VOC folder of `count` labelled images: class ids 0..2 with a void (255) border."""
    rng = np.random.default_rng(1)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    names = [f"im{i}" for i in range(count)]
    for name in names:
        image = rng.integers(0, 255, (40, 52, 3), dtype=np.uint8)
        labels = np.zeros((40, 52), np.uint8)
        labels[10:30, 5:25] = 1
        labels[5:20, 30:50] = 2
        labels[0, :] = 255
        Image.fromarray(image).save(root / "JPEGImages" / f"{name}.jpg")
        write_labels_png(root / "SegmentationClass" / f"{name}.png", labels)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(names) + "\n")
    return root


@pytest.fixture(scope="session")
def bench_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export cache for the segbench tests, so each model is exported once per session."""
    return tmp_path_factory.getbasetemp() / "segbench-cache"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, bench_cache: Path) -> tuple[int, Path, Path]:
    folder = tmp_path_factory.mktemp("tiny-suite")
    dataset = write_voc(folder / "voc")
    suite = folder / "tiny.toml"
    suite.write_text(SUITE.format(dataset=dataset, calib=write_calib(folder / "calib")))
    out = folder / "run"
    code = main([str(suite), "--out", str(out), "--cache", str(bench_cache)])
    return code, out, suite


def test_the_run_succeeds_and_writes_all_three_outputs(tiny_run: tuple[int, Path, Path]) -> None:
    code, out, _ = tiny_run
    assert code == 0
    assert {"results.json", "report.md", "latency.png", "stages.png", "speedup.png"} <= {p.name for p in out.iterdir()}
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind
    for name in ("latency.png", "stages.png", "speedup.png"):
        with Image.open(out / name) as png:
            assert png.format == "PNG" and png.width >= 800 and png.height >= 200


def test_every_case_is_measured_or_skipped_with_its_reason(tiny_run: tuple[int, Path, Path]) -> None:
    _, out, suite_path = tiny_run
    record = json.loads((out / "results.json").read_text())
    suite = load_suite(suite_path)
    assert [c["id"] for c in record["cases"]] == [c.id for c in suite.cases]
    assert len(record["cases"]) == 2 * 7  # 2 shapes x (baseline on CPU and CUDA + 5 runs)
    for case, result in zip(suite.cases, record["cases"], strict=True):
        reason = unavailable_reason(case)
        if reason is None:
            assert result["status"] == "ok", result.get("reason")
        else:
            assert result["status"] == "skipped" and result["reason"] == reason
    skipped = {c["pipeline"]: c["reason"] for c in record["cases"] if c["status"] == "skipped"}
    if "tensorrt fp16 fused" in skipped:
        assert "TensorRT" in skipped["tensorrt fp16 fused"]
    if "ort-cuda fp32 fused" in skipped:
        assert "CUDAExecutionProvider" in skipped["ort-cuda fp32 fused"]


def cases_by_pipeline(record: dict, batch: int) -> dict[str, dict]:
    return {c["pipeline"]: c for c in record["cases"] if c["status"] == "ok" and c["batch"] == batch}


def test_timings_are_consistent(tiny_run: tuple[int, Path, Path]) -> None:
    record = json.loads((tiny_run[1] / "results.json").read_text())
    for batch in (1, 2):
        cases = cases_by_pipeline(record, batch)
        assert {"pytorch-eager cpu", "ort-cpu fp32 fused", "ort-cpu fp32 unfused", "ort-cpu int8 fused"} <= set(cases)
        for case in cases.values():
            timing = case["timing"]
            samples = np.array(timing["e2e_samples_ms"])
            e2e = timing["e2e"]
            assert len(samples) == 3 and e2e["count"] == 3
            assert e2e["min"] <= e2e["p50"] <= e2e["p90"] <= e2e["p99"] <= e2e["max"]
            assert e2e["p50"] == pytest.approx(np.median(samples))
            assert e2e["fps"] == pytest.approx(batch * 1000 / samples.mean())
            stage_sum = sum(np.array(stage["samples_ms"]) for stage in timing["stages"].values())
            np.testing.assert_allclose(stage_sum, samples, rtol=1e-9)
            assert case["resources"]["host"]["rss_peak_mb"] > 50
            assert "absent" in case["resources"]["device"]
        assert set(cases["ort-cpu fp32 unfused"]["timing"]["stages"]) == {"pre", "infer", "post", "other"}
        assert set(cases["ort-cpu fp32 fused"]["timing"]["stages"]) == {"infer", "other"}
        assert set(cases["pytorch-eager cpu"]["timing"]["stages"]) == {"pre", "compute", "post", "other"}


def test_files_network_time_and_speedups(tiny_run: tuple[int, Path, Path]) -> None:
    record = json.loads((tiny_run[1] / "results.json").read_text())
    cases = cases_by_pipeline(record, 2)
    baseline = cases["pytorch-eager cpu"]
    assert baseline["speedup"]["p50"] == 1.0 and baseline["file"] is None
    assert baseline["steps"].startswith("PIL image -> torchvision v2 Resize([32, 32], antialias)")
    assert "aux head" in baseline["steps"]
    fused, unfused, int8 = cases["ort-cpu fp32 fused"], cases["ort-cpu fp32 unfused"], cases["ort-cpu int8 fused"]
    assert Path(fused["file"]).name == "model.onnx" and Path(unfused["file"]).parent.name.endswith("-unfused")
    assert Path(int8["file"]).name == "model.int8-cpu.onnx" and int8["file_precision"] == "int8-cpu"
    for case in (fused, unfused, int8):
        ratio = baseline["timing"]["e2e"]["p50"] / case["timing"]["e2e"]["p50"]
        assert case["speedup"] == {"over": baseline["id"], "p50": pytest.approx(ratio)}
        network = case["network"]
        assert network["input"] == [2, 3, 32, 32] and network["p50_ms"] > 0
        assert any(part.endswith("-unfused") for part in Path(network["file"]).parts)  # the --no-fuse graph
        # the bare network and the case's own call, timed in alternating blocks: the share comes from those
        blocks_e2e, blocks_network = network["alternated_e2e_samples_ms"], network["samples_ms"]
        assert len(blocks_e2e) == len(blocks_network) == case["outside_network"]["rounds"] >= 1
        assert sum(map(len, blocks_e2e)) >= 3 and sum(map(len, blocks_network)) >= 3
        flat = [np.median([v for block in blocks for v in block]) for blocks in (blocks_e2e, blocks_network)]
        assert network["p50_ms"] == pytest.approx(flat[1])
        assert case["outside_network_share"] == pytest.approx(1 - flat[1] / flat[0])
        outside = case["outside_network"]
        assert outside["low"] <= outside["share"] <= outside["high"]
        assert outside["resolved"] == (outside["low"] > 0 and outside["rounds"] >= MIN_ROUNDS)
    assert fused["network"]["file"] == unfused["network"]["file"]  # the same bare network for both
    base_outside = baseline["outside_network"]  # the eager model's compute stage, from the same calls
    assert base_outside["rounds"] == len(baseline["timing"]["e2e_samples_ms"])
    compute = np.median(baseline["timing"]["stages"]["compute"]["samples_ms"])
    assert base_outside["share"] == pytest.approx(1 - compute / baseline["timing"]["e2e"]["p50"])
    assert all(case["network_input"] == [32, 32] for case in cases.values())  # the baseline's preset is 32x32 too
    assert Path(int8["file"]).parent.name.startswith("calib-")  # keyed by its calibration images
    assert Path(int8["network"]["file"]).name == "model.int8-cpu.onnx"


def test_accuracy_against_the_reference_and_the_labelled_set(tiny_run: tuple[int, Path, Path]) -> None:
    record = json.loads((tiny_run[1] / "results.json").read_text())
    cases = cases_by_pipeline(record, 1)
    assert cases["ort-cpu fp32 fused"]["accuracy"]["pixel_agreement"] >= 0.999
    assert cases["ort-cpu fp32 unfused"]["accuracy"]["pixel_agreement"] >= 0.999
    assert 0.5 < cases["ort-cpu int8 fused"]["accuracy"]["pixel_agreement"] <= 1.0
    for case in cases.values():
        dataset = case["accuracy"]["dataset"]
        assert dataset["images"] == 2 and 0.0 <= dataset["miou"] <= 1.0
        assert set(dataset["per_class_iou"]) == set(record["references"]["unet@32x32"]["per_class_iou"])
    reference = record["references"]["unet@32x32"]
    fused = cases["ort-cpu fp32 fused"]["accuracy"]["dataset"]
    assert fused["miou"] == pytest.approx(reference["miou"], abs=0.01)  # FP32 ONNX is the FP32 reference


def test_report_names_every_figure_and_every_skip(tiny_run: tuple[int, Path, Path]) -> None:
    _, out, _ = tiny_run
    record = json.loads((out / "results.json").read_text())
    text = (out / "report.md").read_text()
    assert text.startswith("# segbench: tiny")
    assert "Each case: 1 warm-up calls, then at least 3 timed calls, on the photo astronaut.jpg" in text
    assert "| N x H x W | network H x W | e2e p50 ms |" in text and "## Failed" not in text
    assert "## What each figure includes" in text and "**e2e** (end to end)" in text
    for case in record["cases"]:
        if case["status"] == "ok":
            row = f"| {case['label']} | {case['pipeline']} | {case['batch']}x{case['height']}x{case['width']} |"
            assert row in text
        else:
            assert case["reason"] in text
    for name in ("latency.png", "stages.png", "speedup.png"):
        assert f"]({name})" in text
    assert "## unet@32x32: IoU per class on the labelled set (2 images)" in text
    env = record["environment"]
    assert env["cores_logical"] >= 1 and env["cpu"] and env["versions"]["onnxruntime"] and env["versions"]["torch"]
    assert env["git"] is None or len(env["git"]["commit"]) == 40


def test_batch_1_cases_also_run_at_camera_rate(tiny_run: tuple[int, Path, Path]) -> None:
    _, out, _ = tiny_run
    record = json.loads((out / "results.json").read_text())
    assert (record["suite"]["camera_fps"], record["suite"]["camera_seconds"]) == (100.0, 0.3)
    ok = [c for c in record["cases"] if c["status"] == "ok"]
    assert {c["batch"] for c in ok if "camera" in c} == {1}  # a camera delivers one frame at a time
    assert all("camera" in c for c in ok if c["batch"] == 1)
    text = (out / "report.md").read_text()
    assert "## At camera rate: a frame every 10.0 ms (100 FPS) for 0.3 s" in text
    for case in (c for c in ok if c["batch"] == 1):
        camera = case["camera"]
        assert camera["frames_offered"] == 30
        assert camera["frames_processed"] + camera["frames_dropped"] == 30 and camera["frames_processed"] >= 1
        assert len(camera["latencies_ms"]) == camera["frames_processed"]
        # every processed frame waits a positive time for its labels; late ones are among the processed. (Not
        # compared with the latency loop's times: the machine's load can change between the two loops.)
        assert min(camera["latencies_ms"]) > 0 and camera["frames_late"] <= camera["frames_processed"]
        assert camera["capture_to_labels_ms"]["p50"] <= camera["capture_to_labels_ms"]["max"]
        assert f"| {case['label']} | {case['pipeline']} | 48x64 | 30 | {camera['frames_processed']} |" in text


def test_an_interrupted_run_leaves_no_results(
    tiny_run: tuple[int, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bench_cache: Path
) -> None:
    _, _, suite = tiny_run
    calls = []
    real = runner.Runner.run_case

    def interrupted(self: runner.Runner, case: object) -> dict:
        calls.append(case)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, case)

    monkeypatch.setattr(runner.Runner, "run_case", interrupted)
    out = tmp_path / "run"
    assert main([str(suite), "--out", str(out), "--cache", str(bench_cache), "--iterations", "1"]) == 130
    assert not (out / "results.json").exists() and not list(out.glob("*.png"))
    assert not list(out.glob(".*.tmp"))


FAILING = """
name = "failing"
shapes = ["1x48x64"]
warmup = 0
iterations = 1
baseline = false
[[model]]
name = "unet"
input_size = "32x32"
unet_base = 4
unet_depth = 2
calib = "{calib}"
runs = [
  {{ backend = "ort-cpu" }},
  {{ backend = "ort-cpu", precision = "int8" }},
  {{ backend = "ort-cpu", precision = "fp16" }},
]
"""


def test_a_failed_export_is_a_failure_with_its_reason_and_exit_1_a_missing_package_a_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bench_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = artifacts.run_export

    def exporter(request, log: object = None) -> None:
        if "int8-cpu" in request.precision.graphs:
            raise SegError("model.int8-cpu.onnx: label agreement with FP32 41.0 % is below --min-agreement 98 %")
        if "fp16" in request.precision.graphs:
            raise MissingDependency("modelopt is not installed; install the exporter's extra")
        real(request, log)

    monkeypatch.setattr(artifacts, "run_export", exporter)
    suite = tmp_path / "failing.toml"
    suite.write_text(FAILING.format(calib=write_calib(tmp_path / "calib", seed=5)))
    out = tmp_path / "run"
    assert main([str(suite), "--out", str(out), "--cache", str(bench_cache)]) == 1
    record = json.loads((out / "results.json").read_text())  # every output is still written
    statuses = {c["pipeline"]: (c["status"], c.get("reason", "")) for c in record["cases"]}
    assert statuses["ort-cpu fp32 fused"] == ("ok", "")
    assert statuses["ort-cpu int8 fused"] == ("failed", "export: model.int8-cpu.onnx: label agreement with FP32 "
                                              "41.0 % is below --min-agreement 98 %")  # fmt: skip
    assert statuses["ort-cpu fp16 fused"] == ("skipped", "modelopt is not installed; install the exporter's extra")
    report = (out / "report.md").read_text()
    assert "**1 of 3 cases failed**" in report
    failed_section = report[report.index("## Failed") : report.index("## Skipped")]
    assert "label agreement with FP32 41.0 %" in failed_section and "modelopt" not in failed_section
    assert {"report.md", "latency.png", "stages.png", "speedup.png"} <= {p.name for p in out.iterdir()}
    err = " ".join(capsys.readouterr().err.split())
    assert "✗ failed" in err and "1 of 3 cases failed" in err and "exit code 1" in err


def test_calibrating_on_the_photo_the_run_scores_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segexport.defaults import ASSETS

    calib = write_calib(tmp_path / "calib")
    (calib / "copy.jpg").write_bytes((ASSETS / "astronaut.jpg").read_bytes())
    suite = tmp_path / "failing.toml"
    suite.write_text(FAILING.format(calib=calib))
    out = tmp_path / "run"
    assert main([str(suite), "--out", str(out), "--cache", str(tmp_path / "cache")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "INT8 calibration" in err and "copy.jpg" in err and "astronaut.jpg" in err
    assert not (out / "results.json").exists() and not (tmp_path / "cache").exists()


VIDEO_SUITE = """
name = "tiny-video"
shapes = ["1x48x64"]
warmup = 1
iterations = 3
[generate]
shapes = {{ out = "{root}/shapes", train = 6, val = 2, seed = 5 }}
clip = {{ out = "{root}/clip", frames = 6, size = "64x80", fps = 12 }}
[[model]]
name = "unet"
input_size = "32x32"
unet_base = 4
unet_depth = 2
dataset = "{root}/shapes"
calib = "{root}/shapes/ImageSets/Segmentation/train.txt"
video = "{root}/clip"
runs = [
  {{ backend = "ort-cpu" }},
  {{ backend = "ort-cpu", precision = "fp16" }},
  {{ backend = "ort-cpu", precision = "int8" }},
  {{ backend = "tensorrt", precision = "fp16" }},
]
"""


@pytest.fixture(scope="session")
def video_run(tmp_path_factory: pytest.TempPathFactory, bench_cache: Path) -> tuple[int, Path, Path, str]:
    """A suite whose labelled set and clip do not exist yet: the run makes them, then goes over the clip."""
    pytest.importorskip("cv2")
    root = tmp_path_factory.mktemp("video-suite")
    suite = root / "video.toml"
    suite.write_text(VIDEO_SUITE.format(root=root))
    out = root / "run"
    err = io.StringIO()  # a session fixture cannot take capsys
    with contextlib.redirect_stderr(err):
        code = main([str(suite), "--out", str(out), "--cache", str(bench_cache)])
    return code, out, root, err.getvalue()


def test_the_first_run_makes_the_generated_sets_with_progress_and_says_so(video_run) -> None:
    code, out, root, err = video_run
    assert code == 0, err
    assert (root / "shapes" / "dataset.json").is_file() and (root / "clip" / "clip.json").is_file()
    err = " ".join(err.split())
    assert f"made the labelled shapes set {root / 'shapes'} (6 train + 2 val images, seed 5)" in err
    assert f"made the labelled clip {root / 'clip'} (6 frames of 64x80 at 12 FPS, seed 0)" in err
    record = json.loads((out / "results.json").read_text())
    assert [g["made_now"] for g in record["suite"]["generated"]] == [True, True]
    assert "made for this run" in (out / "report.md").read_text()


def test_each_pipeline_goes_over_the_clip_frame_by_frame(video_run) -> None:
    _, out, root, _ = video_run
    record = json.loads((out / "results.json").read_text())
    clip_cases = {c["pipeline"]: c for c in record["cases"] if c["clip"]}
    suite = {case.id: case for case in load_suite(root / "video.toml").cases}
    assert set(clip_cases) == {"pytorch-eager cpu", "pytorch-eager cuda", "ort-cpu fp32 fused", "ort-cpu fp16 fused",
                               "ort-cpu int8 fused", "tensorrt fp16 fused"}  # fmt: skip
    assert all(c["id"].endswith("| clip clip") for c in clip_cases.values())
    baseline = clip_cases["pytorch-eager cpu"]
    for case in clip_cases.values():
        reason = unavailable_reason(suite[case["id"]])
        if reason is not None:  # no TensorRT or CUDA here: skipped with the reason; where there is, measured
            assert case["status"] == "skipped" and case["reason"] == reason
            continue
        assert case["status"] == "ok", case.get("reason")
        assert (case["height"], case["width"], case["batch"]) == (64, 80, 1)
        assert case["video"] == {"folder": str(root / "clip"), "video": str(root / "clip" / "clip.avi"), "frames": 6,
                                 "height": 64, "width": 80, "fps": 12.0}  # fmt: skip
        assert case["timing"]["e2e"]["count"] == 6 and len(case["timing"]["e2e_samples_ms"]) == 6
        scores = case["accuracy"]["clip"]
        assert scores["frames"] == 6 and len(scores["miou_per_frame"]) == 6 and len(scores["flicker_per_frame"]) == 5
        assert 0.0 <= scores["flicker"] <= 1.0 and scores["flicker_stable_pixels"] > 0.5 * 5 * 64 * 80
        assert scores["flicker_changed_pixels"] <= scores["flicker_stable_pixels"]
        if case["device"] == "cpu":
            ratio = baseline["timing"]["e2e"]["p50"] / case["timing"]["e2e"]["p50"]
            assert case["speedup"] == {"over": baseline["id"], "p50": pytest.approx(ratio)}
    fp32 = clip_cases["ort-cpu fp32 fused"]
    assert fp32["accuracy"]["pixel_agreement"] >= 0.999  # FP32 ONNX is the FP32 PyTorch reference


def test_the_report_and_plot_show_flicker_and_miou_over_the_clip(video_run) -> None:
    _, out, _, _ = video_run
    text = (out / "report.md").read_text()
    assert "## On video: unet@32x32 over clip (6 frames of 64x80 at 12 FPS, one frame per call, in order)" in text
    assert "**flicker** = share of pixels whose predicted label changes between consecutive frames where the " in text
    assert "| model | pipeline | e2e p50 ms | p99 | FPS | speed-up | agreement | mIoU over the clip | flicker |" in text
    assert "IoU per class over the clip (unet@32x32):" in text
    assert "](video-unet_32x32-clip.png)" in text
    with Image.open(out / "video-unet_32x32-clip.png") as png:
        assert png.format == "PNG" and png.width >= 800 and png.height >= 500
    photo_rows = [line for line in text.splitlines() if line.startswith("| unet@32x32 |") and "1x48x64" in line]
    record = json.loads((out / "results.json").read_text())
    measured = [c for c in record["cases"] if c["status"] == "ok" and not c["clip"]]
    assert len(measured) >= 4 and len(photo_rows) == 2 * len(measured)  # end to end and stages: the photo cases


def test_a_second_run_reuses_the_generated_sets(video_run, bench_cache: Path, monkeypatch) -> None:
    _, _, root, _ = video_run
    from segbench.data import clip, shapes

    monkeypatch.setattr(shapes, "generate", lambda *a, **k: pytest.fail("the shapes set was made again"))
    monkeypatch.setattr(clip, "generate_clip", lambda *a, **k: pytest.fail("the clip was made again"))
    out = root / "again"
    assert main([str(root / "video.toml"), "--out", str(out), "--cache", str(bench_cache), "--iterations", "1"]) == 0
    record = json.loads((out / "results.json").read_text())
    assert [g["made_now"] for g in record["suite"]["generated"]] == [False, False]


def test_a_clip_that_cannot_be_read_is_refused_before_the_run_folder(tmp_path: Path, capsys, bench_cache) -> None:
    pytest.importorskip("cv2")
    clip_dir = tmp_path / "clip"
    (clip_dir / "labels").mkdir(parents=True)
    (clip_dir / "drive.mp4").write_bytes(b"not a video" * 30)
    suite = tmp_path / "bad.toml"
    suite.write_text(FAILING.format(calib=write_calib(tmp_path / "calib")).replace(
        'calib = "', f'video = "{clip_dir}"\ncalib = "'
    ))  # fmt: skip
    out = tmp_path / "run"
    assert main([str(suite), "--out", str(out), "--cache", str(bench_cache)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"segbench: error: {clip_dir / 'drive.mp4'}: OpenCV cannot open this video" in err and "Traceback" not in err
    assert not out.exists()
