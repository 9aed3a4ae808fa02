"""segexport on the device, where there is no torch: the engine half from an ONNX file or an engine (`--rtx`,
`ENGINE --rebuild`, `ENGINE --check`), `doctor` and `--help` work; what needs torch says so in one line, exit 3.

In .ci/run's torch-free Python 3.10 install these run as they are. In the full install each command runs in a
fresh interpreter where the exporter's packages are made unimportable (None in sys.modules, as `import` and
`importlib.util.find_spec` see a package that is not installed), so both installs check the same commands.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from segrt.meta import read_card, sidecar_path

# The exporter's packages (segexport[export]): absent on the device.
EXPORTER = (
    "torch",
    "torchvision",
    "onnx",
    "onnxslim",
    "modelopt",
    "onnx_graphsurgeon",
    "onnxconverter_common",
    "polygraphy",
    "onnxscript",
)
ENGINE_LIBRARIES = ("tensorrt", "tensorrt_rtx", "cuda")  # absent from the base install too
HEAVY = (*EXPORTER, "onnxruntime", *ENGINE_LIBRARIES)
SMALL = ["--min-shape", "1x32x32", "--opt-shape", "1x64x64", "--max-shape", "1x480x640"]
EXPORT_EXTRA = "pip install 'segexport[export]'"
HAS_RTX = importlib.util.find_spec("tensorrt_rtx") is not None

SCRIPT = """
import json, sys
for name in {blocked!r}:
    sys.modules[name] = None  # as if not installed
from segexport.cli import main
codes = []
for argv in {runs!r}:
    print("=== run", file=sys.stderr, flush=True)
    try:
        codes.append(main(argv))
    except SystemExit as exc:  # --help
        codes.append(exc.code)
    sys.stderr.flush()
print(json.dumps({{"codes": codes, "loaded": [m for m in {heavy!r} if sys.modules.get(m) is not None]}}))
"""


def segexport_without(blocked: tuple[str, ...], runs: list[list[str]], cwd: Path) -> tuple[list[int], list[str], list]:
    """Run each command line through segexport's main() in one fresh interpreter without `blocked`; returns the
    exit codes, each run's stderr on one line, and the heavy packages that were imported."""
    script = SCRIPT.format(blocked=blocked, runs=runs, heavy=HEAVY)
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=cwd, env=env
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    errs = [" ".join(part.split()) for part in result.stderr.split("=== run")[1:]]
    return outcome["codes"], errs, outcome["loaded"]


@pytest.fixture
def device_folder(exported, tmp_path) -> Path:
    """The folder copied from the workstation: the small U-Net's model.onnx and its card."""
    folder = tmp_path / "copied"
    folder.mkdir()
    shutil.copy(exported("unet"), folder / "model.onnx")
    shutil.copy(sidecar_path(exported("unet")), sidecar_path(folder / "model.onnx"))
    return folder


def test_help_and_every_flag_parse_without_importing_the_heavy_packages(tmp_path):
    every_flag = [
        "unet", "--weights", "none", "--checkpoint", "w.pt", "--num-classes", "3", "--input-size", "64x64",
        "--seed", "1", "--unet-depth", "3", "--unet-base", "8", "--unet-transposed", "--no-fuse", "--opset", "17",
        "--image", "a.jpg", "--min-agreement", "99", "--out", "o", "--fp16", "--int8", "--int8-target", "both",
        "--calib", "c", "--calib-count", "4", "--keep-fp32", "Conv", "--max-miou-drop", "1", "--max-disagreement",
        "2", "--val", "v", "--val-count", "3", "--engine", "--onnx-only", "--min-shape", "1x32x32", "--opt-shape",
        "1x64x64", "--max-shape", "1x480x640", "--workspace", "64", "--timing-cache", "t", "--builder-opt-level",
        "3", "--dla-core", "0", "--rtx", "--gpu-arch", "sm86", "--check", "--rebuild", "--triton", "r",
        "--triton-backend", "python", "-vv",
    ]  # fmt: skip
    script = textwrap.dedent(f"""
        import sys
        from segexport.cli import build_parser
        build_parser().parse_args({every_flag!r})
        print([m for m in {(*HEAVY, "rich")!r} if m in sys.modules])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout
    codes, errs, loaded = segexport_without(EXPORTER, [["--help"]], tmp_path)
    assert codes == [0] and loaded == [], (errs, loaded)


@pytest.mark.skipif(not HAS_RTX, reason="TensorRT-RTX builds the engine: segexport[rtx]")
def test_the_engine_half_works_without_torch(device_folder, tmp_path):
    onnx, engine = device_folder / "model.onnx", device_folder / "model.rtx.engine"
    runs = [
        [str(onnx), "--rtx", "--gpu-arch", "sm86", *SMALL],
        [str(engine), "--rebuild", "--gpu-arch", "sm89"],
        [str(engine), "--check"],
        ["doctor"],
    ]
    codes, errs, loaded = segexport_without(EXPORTER, runs, tmp_path)
    assert not [m for m in loaded if m in EXPORTER], loaded
    assert codes[:2] == [0, 0], errs
    assert all("Traceback" not in err for err in errs), errs
    card = read_card(engine)
    assert card.tensorrt["library"] == "tensorrt-rtx" and card.tensorrt["targets"] == ["8.9"]
    # --check runs where a GPU of the engine's targets is; on any other machine it says where to run it
    assert codes[2] == 0 or (codes[2] == 3 and f"`segexport {engine} --check` there" in errs[2]), errs[2]
    assert codes[3] == 0, errs[3]
    builds = errs[3].split("builds here:")[1].split("runs here:")[0]
    assert "TensorRT-RTX engines (--rtx)" in builds and "ONNX graphs (" not in builds, builds
    assert "segexport[export]" in errs[3]  # the doctor says what would export models here


def test_what_needs_torch_says_so_in_one_line_and_exits_3(device_folder, tmp_path):
    runs = [[], ["unet", "--out", str(tmp_path / "out")], [str(device_folder / "model.onnx"), "--fp16"]]
    before = sorted(device_folder.iterdir())
    codes, errs, loaded = segexport_without(EXPORTER, runs, tmp_path)
    assert codes == [3, 3, 3], errs
    for err in errs:
        assert err.startswith("segexport: error:") and err.count("error:") == 1 and EXPORT_EXTRA in err, err
    assert "torch" in errs[0] and "onnx" in errs[2], errs
    assert sorted(device_folder.iterdir()) == before and not (tmp_path / "out").exists() and not loaded


def test_the_base_install_helps_says_what_to_install_and_writes_nothing(device_folder, tmp_path):
    """numpy, onnxruntime, pillow and rich: no exporter, no TensorRT, no cuda-python."""
    runs = [["--help"], [], ["doctor"], [str(device_folder / "model.onnx"), "--rtx"]]
    before = sorted(device_folder.iterdir())
    codes, errs, _ = segexport_without(EXPORTER + ENGINE_LIBRARIES, runs, tmp_path)
    assert codes == [0, 3, 0, 3], errs
    assert EXPORT_EXTRA in errs[1] and "segexport[rtx]" in errs[3], errs
    builds = errs[2].split("builds here:")[1].split("runs here:")[0]
    assert builds.strip().startswith("nothing yet") and EXPORT_EXTRA in builds and "segexport[rtx]" in builds, builds
    assert "Traceback" not in " ".join(errs) and sorted(device_folder.iterdir()) == before
