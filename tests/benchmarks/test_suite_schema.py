"""The suite file schema: what it expands to, and one-line errors that name the file and the bad key or value."""

from __future__ import annotations

from pathlib import Path

import pytest

from segbench.cases.suite import load_suite
from segbench.cli import build_parser, main, suite_from_args
from segrt.errors import SegError

SUITES = Path(__file__).resolve().parents[2] / "benchmarks" / "suites"

VALID = """
name = "t"
shapes = ["1x64x80", "2x64x80"]
iterations = 3
[[model]]
name = "unet"
input_size = "64x64"
unet_base = 8
runs = [{ backend = "ort-cpu" }, { backend = "ort-cpu", fused = false }, { backend = "tensorrt", precision = "int8" }]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


def test_a_suite_expands_to_shapes_times_runs_with_the_baseline_added(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, VALID))
    ids = [case.id for case in suite.cases]
    # baseline on CPU, and on CUDA because a run (tensorrt) is on the GPU; per shape
    assert len(ids) == 2 * 5
    assert ids[0] == "unet@64x64 | pytorch-eager cpu | 1x64x80"
    assert "unet@64x64 | pytorch-eager cuda | 2x64x80" in ids
    assert "unet@64x64 | tensorrt int8 fused | 2x64x80" in ids
    assert suite.cases[0].model.export_options() == {"input_size": [64, 64], "unet_base": 8}
    assert suite.iterations == 3 and suite.warmup == 2 and suite.seconds is None
    assert any("added the pytorch-eager baseline" in note for note in suite.notes)


def test_camera_rate_comes_from_the_file_or_the_command_line(tmp_path: Path) -> None:
    path = write(tmp_path, "camera_fps = 30\ncamera_seconds = 5\n" + VALID)
    suite = load_suite(path)
    assert (suite.camera_fps, suite.camera_seconds) == (30.0, 5.0)
    args = build_parser().parse_args([str(path), "--camera-fps", "60"])
    assert (suite_from_args(args).camera_fps, suite_from_args(args).camera_seconds) == (60.0, 5.0)
    with pytest.raises(SegError, match=r"--camera-seconds -1\.0: must be positive"):
        suite_from_args(build_parser().parse_args([str(path), "--camera-seconds", "-1"]))
    assert load_suite(write(tmp_path, VALID)).camera_fps is None


def test_baseline_false_adds_none(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, "baseline = false\n" + VALID))
    assert not any(case.is_baseline for case in suite.cases)


@pytest.mark.parametrize("name", ["cpu-quick", "cpu-full", "cpu-budget", "gpu", "jetson"])
def test_shipped_suites_are_valid(name: str) -> None:
    suite = load_suite(SUITES / f"{name}.toml")
    assert suite.name == name and suite.cases
    assert any(case.is_baseline for case in suite.cases)


@pytest.mark.parametrize("name", ["cpu-quick", "cpu-full", "gpu", "jetson"])
def test_shipped_suites_calibrate_int8_on_the_shapes_train_split(name: str) -> None:
    int8_models = {c.model for c in load_suite(SUITES / f"{name}.toml").cases if c.precision == "int8"}
    assert {m.name for m in int8_models} == {"fcn_resnet50", "unet_shapes"}
    for model in int8_models:  # never the default (for fcn_resnet50 the folder of the photo the agreement is on)
        assert model.calib == Path("build/shapes/ImageSets/Segmentation/train.txt"), model.label


def test_cpu_full_has_the_cases_the_committed_results_need() -> None:
    pipelines = {(c.model.label, c.pipeline, c.batch) for c in load_suite(SUITES / "cpu-full.toml").cases}
    for batch in (1, 4):
        for pipeline in (
            "pytorch-eager cpu",
            "ort-cpu fp32 fused",
            "ort-cpu fp32 unfused",
            "ort-cpu fp16 fused",
            "ort-cpu int8 fused",
        ):
            assert ("fcn_resnet50@520x520", pipeline, batch) in pipelines


def test_cpu_full_samples_small_models_for_seconds_and_fcn_within_its_budget() -> None:
    suite = load_suite(SUITES / "cpu-full.toml")
    fcn_call_s, unet_slowest_call_s = 1.4, 0.09  # fcn_resnet50 batch 1, unet_shapes' slowest case (committed run)
    assert suite.iterations * fcn_call_s <= suite.seconds  # the count, not the budget, ends fcn's cases
    assert suite.min_seconds / unet_slowest_call_s >= 100 and suite.min_seconds <= suite.seconds


def test_min_seconds_from_the_file_or_the_command_line(tmp_path: Path) -> None:
    path = write(tmp_path, "min_seconds = 4\nseconds = 30\n" + VALID)
    suite = load_suite(path)
    assert (suite.iterations, suite.min_seconds, suite.seconds) == (3, 4.0, 30.0)
    assert suite_from_args(build_parser().parse_args([str(path), "--min-seconds", "8"])).min_seconds == 8.0
    with pytest.raises(SegError, match=r"minimum sampling time \(40 s\) is above its budget \(30 s\)"):
        suite_from_args(build_parser().parse_args([str(path), "--min-seconds", "40"]))
    with pytest.raises(SegError, match=r"--min-seconds 0\.0: must be positive"):
        suite_from_args(build_parser().parse_args([str(path), "--min-seconds", "0"]))
    assert load_suite(write(tmp_path, VALID)).min_seconds is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("iterations = 3", "iteration = 3"), "unknown key 'iteration' in the top level"),
        (('name = "unet"', 'name = "unet9"'), "model[0]: unknown model 'unet9'"),
        (('backend = "ort-cpu" }', 'backend = "ort-gpu" }'), "model[0].runs[0]: unknown backend 'ort-gpu'"),
        (('precision = "int8"', 'precision = "int4"'), "model[0].runs[2]: unknown precision 'int4'"),
        (("fused = false", "fuse = false"), "unknown key 'fuse' in model[0].runs[1]"),
        (('"2x64x80"', '"2x64"'), "shapes: '2x64' is not NxHxW"),
        (("iterations = 3", 'iterations = "3"'), "iterations must be int, not str"),
        (('backend = "ort-cpu" }', 'backend = "ort-cpu", device = "cuda" }'), "device applies to pytorch-eager only"),
        (('backend = "ort-cpu" }', 'backend = "ort-cpu", autograd = true }'), "autograd applies to pytorch-eager only"),
        (('{ backend = "ort-cpu" }', '{ backend = "pytorch-eager", autograd = 1 }'), "autograd must be bool, not int"),
        (("unet_base = 8", "unet_bas = 8"), "unknown key 'unet_bas' in model[0]"),
        (("[[model]]", "[model]"), "model must be list"),
        (("iterations = 3", "iterations = 3\ncamera_fps = 0"), "camera_fps and camera_seconds must be positive"),
        (("iterations = 3", 'iterations = 3\ncamera_fps = "30"'), "camera_fps must be int or float, not str"),
        (("iterations = 3", "iterations = 3\nmin_seconds = -1"), "min_seconds, seconds and threads positive"),
        (("iterations = 3", "iterations = 3\nmin_seconds = 9\nseconds = 5"), "min_seconds 9 is above the budget"),
    ],
)
def test_errors_name_the_file_and_the_key_in_one_line(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = write(tmp_path, VALID.replace(*change))
    with pytest.raises(SegError) as caught:
        load_suite(path)
    text = str(caught.value)
    assert message in text
    assert text.startswith(str(path)) and "\n" not in text


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SegError, match="not valid TOML"):
        load_suite(write(tmp_path, "name = \n"))
    with pytest.raises(SegError, match="no such suite file"):
        load_suite(tmp_path / "nope.toml")
    with pytest.raises(SegError, match="no \\[\\[model\\]\\] table"):
        load_suite(write(tmp_path, 'name = "empty"\n'))


def test_cli_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, VALID.replace('backend = "ort-cpu" }', 'backend = "onnx" }'))
    assert main([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown backend 'onnx'" in err and str(path) in err.replace("\n", "")
    assert main(["--model", "unet", "--backend", "cuda"]) == 2
    assert "command line: model[0].runs[0]: unknown backend 'cuda'" in capsys.readouterr().err.replace("\n", "")
    with pytest.raises(SystemExit) as exited:
        main(["--iterations", "many"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--iterations" in err


def test_list_prints_the_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(write(tmp_path, VALID)), "--list", "--no-baseline"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "unet@64x64 | ort-cpu fp32 fused | 1x64x80" and len(lines) == 6


def test_no_baseline_adds_none_and_leaves_no_note_saying_it_did(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    suite = suite_from_args(build_parser().parse_args([str(path), "--no-baseline"]))
    assert not any(case.is_baseline for case in suite.cases) and len(suite.cases) == 2 * 3
    assert suite.notes == ()
    named = VALID.replace(
        'runs = [{ backend = "ort-cpu" }', 'runs = [{ backend = "pytorch-eager" }, { backend = "ort-cpu" }'
    )
    suite = suite_from_args(build_parser().parse_args([str(write(tmp_path, named)), "--no-baseline"]))
    assert [c.pipeline for c in suite.cases if c.is_baseline] == ["pytorch-eager cpu"] * 2  # the one the file names
    assert suite.notes == ()


@pytest.mark.parametrize("name", ["cpu-quick", "cpu-full", "gpu", "jetson"])
def test_shipped_suites_generate_every_labelled_folder_they_read(name: str) -> None:
    """A fresh clone's first run needs no other step: each folder the suite reads is one it makes."""
    from segbench.data.generated import ClipSet, ShapesSet

    suite = load_suite(SUITES / f"{name}.toml")
    shapes = [g.out for g in suite.generate if isinstance(g, ShapesSet)]
    clips = [g.out for g in suite.generate if isinstance(g, ClipSet)]
    assert shapes == [Path("build/shapes")] and len(clips) == 1
    for case in suite.cases:
        for path in (case.model.calib, case.model.dataset):
            assert path is None or path.is_relative_to(shapes[0]), (case.id, path)
        assert case.clip is None or case.clip in clips
    assert any(case.clip for case in suite.cases)  # and each goes over its clip


