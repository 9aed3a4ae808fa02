"""Nothing lost, nothing mixed up (issue 27), on the runtime's side: segrun never writes over what it reads, one
output folder has one writer, a model card is checked against its graph, and every fault is one line.

The cases are the ones a careful and a careless user ran into. Races are made deterministic: a run in a real
subprocess is held at a chosen point (a marker file says it is there, a "go" file lets it on) while the test
acts. Permission cases run without root's file-access override (setpriv drops CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH), as an ordinary user meets them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segrt
from segrt.cli import main
from segrt.errors import MissingDependency, SegError
from segrt.files import LOCK_NAME, atomic_write
from segrt.image import read_image, read_labels_png
from segrt.meta import read_card, sidecar_path


def _png(path: Path, size=(16, 20), red=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.zeros((*size, 3), np.uint8)
    image[..., 0] = red
    Image.fromarray(image).save(path)
    return path


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _one_error(err: str) -> None:
    assert err.count("segrun: error:") == 1 and "Traceback" not in err, err


# --- 1. segrun never writes over a file it reads ------------------------------------------------------------


def test_output_folder_that_is_the_input_folder_is_refused_before_the_model_loads(stand_in_load, tmp_path, capsys):
    """`segrun ../m1 . -o .` in a folder of photos wrote each photo's label map over it, exit 0."""
    photos = tmp_path / "photos"
    photo = _png(photos / "photo.png", red=7)
    before = photo.read_bytes()
    cwd = os.getcwd()
    os.chdir(photos)
    try:
        code = main(["../m1", ".", "-o", "."])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert code == 2, err
    _one_error(err)
    assert "-o .: the input folder . is the output folder" in err and "choose an -o outside the inputs" in err
    assert photo.read_bytes() == before and stand_in_load.loads == 0 and _files(photos) == ["photo.png"]


