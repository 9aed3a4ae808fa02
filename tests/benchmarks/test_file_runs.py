"""Runs over files made earlier (`file = ...` in a suite run, `segbench --model M --file PATH`): run as they are,
never exported, their precision and graph kind read from their cards, scored against the model's reference, so an
older graph and today's can be timed side by side in one run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from segbench.cases.suite import load_suite
from segbench.cli import build_parser, main, suite_from_args
from segrt.errors import SegError

# TEST_MODELS["unet"] in tests/conftest.py: the model the exported files came from
UNET = """
name = "files"
shapes = ["1x64x80"]
warmup = 1
iterations = 3
min_seconds = 0.2
seconds = 2
[[model]]
name = "unet"
input_size = "64x64"
unet_base = 8
unet_depth = 3
runs = [{runs}]
"""


def write_suite(tmp_path: Path, runs: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(UNET.format(runs=runs))
    return path


def test_a_file_run_takes_precision_and_graph_kind_from_the_card(exported, tmp_path: Path) -> None:
    fused, unfused = exported("unet"), exported("unet-unfused")
    runs = f'{{ backend = "ort-cpu", file = "{fused}" }}, {{ backend = "ort-cpu", file = "{unfused}" }}'
    suite = load_suite(write_suite(tmp_path, runs))
    given = [case for case in suite.cases if case.file is not None]
    assert [(c.file, c.precision, c.fused) for c in given] == [(fused, "fp32", True), (unfused, "fp32", False)]
    assert given[0].id == f"unet@64x64 | ort-cpu fp32 fused file {fused} | 1x64x80"
    assert len({case.id for case in suite.cases}) == 3  # the baseline, and one case per file


def test_the_cpu_int8_graphs_precision_is_int8(exported, tmp_path: Path) -> None:
    card = json.loads(Path(str(exported("unet")) + ".json").read_text())
    copy = tmp_path / "old" / "model.int8-cpu.onnx"  # a card saying int8-cpu: what segexport --int8 writes for CPUs
    copy.parent.mkdir()
    shutil.copy(exported("unet"), copy)
    (copy.parent / "model.int8-cpu.onnx.json").write_text(json.dumps({**card, "precision": "int8-cpu"}))
    (case,) = [c for c in load_suite(write_suite(tmp_path, f'{{ backend = "ort-cpu", file = "{copy}" }}')).cases
               if c.file]  # fmt: skip
    assert (case.precision, case.pipeline) == ("int8", f"ort-cpu int8 fused file {copy}")


@pytest.mark.parametrize(
    ("run", "words"),
    [
        ('{{ backend = "ort-cpu", file = "{unet}", precision = "fp16" }}', r"runs\[0\]: precision come from .*card"),
        ('{{ backend = "ort-cpu", file = "{missing}" }}', r"runs\[0\]\.file: .*nowhere\.onnx: no such file"),
        ('{{ backend = "tensorrt", file = "{unet}" }}', r"runs\[0\]\.file: .*the backend tensorrt runs a TensorRT"),
        ('{{ backend = "ort-cpu", file = "{fcn}" }}', r"was exported from fcn_resnet50, not unet; .*wrong reference"),
        ('{{ backend = "ort-cpu", file = "{garbage}" }}', r"runs\[0\]\.file: .*garbage\.onnx: not a readable ONNX"),
        ('{{ backend = "pytorch-eager", file = "{unet}" }}', r"runs\[0\]: pytorch-eager runs the PyTorch model itself"),
    ],
)
def test_a_bad_file_run_is_one_line_naming_the_suite_key(exported, tmp_path: Path, run: str, words: str) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx file")
    paths = {"unet": exported("unet"), "fcn": exported("fcn50"), "missing": tmp_path / "nowhere.onnx"}
    path = write_suite(tmp_path, run.format(**paths, garbage=garbage))
    with pytest.raises(SegError, match=words) as caught:
        load_suite(path)
    assert str(caught.value).startswith(f"{path}: model[0]") and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--file", "x.onnx"], r"--file needs --model"),
        (["--model", "unet", "--file", "x.onnx", "--precision", "int8"], r"--precision and --no-fuse come from"),
        (["--model", "unet", "--file", "x.onnx", "--no-fuse"], r"--precision and --no-fuse come from"),
    ],
)
def test_file_flags_that_cannot_apply_are_refused(argv: list[str], words: str) -> None:
    with pytest.raises(SegError, match=words):
        suite_from_args(build_parser().parse_args(argv))


def test_files_run_beside_the_baseline_without_any_export(exported, tmp_path: Path) -> None:
    """The command line: two files, timed and scored in one run; nothing is exported, the log names both."""
    fused, unfused = exported("unet"), exported("unet-unfused")
    cache, out = tmp_path / "cache", tmp_path / "run"
    model = ["--model", "unet", "--input-size", "64x64", "--export-arg=--unet-base", "--export-arg=8"]
    model += ["--export-arg=--unet-depth", "--export-arg=3"]
    timing = ["--shape", "1x64x80", "--warmup", "1", "--iterations", "3", "--min-seconds", "0.2", "--seconds", "2"]
    code = main([*model, "--file", str(fused), "--file", str(unfused), *timing, "--cache", str(cache), "-o", str(out)])
    assert code == 0
    cases = {case["pipeline"]: case for case in json.loads((out / "results.json").read_text())["cases"]}
    assert set(cases) == {
        "pytorch-eager cpu",
        f"ort-cpu fp32 fused file {fused}",
        f"ort-cpu fp32 unfused file {unfused}",
    }
    given_fused, given_unfused = (
        cases[f"ort-cpu fp32 fused file {fused}"],
        cases[f"ort-cpu fp32 unfused file {unfused}"],
    )
    for case, path in ((given_fused, fused), (given_unfused, unfused)):
        assert case["status"] == "ok" and case["file"] == case["given_file"] == str(path)
        assert case["accuracy"]["pixel_agreement"] >= 0.999  # the same model's export, against its reference
    assert "absent" in given_fused["network"]  # no --no-fuse twin of a file is made
    assert given_unfused["network"]["file"] == str(unfused)  # an unfused file is its own bare network
    assert not cache.exists() or not list(cache.rglob("*.onnx"))  # nothing exported
    log = (out / "export.log").read_text().splitlines()
    assert log == [f"reused {p} (given to this run: run as it is, not exported)" for p in (fused, unfused)]