def test_cpu_quick_and_cpu_full_go_over_a_short_and_a_longer_clip_at_every_precision() -> None:
    from segbench.data.generated import ClipSet

    frames = {}
    for name in ("cpu-quick", "cpu-full"):
        suite = load_suite(SUITES / f"{name}.toml")
        (clip,) = (g for g in suite.generate if isinstance(g, ClipSet))
        frames[name] = clip.frames
        video = {c.pipeline for c in suite.cases if c.clip == clip.out}
        assert {"pytorch-eager cpu", "ort-cpu fp32 fused", "ort-cpu fp16 fused", "ort-cpu int8 fused"} <= video
    assert frames["cpu-quick"] < frames["cpu-full"] and frames["cpu-full"] >= 200


VIDEO = VALID + 'video = "build/clip"\n'


def test_a_video_adds_one_clip_case_per_run_and_generated_sets_are_read(tmp_path: Path) -> None:
    text = (
        VIDEO
        + '[generate]\nshapes = "build/s"\nclip = { out = "build/clip", frames = 40, size = "96x128", fps = 25 }\n'
    )
    suite = load_suite(write(tmp_path, text))
    clip_cases = [c for c in suite.cases if c.clip is not None]
    assert [c.pipeline for c in clip_cases] == ["pytorch-eager cpu", "pytorch-eager cuda", "ort-cpu fp32 fused",
                                                "ort-cpu fp32 unfused", "tensorrt int8 fused"]  # fmt: skip
    assert all(c.batch == 1 and c.id.endswith("| clip clip") for c in clip_cases)
    assert len(suite.cases) == 2 * 5 + 5  # two shapes of the photo, and the clip, for each pipeline
    shapes, clip = suite.generate
    assert (shapes.out, shapes.train, shapes.val, shapes.seed) == (Path("build/s"), 3200, 200, 0)
    assert (clip.out, clip.frames, clip.height, clip.width, clip.fps, clip.seed) == (Path("build/clip"), 40, 96, 128,
                                                                                     25.0, 0)  # fmt: skip


