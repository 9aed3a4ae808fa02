"""segrun: folders with bad files in them, outputs, summary and exit codes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import segrt
from segrt.cli import main
from segrt.image import read_labels_png


@pytest.fixture
def folder(tmp_path, photo):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    Image.fromarray(photo).save(images / "good.png")
    Image.fromarray(np.ascontiguousarray(photo[:200, :300])).save(images / "sub" / "small.png")
    (images / "bad.jpg").write_bytes(b"not an image at all")
    (images / "empty.png").write_bytes(b"")
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(images / "deep.png")
    return images


def test_folder_run_skips_bad_files_reports_them_and_writes_every_good_result(exported, folder, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([str(exported("unet")), str(folder), "-o", str(out), "--save", "labels,overlay,color"])
    err = capsys.readouterr().err
    assert code == 1  # some inputs were skipped
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == [
        "images/good.color.png",
        "images/good.overlay.jpg",
        "images/good.png",
        "images/sub/small.color.png",
        "images/sub/small.overlay.jpg",
        "images/sub/small.png",
    ]
    seg = segrt.load(exported("unet"))
    assert (read_labels_png(out / "images" / "good.png") == seg(segrt.read_image(folder / "good.png"))).all()
    assert f"2 frame(s) segmented, 3 skipped, 6 file(s) written to {out}/" in err
    for name in ("bad.jpg", "empty.png", "deep.png"):
        assert f"skipped {folder / name}" in err
    assert "p50" in err and "p99" in err and "FPS" in err
    assert "[5/5 ████████████████████ 100%]" in err
    assert "Traceback" not in err


def test_all_good_inputs_exit_zero_and_stats_list_classes(exported, photo_path, tmp_path, capsys):
    code = main(
        [str(exported("fcn50").parent), str(photo_path), "-o", str(tmp_path / "o"), "--stats", "--save", "none"]
    )
    err = capsys.readouterr().err
    assert code == 0
    assert not (tmp_path / "o").exists() and "no files written" in err
    shares = [float(line.split()[-2]) for line in err.splitlines() if line.startswith("segrun:   ")]
    assert shares and abs(sum(shares) - 100.0) < 0.1


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["{tmp}/nomodel.onnx", "{tmp}"], 2, "nomodel.onnx: no such file"),
        (["{model}", "{tmp}/x.png", "--save", "labels,pdf"], 2, "--save 'labels,pdf'"),
        (["{model}", "{tmp}/missing.png"], 2, "no input could be segmented: {tmp}/missing.png: no such file"),
        (["{model}", "{tmp}/x.png", "--alpha", "2"], 2, "--alpha 2.0: must be within 0..1"),
    ],
)
def test_bad_runs_exit_with_one_line(exported, tmp_path, capsys, argv, code, words):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    values = {"tmp": str(tmp_path), "model": str(exported("unet"))}
    assert main([a.format(**values) for a in argv]) == code
    err = capsys.readouterr().err
    assert words.format(**values) in err and err.count("segrun: error:") == 1 and "Traceback" not in err


def test_video_frames_are_segmented(exported, tmp_path, photo, capsys):
    cv2 = pytest.importorskip("cv2")  # the [video] extra; absent from the torch-free runtime venv
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(3):
        writer.write(np.ascontiguousarray(photo[i * 10 : i * 10 + 120, :160, ::-1]))
    writer.release()
    code = main([str(exported("unet")), str(video), "-o", str(tmp_path / "out"), "--save", "labels"])
    assert code == 0, capsys.readouterr().err
    frames = sorted(p.name for p in (tmp_path / "out" / "clip").iterdir())
    assert frames == ["000000.png", "000001.png", "000002.png"]
    assert read_labels_png(tmp_path / "out" / "clip" / "000000.png").shape == (120, 160)
