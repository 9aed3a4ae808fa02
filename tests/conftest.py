"""Shared fixtures: real models exported once per session by the `segexport` command itself.

With torch installed, the models are exported into $SEGRT_TEST_MODELS (or a
temporary folder). Without torch -- the torch-free Python 3.10 run of the runtime
tests -- they are read from $SEGRT_TEST_MODELS, which the torch run filled.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "export" / "assets" / "astronaut.jpg"

# name -> segexport arguments. Small sizes keep the suite quick; the graphs are the real ones.
TEST_MODELS = {
    "unet": ["unet", "--unet-base", "8", "--unet-depth", "3", "--input-size", "64x64"],
    "unet-unfused": ["unet", "--unet-base", "8", "--unet-depth", "3", "--input-size", "64x64", "--no-fuse"],
    "unet-confidence": ["unet", "--unet-base", "8", "--unet-depth", "3", "--input-size", "64x64", "--confidence"],
    "fcn50": ["fcn_resnet50", "--weights", "none", "--input-size", "96x96"],
    "fcn50-unfused": ["fcn_resnet50", "--weights", "none", "--input-size", "96x96", "--no-fuse"],
}

HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder holding every TEST_MODELS export (made here when torch is installed)."""
    preset = os.environ.get("SEGRT_TEST_MODELS")
    folder = Path(preset) if preset else tmp_path_factory.mktemp("models")
    if not HAS_TORCH:
        missing = [name for name in TEST_MODELS if not (folder / name / "model.onnx").is_file()]
        if missing:
            pytest.fail(
                f"torch is not installed and $SEGRT_TEST_MODELS lacks {missing}; run the torch suite first "
                f"with SEGRT_TEST_MODELS set (see .ci/run)"
            )
    return folder


@pytest.fixture(scope="session")
def exported(models_dir: Path):
    """exported(name) -> path of TEST_MODELS[name]'s model.onnx, exporting it on first use."""

    def get(name: str) -> Path:
        path = models_dir / name / "model.onnx"
        if not path.is_file():
            from segexport.cli import main

            code = main([*TEST_MODELS[name], "--out", str(path.parent)])
            assert code == 0, f"segexport {TEST_MODELS[name]} exited {code}"
        return path

    return get


@pytest.fixture(scope="session")
def model_args() -> dict[str, list[str]]:
    """The segexport arguments of each TEST_MODELS entry."""
    return TEST_MODELS


@pytest.fixture(scope="session")
def photo_path() -> Path:
    """The bundled 612x640 test photo (NASA, public domain; via scikit-image)."""
    return PHOTO


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    from segrt.image import read_image

    return read_image(PHOTO)
