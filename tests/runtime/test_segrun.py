"""segrun: folders with bad files in them, outputs, summary and exit codes."""

from __future__ import annotations

import sys

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
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["stats.csv"] and "no files written" in err
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


@pytest.mark.parametrize("model", ["folder", "file"])
def test_model_and_image_swapped_says_the_order(exported, photo_path, tmp_path, capsys, model):
    target = exported("unet").parent if model == "folder" else exported("unet")
    assert main([str(photo_path), str(target), "-o", str(tmp_path / "o")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{photo_path}: an image, not a model; segrun takes the model first: `segrun {target} {photo_path}`" in err
    assert "re-export" not in err and err.count("segrun: error:") == 1 and not (tmp_path / "o").exists()


def test_video_frames_are_segmented_into_a_label_video_or_a_png_each(exported, tmp_path, photo, capsys):
    av = pytest.importorskip("av")  # the [video] extra; the torch-free runtime venv has it too
    video = tmp_path / "clip.avi"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuvj420p"
        for i in range(3):
            image = np.ascontiguousarray(photo[i * 10 : i * 10 + 120, :160])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    code = main([str(exported("unet")), str(video), "-o", str(tmp_path / "out"), "--save", "labels", "--frames"])
    assert code == 0, capsys.readouterr().err
    frames = sorted(p.name for p in (tmp_path / "out" / "clip").iterdir())
    assert frames == ["000000.png", "000001.png", "000002.png"]
    assert read_labels_png(tmp_path / "out" / "clip" / "000000.png").shape == (120, 160)
    assert main([str(exported("unet")), str(video), "-o", str(tmp_path / "v"), "--save", "labels"]) == 0
    assert _written(tmp_path / "v") == ["clip.labels.mkv"]
    with av.open(str(tmp_path / "v" / "clip.labels.mkv")) as container:
        decoded = [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]
    assert [(labels == read_labels_png(tmp_path / "out" / "clip" / f"00000{i}.png")).all() for i, labels in
            enumerate(decoded)] == [True, True, True]  # fmt: skip


# --- output names ---------------------------------------------------------------------------------------


def _png(path, size=(16, 20), red=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.zeros((*size, 3), np.uint8)
    image[..., 0] = red
    Image.fromarray(image).save(path)
    return path


def _written(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def test_dotted_names_keep_every_dot(exported, tmp_path, capsys):
    frames = tmp_path / "frames"
    for name in ("frame.001.png", "frame.002.png"):
        _png(frames / name)
    single = _png(tmp_path / "shot.v2.png")
    out = tmp_path / "out"
    code = main([str(exported("unet")), str(frames), str(single), "-o", str(out), "--save", "labels,color"])
    assert code == 0, capsys.readouterr().err
    assert _written(out) == [
        "frames/frame.001.color.png",
        "frames/frame.001.png",
        "frames/frame.002.color.png",
        "frames/frame.002.png",
        "shot.v2.color.png",
        "shot.v2.png",
    ]


@pytest.mark.parametrize(
    ("files", "args", "pair"),
    [
        (["a.png", "a.jpg"], ["{tmp}/in"], ("a.jpg", "a.png")),  # one folder, two suffixes
        (["x/a.png", "y/a.png"], ["{tmp}/in/x/a.png", "{tmp}/in/y/a.png"], ("x/a.png", "y/a.png")),
        (["x/img/a.png", "y/img/a.png"], ["{tmp}/in/x/img", "{tmp}/in/y/img"], ("x/img/a.png", "y/img/a.png")),
    ],
    ids=["same stem in a folder", "same stem, two folders", "two folders of one name"],
)
def test_two_inputs_for_one_output_name_are_refused_before_any_work(stand_in_load, tmp_path, capsys, files, args, pair):
    for name in files:
        _png(tmp_path / "in" / name)
    out = tmp_path / "out"
    code = main(["model.onnx", *[a.format(tmp=tmp_path) for a in args], "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("segrun: error:") == 1
    assert f"{tmp_path / 'in' / pair[0]} and {tmp_path / 'in' / pair[1]} would both write" in err
    assert "rename one" in err and stand_in_load.loads == 0 and not out.exists()


# --- failures name their input ----------------------------------------------------------------------------


def test_a_frame_the_model_refuses_is_skipped_naming_its_file(stand_in_load, tmp_path, capsys):
    small, large = _png(tmp_path / "small.png"), _png(tmp_path / "large.png", size=(65, 30))
    code = main(["model.onnx", str(small), str(large), "-o", str(tmp_path / "out"), "--save", "labels"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"segrun: skipped {large}: image 65x30 is larger than stand-in.engine's profile allows (64x64)" in err
    assert _written(tmp_path / "out") == ["small.png"]


def test_every_failure_line_names_its_input(exported, folder, tmp_path, capsys):
    main([str(exported("unet")), str(folder), "-o", str(tmp_path / "out"), "-q"])
    failures = [line for line in capsys.readouterr().err.splitlines() if line.startswith("segrun: skipped ")]
    assert len(failures) == 3 and all(line.startswith(f"segrun: skipped {folder}/") for line in failures)


# --- videos without OpenCV ----------------------------------------------------------------------------------


@pytest.fixture
def no_av(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError


def test_a_video_without_pyav_is_skipped_and_the_rest_of_the_folder_runs(stand_in_load, no_av, tmp_path, capsys):
    media = tmp_path / "media"
    _png(media / "a.png")
    (media / "b.mp4").write_bytes(b"\0" * 64)
    _png(media / "c.png")
    out = tmp_path / "out"
    code = main(["model.onnx", str(media), "-o", str(out), "--save", "labels"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert _written(out) == ["media/a.png", "media/c.png"]
    assert (
        f"skipped {media / 'b.mp4'}: videos and streams need PyAV; install it with `pip install segexport[video]`"
        in err
    )
    assert "2 frame(s) segmented, 1 skipped" in err and "p50" in err
    assert stand_in_load.backend.closed


def test_only_videos_without_pyav_exit_3_after_the_summary(stand_in_load, no_av, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 64)
    code = main(["model.onnx", str(video), str(tmp_path / "missing.png"), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 3
    assert "0 frame(s) segmented, 2 skipped" in err
    assert f"segrun: error: no input could be segmented: {video}: videos and streams need PyAV" in err
    assert stand_in_load.backend.closed


def test_the_segmenter_is_closed_when_a_run_is_interrupted(stand_in_load, tmp_path, monkeypatch, capsys):
    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(stand_in_load.backend, "run", interrupt)
    assert main(["model.onnx", str(_png(tmp_path / "a.png")), "-o", str(tmp_path / "out")]) == 130
    assert stand_in_load.backend.closed


# --- the output folder ----------------------------------------------------------------------------------------


def test_an_unwritable_output_folder_is_refused_before_the_model_loads(stand_in_load, tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    image = _png(tmp_path / "in" / "a.png")
    code = main(["model.onnx", str(image), "-o", str(tmp_path / "a-file" / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("segrun: error:") == 1
    assert f"{tmp_path / 'a-file' / 'out'}: cannot write to the output folder" in err and "-o" in err
    assert stand_in_load.loads == 0
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a-file", "a.png", "in"]


# --- per-class statistics per frame (--stats) and --ignore-class ---------------------------------------------


def _rows(path):
    import csv

    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def _red_png(path, reds, size=(4, 6)):
    """An image whose red channel is `reds` repeated row by row: the stand-in labels each pixel red % 3."""
    image = np.zeros((*size, 3), np.uint8)
    image[..., 0] = np.resize(np.asarray(reds, np.uint8), size)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def test_stats_write_each_frames_class_shares_beside_the_outputs(stand_in_load, tmp_path, capsys):
    first = _red_png(tmp_path / "in" / "a.png", [0, 1, 2])  # a third of the pixels per class
    second = _red_png(tmp_path / "in" / "b.png", [1])  # all "odd"
    out = tmp_path / "out"
    assert main(["model.onnx", str(first), str(second), "-o", str(out), "--stats", "--save", "labels"]) == 0
    err = capsys.readouterr().err
    rows = _rows(out / "stats.csv")
    assert list(rows[0]) == ["source", "frame", "time_s", "height", "width", "background", "odd", "even"]
    assert [r["source"] for r in rows] == [str(first), str(second)]
    assert [float(rows[0][c]) for c in ("background", "odd", "even")] == pytest.approx([1 / 3] * 3, abs=1e-6)
    assert [float(rows[1][c]) for c in ("background", "odd", "even")] == [0.0, 1.0, 0.0]
    assert rows[0]["frame"] == rows[0]["time_s"] == "" and (rows[0]["height"], rows[0]["width"]) == ("4", "6")
    assert f"each frame's shares per class: {out / 'stats.csv'} (2 rows)" in err
    assert "odd" in err and "66.67 %" in err  # the summary: 4/6 of all pixels
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "stats.csv"]  # no temporary file left


def test_stats_of_a_video_give_each_frame_its_index_and_time(stand_in_load, tmp_path, capsys):
    cv2 = pytest.importorskip("cv2")
    video = tmp_path / "drive.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(3):
        writer.write(np.full((24, 32, 3), 60 * i, np.uint8))
    writer.release()
    out = tmp_path / "out"
    assert main(["model.onnx", str(video), "-o", str(out), "--stats", "--save", "none"]) == 0, capsys.readouterr()
    rows = _rows(out / "stats.csv")
    assert [(r["source"], r["frame"], r["time_s"]) for r in rows] == [
        (f"{video}#0", "0", "0.000"), (f"{video}#1", "1", "0.100"), (f"{video}#2", "2", "0.200"),
    ]  # fmt: skip


def test_ignore_class_leaves_it_out_of_overlays_colour_maps_and_stats(stand_in_load, tmp_path, capsys):
    pixels = np.zeros((16, 48, 3), np.uint8)
    pixels[:, 16:32, 0] = 1  # "odd"
    pixels[:, 32:, 0] = 2  # "even"
    pixels[:, :, 1] = 90  # a grey-green image under the colours
    image = tmp_path / "a.png"
    Image.fromarray(pixels).save(image)
    out = tmp_path / "out"
    argv = ["model.onnx", str(image), "-o", str(out), "--save", "labels,overlay,color", "--alpha", "1"]
    assert main([*argv, "--stats", "--ignore-class", "odd"]) == 0
    err = capsys.readouterr().err
    assert (read_labels_png(out / "a.png") == pixels[..., 0]).all()  # the label map keeps every class
    colours = np.asarray(Image.open(out / "a.color.png").convert("RGB"))
    assert (colours[:, 16:32] == 0).all() and (colours[:, 32:] == (0, 200, 0)).all()
    blend = np.asarray(Image.open(out / "a.overlay.jpg").convert("RGB")).astype(int)
    # away from the edges JPEG blurs: the ignored class shows the image, the other class its colour (alpha 1)
    assert np.abs(blend[:, 20:28] - pixels[:, 20:28]).max() < 12
    assert np.abs(blend[:, 36:44] - (0, 200, 0)).max() < 12
    rows = _rows(out / "stats.csv")
    assert list(rows[0])[5:] == ["background", "even"] and float(rows[0]["even"]) == pytest.approx(1 / 3)
    summary = [line.split()[1] for line in err.splitlines() if line.startswith("segrun:   ")]
    assert summary == ["background", "even"] and "(odd left out)" in err


def test_an_unknown_ignore_class_lists_the_models_classes(stand_in_load, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["model.onnx", str(_red_png(tmp_path / "a.png", [1])), "-o", str(out), "--ignore-class", "road"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("segrun: error:") == 1 and "Traceback" not in err
    assert "--ignore-class road: the model has no class of that name; its classes are background, odd, even" in err
    assert not list(out.iterdir())


def test_stats_into_an_unwritable_folder_are_refused_before_the_model_loads(stand_in_load, tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    image = _red_png(tmp_path / "a.png", [1])
    code = main(["model.onnx", str(image), "-o", str(tmp_path / "a-file" / "out"), "--stats", "--save", "none"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("segrun: error:") == 1 and "cannot write to the output folder" in err
    assert stand_in_load.loads == 0


def test_a_stats_csv_that_cannot_be_written_is_one_error_after_every_frame_is_written(
    stand_in_load, tmp_path, capsys, monkeypatch
):
    from segrt import class_stats

    real = class_stats.ClassStats.add

    def disk_full(self, *args, **kwargs):
        if self.rows == 1:
            self._writer = type(
                "Full", (), {"writerow": lambda _, row: (_ for _ in ()).throw(OSError(28, "No space"))}
            )()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(class_stats.ClassStats, "add", disk_full)
    images = [_red_png(tmp_path / "in" / f"{name}.png", [1]) for name in "abc"]
    out = tmp_path / "out"
    code = main(["model.onnx", *map(str, images), "-o", str(out), "--stats", "--save", "labels"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("segrun: error:") == 1
    assert f"segrun: error: {out / 'stats.csv'}: cannot write the --stats CSV (No space)" in err
    assert "3 frame(s) segmented" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]  # every frame; no CSV, no temp


def test_a_stats_path_that_is_a_folder_is_refused_before_any_frame(stand_in_load, tmp_path, capsys):
    (tmp_path / "out" / "stats.csv").mkdir(parents=True)
    code = main(["model.onnx", str(_red_png(tmp_path / "a.png", [1])), "-o", str(tmp_path / "out"), "--stats"])
    err = capsys.readouterr().err
    assert code == 2 and "stats.csv: is a folder" in err and not (tmp_path / "out" / "a.png").exists()


def test_ctrl_c_keeps_the_rows_of_the_frames_already_segmented(stand_in_load, tmp_path, monkeypatch, capsys):
    real, calls = stand_in_load.backend.run, []

    def interrupted(batch):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(batch)

    monkeypatch.setattr(stand_in_load.backend, "run", interrupted)
    images = [_red_png(tmp_path / "in" / f"{name}.png", [2]) for name in "abcd"]
    out = tmp_path / "out"
    assert main(["model.onnx", *map(str, images), "-o", str(out), "--stats", "--save", "none"]) == 130
    assert [r["source"] for r in _rows(out / "stats.csv")] == [str(images[0]), str(images[1])]
    assert sorted(p.name for p in out.iterdir()) == ["stats.csv"]


# --- videos that cannot be used -------------------------------------------------------------------------------


def test_a_video_without_frames_or_that_cannot_be_opened_is_skipped_naming_it(stand_in_load, tmp_path, capsys):
    cv2 = pytest.importorskip("cv2")
    empty = tmp_path / "empty.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24)).release()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 20)
    image = _png(tmp_path / "a.png")
    code = main(["model.onnx", str(empty), str(broken), str(image), "-o", str(tmp_path / "out"), "--save", "labels"])
    err = capsys.readouterr().err
    assert code == 1 and _written(tmp_path / "out") == ["a.png"]
    assert f"segrun: skipped {empty}: the video has no frames (FFmpeg decodes none)" in err
    assert f"segrun: skipped {broken}: FFmpeg cannot open this video (not a video, or a codec it lacks" in err
    assert main(["model.onnx", str(empty), "-o", str(tmp_path / "out2")]) == 2
    assert f"segrun: error: no input could be segmented: {empty}: the video has no frames" in capsys.readouterr().err


class _SizeChangingCamera:
    """A camera (or GStreamer source) whose frames change size: a stand-in for OpenCV's VideoCapture."""

    def __init__(self, location):
        self.index = 0
        self.sizes = [(24, 32), (24, 32), (20, 30), (20, 30), (24, 32)]

    def isOpened(self):
        return True

    def read(self):
        if self.index == len(self.sizes):
            return False, None
        self.index += 1
        return True, np.full((*self.sizes[self.index - 1], 3), self.index, np.uint8)

    def get(self, prop):
        return 0.0

    def release(self):
        pass


def test_a_camera_that_changes_size_mid_stream_keeps_its_good_frames(stand_in_load, tmp_path, monkeypatch, capsys):
    import types

    monkeypatch.setitem(sys.modules, "cv2", types.SimpleNamespace(VideoCapture=_SizeChangingCamera))
    out = tmp_path / "out"
    code = main(["model.onnx", "0", "-o", str(out), "--save", "labels", "--frames", "--stats"])
    err = capsys.readouterr().err
    assert code == 1
    written = _written(out)
    # a live source: the newest frame wins, so frames 0 and 1 may be dropped, never the last one
    assert "camera0/000004.png" in written and "stats.csv" in written
    assert set(written) <= {"camera0/000000.png", "camera0/000001.png", "camera0/000004.png", "stats.csv"}
    assert err.count("segrun: skipped 0") == 1
    assert "0: 2 frame(s) from #2 on are 20x30, not 24x32 like the stream's first frame" in err
    assert [r["frame"] for r in _rows(out / "stats.csv")][-1] == "4"
