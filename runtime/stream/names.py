"""What a location names (a camera, a URL, a GStreamer pipeline, a video, a folder, an image) and what its
outputs are called: the one table segrun's listing, `open_source` and the sinks read."""

from __future__ import annotations

from pathlib import Path

URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "rtp://", "srt://", "tcp://", "rtmp://")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".ts", ".mjpeg", ".mjpg")
# a video or stream's --save outputs (without --frames): out/STEM.overlay.mp4 ...
VIDEO_OUTPUTS = {
    "overlay": ".overlay.mp4",
    "color": ".color.mp4",
    "labels": ".labels.mkv",
    "confidence": ".confidence.mkv",  # lossless (FFV1 gray) like the labels: the values are data
}


BAG_SUFFIXES = (".mcap", ".db3")  # a rosbag2 file (MCAP or SQLite); a rosbag2 folder has a metadata.yaml


def is_bag(path: str | Path) -> bool:
    """Whether segrun reads `path` as a ROS 2 bag: a .mcap/.db3 file or a folder with metadata.yaml."""
    path = Path(path)
    return (path.suffix.lower() in BAG_SUFFIXES and path.is_file()) or (path / "metadata.yaml").is_file()


def kind_of(location: str | int) -> str:
    """ "camera" (an index, /dev/videoN), "gstreamer" (a pipeline: has " ! "), "url", "folder", "video" (a video
    file's suffix) or "image"."""
    text = str(location)
    if isinstance(location, int) or (text.isdigit() and not Path(text).exists()) or text.startswith("/dev/video"):
        return "camera"
    if " ! " in text:
        return "gstreamer"
    if text.lower().startswith(URL_SCHEMES):
        return "url"
    if Path(text).is_dir():
        return "folder"
    return "video" if Path(text).suffix.lower() in VIDEO_SUFFIXES else "image"


def stem_of(location: str | int) -> Path:
    """How a source's outputs are named: a file's stem, camera0, gstreamer, a URL's last part or its host."""
    kind, text = kind_of(location), str(location)
    if kind == "camera":
        return Path(f"camera{text.removeprefix('/dev/video')}")
    if kind == "gstreamer":
        return Path("gstreamer")
    if kind == "url":
        rest = text.split("://", 1)[1].split("?", 1)[0].rstrip("/")
        last = Path(rest.rsplit("/", 1)[-1]).stem if "/" in rest else rest  # a path's last part, or the host
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in last.removeprefix("@"))
        return Path(name or "stream")
    return Path(Path(text).stem)


def video_path(out: Path, stem: Path, kind: str) -> Path:
    """Where --save `kind` of a video or stream named `stem` goes, as one video."""
    path = out / stem
    return path.with_name(path.name + VIDEO_OUTPUTS[kind])
