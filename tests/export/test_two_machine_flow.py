"""The two-machine flow the README gives (export on the workstation, build and check on the device): its commands
are segexport's, its install lines name extras that exist, and the device's extras bring nothing of torch."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from segexport.cli import build_parser

if sys.version_info >= (3, 11):
    import tomllib
else:  # the [bench] extra brings tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
HEADING = "## Two machines: export on the workstation, build and check on the device"
EXPORTER_ONLY = {"torch", "torchvision", "onnx", "onnxslim", "nvidia-modelopt"}


def section() -> str:
    """The section, in the README or (once moved) in the docs site."""
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text()
        if HEADING in text:
            return text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    pytest.fail(f"no section {HEADING!r} in README.md or docs/")


def extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower() for requirement in requirements}


def test_every_command_of_the_flow_is_one_segexport_takes():
    commands = [
        part.split("#")[0].strip()
        for line in section().splitlines()
        for part in line.split("&&")
        if part.strip().startswith("segexport ")
    ]
    assert len(commands) >= 5, commands
    for command in commands:
        build_parser().parse_args(shlex.split(command)[1:])  # argparse exits on a flag it does not know


def test_each_install_line_names_an_extra_and_the_device_ones_bring_no_torch():
    named = set(re.findall(r"segexport\[(\w+)\]", section()))
    assert {"export", "tensorrt", "rtx"} <= named and named <= set(extras()), named
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for extra in ("tensorrt", "rtx"):
        assert not requirement_names([*base, *extras()[extra]]) & EXPORTER_ONLY, extra
    assert "rich" in requirement_names(base)  # segexport's terminal, on the device too
