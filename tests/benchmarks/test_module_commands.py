"""The generators' module commands answer under their names in segbench.data and under the names they had before
the rooms moved (issue 25: `python -m segbench.shapes` keeps working)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("name", ["shapes", "clip", "train_reference"])
@pytest.mark.parametrize("where", ["segbench.data.", "segbench."])
def test_each_generator_command_answers_under_its_new_and_old_name(where: str, name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"{where}{name}", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m segbench.data.{name} "), done.stdout[:200]