@pytest.mark.parametrize(
    ("generate", "message"),
    [
        ('shapes = "build/s"\nvideos = 3', "unknown key 'videos' in generate; known keys: shapes, clip"),
        ("shapes = 3", 'generate.shapes must be a folder ("build/shapes") or a table'),
        ('shapes = { out = "s", trains = 4 }', "unknown key 'trains' in generate.shapes"),
        ('shapes = { out = "s", train = "4" }', "generate.shapes.train must be int, not str"),
        ("shapes = { train = 4 }", "generate.shapes has no out; give the folder to make it in"),
        ('clip = "build/clip"', "generate.clip must be a table"),
        ('clip = { out = "c", size = "big" }', "generate.clip.size 'big' is not \"HxW\""),
        ('clip = { out = "c", frames = 1 }', "generate.clip needs frames >= 2"),
    ],
)
def test_generate_errors_name_the_file_and_the_key(tmp_path: Path, generate: str, message: str) -> None:
    path = write(tmp_path, VALID + "[generate]\n" + generate + "\n")
    with pytest.raises(SegError) as caught:
        load_suite(path)
    assert message in str(caught.value) and str(caught.value).startswith(str(path))


def test_shape_flag_keeps_only_those_of_a_suites_shapes(tmp_path) -> None:
    suite_file = tmp_path / "two.toml"
    suite_file.write_text(
        'shapes = ["1x60x70", "4x60x70"]\n'
        '[[model]]\nname = "unet"\nvideo = "clips/a"\nruns = [{ backend = "ort-cpu" }]\n'
    )
    suite = load_suite(suite_file)
    kept = suite.only_shapes(["4x60x70"])
    assert {(c.batch, c.clip is None) for c in kept.cases} == {(4, True), (1, False)}  # the clip cases stay
    assert len(kept.cases) == len(suite.cases) - 2  # the baseline and ort-cpu at 1x60x70 went
    with pytest.raises(SegError, match=r"--shape 2x60x70: .*two.toml does not run it; it runs 1x60x70, 4x60x70"):
        suite.only_shapes(["2x60x70"])
    with pytest.raises(SegError, match="--shape: 'big' is not NxHxW"):
        suite.only_shapes(["big"])


