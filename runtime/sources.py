"""segrun's inputs and where their outputs go, decided before the model loads: nothing read is written over.

Every input is listed (folders walked, the output folder left out of them, unreadable subfolders kept as skips)
and every output path worked out up front. A run is refused, naming both paths, where an output would land on an
input, where the output folder holds an input folder, or where two inputs would write the same outputs.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from segrt.class_stats import CSV_NAME
from segrt.errors import SegError
from segrt.stream.names import VIDEO_SUFFIXES, is_bag, kind_of, stem_of, video_path

STREAM_KINDS = ("video", "camera", "stream")  # sources of many frames: a video out, or a folder of frames
# what --save writes for a frame whose outputs are named STEM: STEM.png, STEM.overlay.jpg, STEM.color.png
OUTPUT_SUFFIXES = {"labels": ".png", "overlay": ".overlay.jpg", "color": ".color.png", "confidence": ".confidence.png"}


@dataclass(frozen=True)
class Source:
    """One named input: an image file, a video file or camera, or a folder with nothing (or nothing readable)
    in it; `reason` says why the last two give no frame."""

    location: str | int
    out_stem: Path  # a frame's outputs are out/STEM.png ...; a video's, out/STEM.overlay.mp4 or STEM/000000.png
    kind: str  # "image", "video", "camera", "stream" (a URL or GStreamer pipeline), "empty", "unreadable"
    reason: str = ""


@dataclass
class Listing:
    """The inputs of a run, and the output folders found inside input folders (not read as inputs)."""

    sources: list[Source] = field(default_factory=list)
    left_out: list[tuple[Path, Path]] = field(default_factory=list)  # (the output folder, the input folder holding it)


def output_path(out: Path, stem: Path, kind: str) -> Path:
    """Where --save `kind` of the frame named `stem` goes (not with_suffix: frame.001 gives frame.001.png)."""
    path = out / stem
    return path.with_name(path.name + OUTPUT_SUFFIXES[kind])


def list_sources(inputs: Sequence[str], out: Path | None = None) -> Listing:
    """Expand folders (recursively, sorted) without decoding anything yet; the output folder `out` (when the run
    writes one) is never listed as an input, wherever it lies inside an input folder."""
    listing = Listing()
    out_real = os.path.realpath(out) if out is not None else None
    for text in inputs:
        path = Path(text)
        kind, reason = _kind(path)
        live = kind_of(text) if kind == "missing" or text.startswith("/dev/video") else ""
        if is_bag(path):  # a recorded drive: its image topics (--topic) go into NAME.segmented.mcap
            listing.sources.append(Source(str(path), Path(path.stem if path.is_file() else path.name), "bag"))
        elif live == "camera":
            location = int(text) if text.isdigit() else text
            listing.sources.append(Source(location, stem_of(text), "camera"))
        elif live in ("url", "gstreamer"):
            listing.sources.append(Source(text, stem_of(text), "stream"))
        elif kind == "folder":
            _list_folder(path, out_real, listing)
        elif kind in ("unreadable", "special"):
            listing.sources.append(Source(str(path), Path(path.stem), "unreadable", f"{path}: {reason}"))
        else:  # a file, or a name that is not there (reading it says so)
            media = "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"
            listing.sources.append(Source(str(path), Path(path.stem), media))
    refuse_shared_outputs(listing.sources)
    return listing


def _list_folder(folder: Path, out_real: str | None, listing: Listing) -> None:
    """A folder's files (hidden ones left out) as sources under the folder's name; a subfolder that cannot be
    read is one "unreadable" source, skipped with its reason."""
    base = Path(folder.name if folder.name != ".." else Path(os.path.realpath(folder)).name)
    files: list[Path] = []
    unreadable: list[tuple[Path, str]] = []

    def note(error: OSError) -> None:
        unreadable.append((Path(error.filename or folder), error.strerror or str(error)))

    for root, dirs, names in os.walk(folder, onerror=note):
        if out_real is not None:
            inside = [d for d in dirs if os.path.realpath(os.path.join(root, d)) == out_real]
            for name in inside:
                dirs.remove(name)
                listing.left_out.append((Path(root) / name, folder))
        dirs.sort()
        for name in names:
            if name.startswith("."):
                continue
            file = Path(root) / name
            try:
                regular = stat.S_ISREG(os.stat(file).st_mode)
            except FileNotFoundError:  # a broken link
                continue
            except OSError:  # listed but not reachable: reading it says why
                regular = True
            if regular:  # not a FIFO or a device, which would block or never end
                files.append(file)
    if not files and not unreadable:
        listing.sources.append(Source(str(folder), base, "empty", f"{folder}: empty folder"))
    for sub, reason in unreadable:
        what = "the folder" if sub != folder else "the input folder"
        stem = base / sub.relative_to(folder) if sub != folder and sub.is_relative_to(folder) else base
        message = f"{sub}: cannot read {what} ({reason}); what is in it was skipped"
        listing.sources.append(Source(str(sub), stem, "unreadable", message))
    for file in sorted(files):
        kind = "video" if file.suffix.lower() in VIDEO_SUFFIXES else "image"
        listing.sources.append(Source(str(file), base / file.relative_to(folder).with_suffix(""), kind))


def _kind(path: Path) -> tuple[str, str]:
    """("folder" | "file" | "missing" | "unreadable" | "special", why it cannot be read)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing", ""
    except OSError as exc:
        return "unreadable", f"cannot reach it ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return "folder", ""
    if stat.S_ISREG(mode):
        return "file", ""
    return "special", "not a regular file (a FIFO, a device or a socket), which would never end; give a file"