def test_an_output_over_a_named_input_file_is_refused_naming_both(stand_in_load, tmp_path, capsys):
    """`segrun m1 t/a.png -o t` wrote the label map over a.png, exit 0."""
    image = _png(tmp_path / "t" / "a.png", red=7)
    before = image.read_bytes()
    code = main(["m1", str(image), "-o", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert code == 2
    _one_error(err)
    assert f"{image} (an output of {image}) would be written over the input {image}" in err
    assert image.read_bytes() == before and stand_in_load.loads == 0


def test_an_input_folder_inside_the_output_folder_is_refused(stand_in_load, tmp_path, capsys):
    image = _png(tmp_path / "out" / "imgs" / "a.png")
    code = main(["m1", str(image.parent), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and f"the input folder {image.parent} is inside the output folder {tmp_path / 'out'}" in err
    assert stand_in_load.loads == 0


def test_an_output_over_an_input_through_a_link_is_refused(stand_in_load, tmp_path, capsys):
    """The output folder reached by a symbolic link, and a hard link to the input under an output's name."""
    image = _png(tmp_path / "photos" / "a.jpg")
    (tmp_path / "link").symlink_to(tmp_path / "photos")
    assert main(["m1", str(tmp_path / "photos"), "-o", str(tmp_path / "link")]) == 2
    assert "is the output folder" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    os.link(image, tmp_path / "out" / "a.png")  # `out/a.png` is the photo itself
    assert main(["m1", str(image), "-o", str(tmp_path / "out"), "--save", "labels"]) == 2
    assert f"would be written over the input {image}" in capsys.readouterr().err
    assert stand_in_load.loads == 0


def test_a_video_beside_a_folder_of_the_same_name_is_refused_naming_both(stand_in_load, tmp_path, capsys):
    """`segrun m1 vc/clip.mp4 vc/clip -o vc/out`: the folder's 000000.png and the video's frame 0 shared outputs;
    "14 file(s) written", 10 there, exit 0."""
    video = tmp_path / "vc" / "clip.mp4"
    video.parent.mkdir()
    video.write_bytes(b"\0" * 64)  # refused before anything is decoded
    folder_image = _png(tmp_path / "vc" / "clip" / "000000.png")
    code = main(["m1", str(video), str(folder_image.parent), "-o", str(tmp_path / "vc" / "out")])
    err = capsys.readouterr().err
    assert code == 2
    _one_error(err)
    assert f"{video} and {folder_image} would both write into clip/ (where a video's frames go)" in err
    assert stand_in_load.loads == 0 and not (tmp_path / "vc" / "out").exists()


def test_a_camera_beside_a_folder_named_like_its_outputs_is_refused(stand_in_load, tmp_path, capsys):
    image = _png(tmp_path / "camera0" / "a.png")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = main(["m1", "0", "camera0", "-o", "out"])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert code == 2 and "0 and camera0/a.png would both write into camera0/" in err, err
    assert image.exists() and stand_in_load.loads == 0


def test_a_video_writing_its_frames_where_an_input_is_is_refused(stand_in_load, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 64)
    frame = _png(tmp_path / "clip" / "000000.png")  # an earlier run's frame, named as an input
    code = main(["m1", str(video), str(frame), "-o", str(tmp_path), "--frames"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{video} writes its frames into {tmp_path / 'clip'}/, which holds the input {frame}" in err


def test_outputs_are_never_read_back_as_inputs(stand_in_load, tmp_path, capsys):
    """`segrun m1 imgs -o imgs/out`, run twice: the second run segmented its own outputs."""
    imgs = tmp_path / "imgs"
    for name in ("a", "b"):
        _png(imgs / f"{name}.png", red=1)
    argv = ["m1", str(imgs), "-o", str(imgs / "out"), "--save", "labels,overlay", "--stats"]
    assert main(argv) == 0
    first = _files(imgs)
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "2 frame(s) segmented, 0 skipped, 4 file(s) written" in err
    assert f"{imgs / 'out'} is the output folder (-o): its files are not read as inputs of {imgs}" in err
    assert (
        _files(imgs)
        == first
        == [
            "a.png",
            "b.png",
            "out/imgs/a.overlay.jpg",
            "out/imgs/a.png",
            "out/imgs/b.overlay.jpg",
            "out/imgs/b.png",
            "out/stats.csv",
        ]
    )


def test_an_output_path_where_a_folder_stands_is_refused_before_the_model_loads(stand_in_load, tmp_path, capsys):
    """It was "cannot write (Is a directory); free some space ..." once per frame, after the model loaded."""
    image = _png(tmp_path / "a.png")
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    assert main(["m1", str(image), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    _one_error(err)
    assert f"{tmp_path / 'out' / 'a.png'}: is a folder, where this output (an output of {image}) goes" in err
    assert "free some space" not in err and stand_in_load.loads == 0


def test_a_write_into_a_folder_says_so_not_that_the_disk_is_full(tmp_path):
    (tmp_path / "x.png").mkdir()
    with pytest.raises(SegError) as info:
        atomic_write(tmp_path / "x.png", lambda tmp: tmp.write_bytes(b"labels"))
    assert "a folder of that name is in the way" in str(info.value) and "free some space" not in str(info.value)
    assert _files(tmp_path) == []  # no temporary file left


# --- 2. one output folder, one writer ----------------------------------------------------------------------

HOLD_AFTER_FIRST_FRAME = """
    import pathlib, time
    from segrt.stream.sinks import FrameFilesSink
    real_save = FrameFilesSink.write
    def save_then_hold(*args, **kwargs):
        written = real_save(*args, **kwargs)
        if not pathlib.Path(MARKER).exists():
            pathlib.Path(MARKER).write_text("a frame written")
            while not pathlib.Path(GO).exists():
                time.sleep(0.02)
        return written
    FrameFilesSink.write = save_then_hold
"""


def _held(hold: str, argv: list[str], tmp: Path, prefix: list[str] | None = None) -> subprocess.Popen[str]:
    """segrun `argv` in a subprocess with `hold` installed; returns once it wrote tmp/MARKER. It goes on when the
    test writes tmp/GO."""
    marker = tmp / "MARKER"
    script = (
        f"MARKER, GO = {str(marker)!r}, {str(tmp / 'GO')!r}\n"
        + "import signal, sys\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
        + f"sys.argv = ['segrun', *{argv!r}]\n"
        + textwrap.dedent(hold)
        + "from segrt.cli import main\nsys.exit(main())\n"
    )
    process = subprocess.Popen(
        [*(prefix or []), sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"never reached the marker: {process.communicate()[1][-3000:]}")
        time.sleep(0.02)
    return process


def test_a_second_segrun_into_a_folder_in_use_is_refused_naming_the_first(exported, tmp_path, capsys):
    """Two segrun runs into one -o mixed frames (the label of one, the overlay of the other) and lost one run's
    stats.csv, both exit 0."""
    model = exported("unet")
    first, second, out = tmp_path / "first", tmp_path / "second", tmp_path / "out"
    for name in "abc":
        _png(first / "imgs" / f"{name}.png", red=1)
        _png(second / "imgs" / f"{name}.png", red=200)
    argv = [str(model), str(first / "imgs"), "-o", str(out), "--stats"]
    process = _held(HOLD_AFTER_FIRST_FRAME, argv, tmp_path)
    try:
        code = main([str(model), str(second / "imgs"), "-o", str(out), "--stats"])
        err = capsys.readouterr().err
        assert code == 2, err
        _one_error(err)
        assert f"{out}: in use by another run (pid {process.pid}: segrun {model} {first / 'imgs'} -o {out}" in err
        assert "wait for it to end, or choose another -o" in err
    finally:
        (tmp_path / "GO").write_text("")
        _, first_err = process.communicate(timeout=120)
    assert process.returncode == 0, first_err
    rows = (out / "stats.csv").read_text().splitlines()
    assert len(rows) == 4 and all(str(first) in row for row in rows[1:])  # the first run's, whole
    labels = read_labels_png(out / "imgs" / "a.png")
    assert (labels == segrt.load(model)(read_image(first / "imgs" / "a.png"))).all()
    assert LOCK_NAME not in os.listdir(out)  # released and removed


def test_a_lock_left_by_a_killed_run_does_not_block(exported, tmp_path, capsys):
    model = exported("unet")
    _png(tmp_path / "imgs" / "a.png")
    _png(tmp_path / "imgs" / "b.png")
    out = tmp_path / "out"
    process = _held(HOLD_AFTER_FIRST_FRAME, [str(model), str(tmp_path / "imgs"), "-o", str(out)], tmp_path)
    process.kill()  # SIGKILL: no clean-up, the lock file stays
    process.communicate(timeout=60)
    assert (out / LOCK_NAME).read_text().startswith(f"{process.pid}\n")
    assert main([str(model), str(tmp_path / "imgs"), "-o", str(out)]) == 0, capsys.readouterr().err
    assert _files(out) == ["imgs/a.overlay.jpg", "imgs/a.png", "imgs/b.overlay.jpg", "imgs/b.png"]


# --- 4. the card is checked against its graph -------------------------------------------------------------


def _copy_model(exported, tmp_path: Path, name: str = "unet") -> Path:
    target = tmp_path / "m" / "model.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(exported(name), target)
    shutil.copy(sidecar_path(exported(name)), sidecar_path(target))
    return target


def _edit_card(model: Path, **changes: object) -> None:
    """Change fields of the sidecar card, keeping the sha256 it records (the file is untouched)."""
    side = sidecar_path(model)
    record = json.loads(side.read_text())
    record.update(changes)
    side.write_text(json.dumps(record))


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        (
            {"classes": ["background", "road", "car"], "palette": [[0, 0, 0], [1, 1, 1], [2, 2, 2]]},
            "the model card does not fit the graph: classes names 3 in the card, its output tells 21 apart",
        ),
        ({"palette": [[0, 0, 0]] * 3}, "3 palette colours for 21 classes"),
        ({"input_size": [32, 32]}, "input_size 32x32 in the card, it resizes images to 64x64"),
        ({"input_name": "pixels"}, "input_name/output_name pixels/labels in the card, image/labels"),
        ({"fused": False}, "says unfused (N x 3 x H x W float) but the graph's input is ['N', 'H', 'W', 3]"),
    ],
    ids=["classes", "palette", "input size", "input name", "layout"],
)
def test_a_card_edited_after_export_is_refused_naming_the_field(exported, tmp_path, capsys, changes, words):
    """A card edited to 3 classes (sha256 kept) for a graph of more was accepted: classes 3.. had no name or colour
    and the stats CSV missed their pixels."""
    model = _copy_model(exported, tmp_path)
    _edit_card(model, **changes)
    with pytest.raises(SegError) as info:
        segrt.load(model)
    assert words in str(info.value) and "\n" not in str(info.value)
    _png(tmp_path / "a.png")
    assert main([str(model), str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--stats"]) == 2
    err = capsys.readouterr().err
    _one_error(err)
    assert words in err


def test_the_unfused_graphs_class_count_is_read_from_its_logits(exported, tmp_path):
    model = _copy_model(exported, tmp_path, "unet-unfused")
    _edit_card(model, classes=["a", "b"], palette=[[0, 0, 0], [9, 9, 9]])
    with pytest.raises(SegError, match="classes names 2 in the card, its output tells 21 apart"):
        segrt.load(model)


def _corrupt_weights(model: Path, initializer: bytes = b"network.head.weight") -> None:
    """Negate every float of one weight in place: the file stays a valid graph, its answers change."""
    data = bytearray(model.read_bytes())
    at = data.find(initializer + b"\x4a")  # the initializer's name, then its raw_data field (tag 9, length-delimited)
    assert at > 0
    pos, length, shift = at + len(initializer) + 1, 0, 0
    while True:
        byte = data[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    weights = np.frombuffer(bytes(data[pos : pos + length]), np.float32)
    data[pos : pos + length] = (-weights - 1).astype(np.float32).tobytes()
    model.write_bytes(bytes(data))


def test_a_changed_graph_is_refused_with_its_card_or_without_it(exported, tmp_path, photo):
    """A changed model.onnx was refused with "delete the stale .json"; doing so ran the changed graph with the
    card embedded in it, exit 0."""
    model = _copy_model(exported, tmp_path)
    _corrupt_weights(model)
    with pytest.raises(SegError) as info:
        segrt.load(model)
    message = str(info.value)
    assert "the model card does not match model.onnx" in message and "re-export it with segexport" in message
    assert "delete" not in message
    sidecar_path(model).unlink()
    with pytest.raises(SegError) as info:
        segrt.load(model)
    message = str(info.value)
    assert f"{model}: the file changed after it was exported (sha256 of its content" in message
    assert "re-export it" in message and "delete" not in message


def test_a_graph_whose_json_card_was_deleted_runs_on_its_embedded_card(exported, tmp_path, photo):
    model = _copy_model(exported, tmp_path)
    sidecar_path(model).unlink()
    seg = segrt.load(model)
    assert seg.card == read_card(exported("unet"))
    assert (seg(photo) == segrt.load(exported("unet"))(photo)).all()


def _engine_with_card(tmp_path: Path, exported, tensorrt: dict) -> Path:
    """An engine file and a card with its sha256 whose tensorrt record is `tensorrt` (written as JSON: the card
    type itself refuses such a record)."""
    engine = tmp_path / "m" / "model.engine"
    engine.parent.mkdir(parents=True, exist_ok=True)
    engine.write_bytes(b"serialized engine stand-in")
    record = json.loads(sidecar_path(exported("unet")).read_text())
    record.update(tensorrt=tensorrt, sha256=hashlib.sha256(engine.read_bytes()).hexdigest())
    sidecar_path(engine).write_text(json.dumps(record))
    return engine


@pytest.mark.parametrize("source", ["/etc/passwd", "../../x.onnx", "sub/model.onnx", ".."])
def test_an_engine_card_whose_source_is_not_a_file_beside_it_is_refused_before_tensorrt(exported, tmp_path, source):
    engine = _engine_with_card(tmp_path, exported, {"library": "tensorrt", "version": "10.3.0", "source": source})
    with pytest.raises(SegError) as info:
        segrt.load(engine)
    assert not isinstance(info.value, MissingDependency)  # refused on reading the card, before TensorRT is looked for
    assert f"tensorrt.source {source!r} must be the name of a file beside the engine" in str(info.value)


# --- 5. every fault is one line with the documented exit code -----------------------------------------------


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo1"
    os.mkfifo(path)
    return path


def test_a_fifo_or_a_device_as_the_model_says_what_it_is(fifo):
    """It said "no fifo1.onnx for precision fp32"."""
    with pytest.raises(SegError, match=rf"{fifo}: a FIFO, not a model file or folder"):
        segrt.load(fifo)
    with pytest.raises(SegError, match="/dev/zero: a character device, not a model file or folder"):
        segrt.load("/dev/zero")


def test_a_fifo_given_as_an_input_is_skipped_not_waited_on(stand_in_load, fifo, tmp_path, capsys):
    image = _png(tmp_path / "a.png")
    assert main(["m1", str(fifo), str(image), "-o", str(tmp_path / "out"), "--save", "labels"]) == 1
    err = capsys.readouterr().err
    assert f"segrun: skipped {fifo}: not a regular file (a FIFO, a device or a socket)" in err
    assert _files(tmp_path / "out") == ["a.png"]


def _without_root_override() -> list[str]:
    """The command prefix that takes away root's permission to read anything (none needed for other users)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: the permission cases cannot be met")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def _segrun_without_override(argv: list[str]) -> subprocess.CompletedProcess[str]:
    script = f"import sys\nfrom segrt.cli import main\nsys.exit(main({argv!r}))\n"
    command = [*_without_root_override(), sys.executable, "-c", script]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_unreadable_files_and_subfolders_in_an_input_folder_are_reported_as_skipped(exported, tmp_path):
    """An unreadable subfolder was skipped without a word, exit 0; an unreadable image said "cannot decode the
    image (Permission denied)"."""
    imgs = tmp_path / "imgs"
    _png(imgs / "a.png")
    _png(imgs / "private" / "b.png")
    locked = _png(imgs / "c.png")
    (imgs / "private").chmod(0)
    locked.chmod(0)
    try:
        result = _segrun_without_override([str(exported("unet")), str(imgs), "-o", str(tmp_path / "out")])
    finally:
        (imgs / "private").chmod(0o755)
        locked.chmod(0o644)
    err = result.stderr
    assert result.returncode == 1, err
    assert f"segrun: skipped {imgs / 'private'}: cannot read the folder (Permission denied)" in err
    assert f"segrun: skipped {locked}: cannot read the file (Permission denied)" in err
    assert "1 frame(s) segmented, 2 skipped" in err and "Traceback" not in err
    assert _files(tmp_path / "out") == ["imgs/a.overlay.jpg", "imgs/a.png"]


@pytest.mark.parametrize("what", ["model file", "model folder"])
def test_an_unreadable_model_is_one_line_and_exit_2(exported, tmp_path, what):
    """An unreadable model.onnx or model folder gave a PermissionError traceback, exit 1."""
    model = _copy_model(exported, tmp_path)
    _png(tmp_path / "a.png")
    locked = model if what == "model file" else model.parent
    locked.chmod(0)
    try:
        result = _segrun_without_override([str(model.parent), str(tmp_path / "a.png"), "-o", str(tmp_path / "out")])
    finally:
        locked.chmod(0o755)
    err = result.stderr
    assert result.returncode == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    words = f"{model}: cannot read the file" if what == "model file" else f"{model.parent}: cannot read the model"
    assert f"segrun: error: {words}" in err and "(Permission denied)" in err


# SIGINT and SIGTERM in bursts: the first signals land inside an output's atomic write (its temporary file
# there); a burst lands while that write cleans up, another while the process exits.
HOLD_FOR_BURSTS = """
    import atexit, os, pathlib, time
    def wait(name):
        pathlib.Path(MARKER + "." + name).write_text(name)
        while not pathlib.Path(GO + "." + name).exists():
            time.sleep(0.02)
    real_replace = os.replace
    def replace_or_hold(src, dst, *args, **kwargs):
        if str(dst).endswith(".png") and not pathlib.Path(MARKER).exists():
            pathlib.Path(MARKER).write_text("inside a write")
            while True:
                time.sleep(0.02)  # until the first signal
        return real_replace(src, dst, *args, **kwargs)
    os.replace = replace_or_hold
    real_unlink = pathlib.Path.unlink
    def unlink_after_a_burst(self, *args, **kwargs):
        if self.name.endswith(".tmp") and not pathlib.Path(MARKER + ".cleanup").exists():
            wait("cleanup")
        return real_unlink(self, *args, **kwargs)
    pathlib.Path.unlink = unlink_after_a_burst
    atexit.register(wait, "exit")
"""


def _burst(pid: int) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
        os.kill(pid, signum)
        time.sleep(0.05)


def _wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
        time.sleep(0.02)


def test_a_burst_of_signals_is_one_message_exit_130_and_no_temporary_file(exported, tmp_path):
    """Four or five SIGINT/SIGTERM in a burst gave tracebacks after "interrupted", exit -15/-2 instead of 130, and
    a `.000067.png.XXXX.tmp` left behind."""
    imgs = tmp_path / "imgs"
    for name in "abc":
        _png(imgs / f"{name}.png")
    out = tmp_path / "out"
    process = _held(HOLD_FOR_BURSTS, [str(exported("unet")), str(imgs), "-o", str(out), "--stats"], tmp_path)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):  # back to back: pending as the first is handled
        os.kill(process.pid, signum)
    for moment in ("cleanup", "exit"):
        _wait_for(tmp_path / f"MARKER.{moment}", process)
        _burst(process.pid)
        (tmp_path / f"GO.{moment}").write_text("")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.count("segrun: interrupted") == 1 and "Traceback" not in err and "Exception ignored" not in err, err
    assert [p.name for p in out.rglob("*") if p.name.endswith(".tmp") or p.name == LOCK_NAME] == []