def test_an_autograd_row_is_a_second_baseline_and_the_no_grad_one_is_still_added(tmp_path: Path) -> None:
    text = VALID.replace('runs = [{ backend = "ort-cpu" },', 'runs = [{ backend = "pytorch-eager", autograd = true },')
    suite = load_suite(write(tmp_path, text))
    baselines = [c for c in suite.cases if c.is_baseline and (c.batch, c.device) == (1, "cpu")]
    assert [c.pipeline for c in baselines] == ["pytorch-eager cpu", "pytorch-eager cpu autograd"]  # no_grad added
    assert [c.is_reference_baseline for c in baselines] == [True, False]


def test_a_confidence_run_is_a_row_of_its_own_and_only_for_the_fused_graph(tmp_path: Path) -> None:
    text = VALID.replace('{ backend = "ort-cpu", fused = false }', '{ backend = "ort-cpu", confidence = true }')
    ids = [case.id for case in load_suite(write(tmp_path, text)).cases]
    assert (
        "unet@64x64 | ort-cpu fp32 fused +confidence | 1x64x80" in ids
        and "unet@64x64 | ort-cpu fp32 fused | 1x64x80" in ids
    )
    bad = VALID.replace("fused = false }", "fused = false, confidence = true }")
    with pytest.raises(SegError, match="confidence is an output of the fused graph segbench exports; drop it here"):
        load_suite(write(tmp_path, bad))