def refuse_shared_outputs(sources: Sequence[Source]) -> None:
    """Two inputs whose outputs would share a path are refused, naming both: one output name (a.jpg and a.png,
    or x/a.jpg and y/a.jpg), or an input whose outputs fall in the folder a video or camera writes its frames
    into (clip.mp4 beside a folder clip/, camera 0 beside a folder camera0/)."""
    first_by_stem: dict[Path, Source] = {}
    streams: dict[Path, Source] = {}
    for source in sources:
        if source.kind in ("empty", "unreadable"):  # write nothing
            continue
        earlier = first_by_stem.setdefault(source.out_stem, source)
        if earlier is not source:
            raise SegError(
                f"{earlier.location} and {source.location} would both write the outputs named "
                f"{source.out_stem}; rename one, or segment them in separate runs with different -o"
            )
        if source.kind in STREAM_KINDS:
            streams[source.out_stem] = source
    for source in sources:
        if source.kind in ("empty", "unreadable"):
            continue
        stream = next((streams[p] for p in source.out_stem.parents if p in streams), None)
        if stream is not None:
            raise SegError(
                f"{stream.location} and {source.location} would both write into {stream.out_stem}/ (where a "
                f"video's frames go); rename one, or segment them in separate runs with different -o"
            )


def refuse_overwrites(
    listing: Listing, inputs: Sequence[str], out: Path, kinds: Collection[str], stats: bool, frames: bool = True
) -> None:
    """Refuse, before the model loads, a run whose outputs would land on what it reads: an output folder that is an
    input folder or holds one, an output path that is an input file (by path, link or inode), an input inside the
    folder a video writes its frames into (`frames`; else the videos it writes), or an output path a folder
    stands in."""
    out_real = Path(os.path.realpath(out))
    for text in inputs:
        if _kind(Path(text))[0] != "folder":
            continue
        folder_real = Path(os.path.realpath(text))
        if folder_real == out_real or folder_real.is_relative_to(out_real):
            where = "is the output folder" if folder_real == out_real else f"is inside the output folder {out}"
            raise SegError(
                f"-o {out}: the input folder {text} {where}, so its outputs would overwrite or mix with its "
                f"files; choose an -o outside the inputs"
            )
    read = _read_files(listing.sources)
    for source in listing.sources:
        if source.kind == "image":
            for kind in kinds:
                _refuse_output_on_input(output_path(out, source.out_stem, kind), source, read, out)
        elif source.kind == "bag":
            segmented = out / source.out_stem.with_name(source.out_stem.name + ".segmented.mcap")
            _refuse_output_on_input(segmented, source, read, out)
        elif source.kind in STREAM_KINDS and not frames:
            for kind in kinds:
                _refuse_output_on_input(video_path(out, source.out_stem, kind), source, read, out)
        elif source.kind in STREAM_KINDS:
            frames = os.path.realpath(out / source.out_stem)
            inside = next((s for folder, s in read.folders.items() if _within(folder, frames)), None)
            if inside is not None:
                raise SegError(
                    f"-o {out}: {source.location} writes its frames into {out / source.out_stem}/, which holds the "
                    f"input {inside.location}; choose an -o outside the inputs"
                )
    if stats:
        _refuse_output_on_input(out / CSV_NAME, None, read, out)


@dataclass
class _Read:
    """The files a run reads: by inode (an output that exists and is one of them, by any name or link, would be
    written over), and the real folders they are in (a video's frames must not go into one)."""

    by_inode: dict[tuple[int, int], Source] = field(default_factory=dict)
    folders: dict[str, Source] = field(default_factory=dict)  # real folder -> an input in it


def _read_files(sources: Sequence[Source]) -> _Read:
    read = _Read()
    real_folders: dict[str, str] = {}  # each folder resolved once, not each of its files
    for source in sources:
        if source.kind not in ("image", "video", "bag") or isinstance(source.location, int):
            continue
        folder = os.path.dirname(source.location) or "."
        if folder not in real_folders:
            real_folders[folder] = os.path.realpath(folder)
        read.folders.setdefault(real_folders[folder], source)
        try:
            info = os.stat(source.location)
        except OSError:  # not there, or not reachable: nothing of it to write over
            continue
        read.by_inode[(info.st_dev, info.st_ino)] = source
    return read


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _refuse_output_on_input(path: Path, source: Source | None, read: _Read, out: Path) -> None:
    """An output that does not exist yet writes over nothing; one that exists must be neither an input (the same
    file by inode, whatever the name or link that leads to it) nor a folder."""
    try:
        info = os.stat(path)
    except OSError:
        return
    of = f" (an output of {source.location})" if source is not None else ""
    victim = read.by_inode.get((info.st_dev, info.st_ino))
    if victim is not None:
        raise SegError(
            f"-o {out}: {path}{of} would be written over the input {victim.location}; choose an -o outside the inputs"
        )
    if stat.S_ISDIR(info.st_mode):
        raise SegError(f"{path}: is a folder, where this output{of} goes; move it, or choose another -o")
