"""A model folder is always a matching pair, and has one writer (issue 27, the exporter's side).

Two `segexport --out D` at once could leave one run's card beside the other's graph with the other's sha256
(the card's hash was taken after the graph was renamed in): segrun then used the wrong class names, exit 0. A
SIGTERM right after a re-export renamed its model.onnx in left the new graph with the old card: the folder that
worked no longer loaded. Each race is made deterministic: the export runs in a subprocess held at the moment in
question (a marker file says it is there, a "go" file lets it on) while the test acts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import onnx
import pytest

import segrt
from segexport.cli import main as segexport_main
from segrt.errors import SegError
from segrt.files import LOCK_NAME
from segrt.meta import GRAPH_SHA_KEY, read_card, read_sidecar, sidecar_path

ARGS = ["unet", "--unet-base", "4", "--unet-depth", "2", "--input-size", "32x32"]

# os.replace, as the exporter publishes model.onnx: held once the graph is in place and its card is not yet
HOLD_AFTER_THE_GRAPH_IS_RENAMED_IN = """
    import os, pathlib, time
    real_replace = os.replace
    def replace_then_hold(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if pathlib.Path(dst).name == "model.onnx" and not pathlib.Path(MARKER).exists():
            pathlib.Path(MARKER).write_text("model.onnx renamed in, its card not yet")
            while not pathlib.Path(GO).exists():
                time.sleep(0.02)
    os.replace = replace_then_hold
"""

# the new graph half written to its temporary file, the previous pair untouched
HOLD_WHILE_THE_GRAPH_IS_WRITTEN = """
    import pathlib, time
    real_write = pathlib.Path.write_bytes
    def write_half_then_hold(self, data):
        if self.name.startswith(".model.onnx.") and self.name.endswith(".tmp"):
            real_write(self, data[: len(data) // 2])
            pathlib.Path(MARKER).write_text("in the ONNX write")
            while not pathlib.Path(GO).exists():
                time.sleep(0.02)
        return real_write(self, data)
    pathlib.Path.write_bytes = write_half_then_hold
"""


def _held_export(hold: str, argv: list[str], tmp: Path) -> subprocess.Popen[str]:
    """`segexport argv` in a subprocess with `hold` installed; returns once it wrote tmp/MARKER. It goes on when the
    test writes tmp/GO."""
    marker = tmp / "MARKER"
    script = (
        f"MARKER, GO = {str(marker)!r}, {str(tmp / 'GO')!r}\n"
        + "import signal, sys\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
        + f"sys.argv = ['segexport', *{argv!r}]\n"
        + textwrap.dedent(hold)
        + "from segexport.cli import main\nsys.exit(main())\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"never reached the marker: {process.communicate()[1][-3000:]}")
        time.sleep(0.05)
    return process


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_second_export_into_a_folder_in_use_is_refused_and_the_pair_stays_whole(tmp_path, capsys):
    out = tmp_path / "D"
    first = [*ARGS, "--num-classes", "3", "--out", str(out)]
    process = _held_export(HOLD_AFTER_THE_GRAPH_IS_RENAMED_IN, first, tmp_path)
    try:
        code = segexport_main([*ARGS, "--num-classes", "5", "--out", str(out)])
        err = " ".join(capsys.readouterr().err.split())
        assert code == 2, err
        assert f"{out}: in use by another run (pid {process.pid}: segexport {' '.join(first)})" in err
        assert "wait for it to end, or choose another --out" in err and "Traceback" not in err
    finally:
        (tmp_path / "GO").write_text("")
        _, first_err = process.communicate(timeout=300)
    assert process.returncode == 0, first_err
    card = read_card(out / "model.onnx")  # the sha256 matches and the card fits the graph
    assert card.num_classes == 3 and read_sidecar(out / "model.onnx") == card
    assert segrt.load(out).classes == card.classes
    assert _leftovers(out) == []


def test_a_sigterm_right_after_the_new_graph_is_renamed_in_leaves_a_matching_pair(tmp_path):
    out = tmp_path / "D"
    assert segexport_main([*ARGS, "--num-classes", "3", "--out", str(out)]) == 0
    process = _held_export(
        HOLD_AFTER_THE_GRAPH_IS_RENAMED_IN, [*ARGS, "--num-classes", "5", "--out", str(out)], tmp_path
    )
    process.send_signal(signal.SIGTERM)
    time.sleep(0.2)  # delivered while the renames are under way: held until both are in place
    (tmp_path / "GO").write_text("")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.count("interrupted") == 1 and "Traceback" not in err
    card = read_card(out / "model.onnx")  # loads: the card's sha256 describes the graph beside it
    assert card.num_classes == 5 and segrt.load(out).classes == card.classes
    assert _leftovers(out) == []


def test_an_export_interrupted_before_its_renames_leaves_the_previous_pair(tmp_path):
    out = tmp_path / "D"
    assert segexport_main([*ARGS, "--num-classes", "3", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    process = _held_export(HOLD_WHILE_THE_GRAPH_IS_WRITTEN, [*ARGS, "--num-classes", "5", "--out", str(out)], tmp_path)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the previous pair, and nothing else
    assert read_card(out / "model.onnx").num_classes == 3


def test_a_lock_left_by_a_killed_export_does_not_block(tmp_path):
    out = tmp_path / "D"
    process = _held_export(HOLD_WHILE_THE_GRAPH_IS_WRITTEN, [*ARGS, "--out", str(out)], tmp_path)
    process.kill()
    process.communicate(timeout=60)
    assert (out / LOCK_NAME).read_text().startswith(f"{process.pid}\nsegexport unet")
    assert segexport_main([*ARGS, "--out", str(out)]) == 0
    assert read_sidecar(out / "model.onnx") is not None and not (out / LOCK_NAME).exists()


def test_an_onnx_file_of_an_older_segexport_needs_its_json_card(exported, tmp_path):
    """Its embedded card records no sha256 of the file: without the .json beside it nothing proves the graph is
    the one the card was written for."""
    model = tmp_path / "model.onnx"
    proto = onnx.load(str(exported("unet")))
    for prop in list(proto.metadata_props):
        if prop.key == GRAPH_SHA_KEY:
            proto.metadata_props.remove(prop)
    onnx.save(proto, model)
    from segrt.meta import write_sidecar

    write_sidecar(model, read_card(exported("unet")))
    assert segrt.load(model).card == read_card(exported("unet"))  # with its card: as before
    os.unlink(sidecar_path(model))
    with pytest.raises(SegError, match="the card inside the file records no sha256 to check the file against"):
        segrt.load(model)
