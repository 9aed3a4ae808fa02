"""Recorded drives as frames: the image messages of chosen topics of a rosbag2 (a folder, SQLite or MCAP, or a
single .mcap file), read with `rosbags` (pure Python, no ROS install) and yielded in log-time order.

Topics are checked when the bag is opened, before any model runs: one that is not in the bag, or is not images,
is refused naming the image topics the bag has. A message that is not a readable image is skipped and counted by
kind; a bag that breaks off mid-way ends the frames with `BagBroken` (exit 1), the frames before it delivered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segrt.errors import SegError, first_line, require
from segrt.ros.image_msg import BadImageMessage, message_to_rgb
from segrt.stream.frame import Frame

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
INSTALL_ROSBAGS = "pip install 'segexport[ros]' (rosbags, pure Python) to read and write ROS 2 bags"


class BagBroken(SegError):
    """The bag could not be read to its end (truncated or corrupt): what was read before is kept, exit 1."""

    exit_code = 1


@dataclass(frozen=True)
class BagMessage:
    """What a Frame read from a bag carries in `meta`: where its masks go and what they keep from it."""

    topic: str
    msgtype: str
    log_ns: int  # the bag's receive time of the message, which the masks are logged at too
    header: Any  # the message's std_msgs/Header (stamp and frame_id), handed back unchanged


OUTPUT_TOPICS = {"labels": "labels", "color": "color"}  # kind -> the suffix after the input topic


def output_topic(topic: str, kind: str) -> str:
    """Where a topic's masks go in the segmented bag: `/camera/image_raw` -> `/camera/image_raw/labels`."""
    return f"{topic.rstrip('/')}/{OUTPUT_TOPICS[kind]}"


def humble_typestore() -> Any:
    """ROS 2 Humble's message types (a Jetson's and Autoware's distribution): what bags without their own type
    definitions are read with, and what the masks are written as."""
    typesys = require("rosbags.typesys", INSTALL_ROSBAGS)
    return typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)  # type: ignore[attr-defined]


class BagImages:
    """A bag opened to read the images of `topics`; a context manager. `frames()` yields them in log-time order.

    `skipped` counts the image messages that were not readable by kind (`BadImageMessage.kind`, or
    "deserialize"), `problems` keeps the first message of each kind.
    """

    def __init__(self, path: str | Path, topics: Sequence[str]) -> None:
        highlevel = require("rosbags.highlevel", INSTALL_ROSBAGS)
        self.path = Path(path)
        self.name = str(path)
        if not self.path.exists():
            raise SegError(f"{self.name}: no such bag (a rosbag2 folder or a .mcap file)")
        self.topics = list(dict.fromkeys(topics))
        self.skipped: Counter[str] = Counter()
        self.problems: dict[str, str] = {}
        self.read = 0  # messages of the chosen topics read so far
        try:
            self._reader = highlevel.AnyReader([self.path], default_typestore=humble_typestore())  # type: ignore[attr-defined]
            self._reader.open()
        except Exception as exc:  # rosbags raises its own errors, sqlite3's, OSError and struct.error on bad files
            raise SegError(f"{self.name}: not a readable ROS 2 bag ({_bag_problem(exc)})") from None
        if not self._reader.is2:
            self._reader.close()
            raise SegError(f"{self.name}: a ROS 1 bag; segrt reads ROS 2 bags (convert with `rosbags-convert`)")
        try:
            self.connections = self._chosen_connections()
        except SegError:
            self._reader.close()
            raise

    def image_topics(self) -> dict[str, str]:
        """topic -> message type, for every image topic in the bag."""
        return {c.topic: c.msgtype for c in self._reader.connections if c.msgtype in IMAGE_TYPES}

    def _chosen_connections(self) -> list[Any]:
        by_topic: dict[str, list[Any]] = {}
        for connection in self._reader.connections:
            by_topic.setdefault(connection.topic, []).append(connection)
        images = self.image_topics()
        listing = ", ".join(f"{topic} ({msgtype.rsplit('/', 1)[-1]})" for topic, msgtype in sorted(images.items()))
        has = f"its image topics: {listing}" if images else "it has no image topics"
        if not self.topics:
            raise SegError(f"{self.name}: a bag; name the image topics to segment with --topic ({has})")
        chosen = []
        for topic in self.topics:
            if topic not in by_topic:
                raise SegError(f"{self.name}: no topic {topic}; {has}")
            taken = [output_topic(topic, kind) for kind in OUTPUT_TOPICS if output_topic(topic, kind) in by_topic]
            if taken:
                message = f"already has a topic {taken[0]} (a segmented bag?); segment the original bag"
                raise SegError(f"{self.name}: {message}")
            for connection in by_topic[topic]:
                if connection.msgtype not in IMAGE_TYPES:
                    raise SegError(f"{self.name}: topic {topic} is {connection.msgtype}, not images; {has}")
                chosen.append(connection)
        return chosen

    def frames(self) -> Iterator[Frame]:
        """The readable image messages of the chosen topics as Frames (index counted per topic), in log order."""
        messages = self._reader.messages(connections=self.connections)
        per_topic: Counter[str] = Counter()
        while True:
            try:
                item = next(messages, None)
            except Exception as exc:  # a truncated or corrupt chunk, page or record, whichever reader met it
                raise BagBroken(
                    f"{self.name}: the bag breaks off after {self.read} messages of {', '.join(self.topics)} "
                    f"({_bag_problem(exc)}); the frames before it are written"
                ) from None
            if item is None:
                return
            connection, log_ns, rawdata = item
            self.read += 1
            try:
                message = self._reader.deserialize(rawdata, connection.msgtype)
                image = message_to_rgb(message)
            except BadImageMessage as exc:
                self._skip(exc.kind, f"{connection.topic} at {log_ns} ns: {exc}")
                continue
            except Exception as exc:  # the CDR bytes do not hold the type the connection says
                self._skip("deserialize", f"{connection.topic} at {log_ns} ns: cannot deserialize ({first_line(exc)})")
                continue
            index = per_topic[connection.topic]
            per_topic[connection.topic] += 1
            stamp = message.header.stamp  # type: ignore[attr-defined]
            yield Frame(
                image=image,
                source=connection.topic,
                index=index,
                time_s=stamp.sec + stamp.nanosec * 1e-9,
                out_stem=Path(connection.topic.strip("/") or "topic") / f"{index:06d}",
                meta=BagMessage(connection.topic, connection.msgtype, log_ns, message.header),  # type: ignore[attr-defined]
            )

    def _skip(self, kind: str, problem: str) -> None:
        self.skipped[kind] += 1
        self.problems.setdefault(kind, problem)

    def close(self) -> None:
        if self._reader.stack is not None:
            self._reader.close()

    def __enter__(self) -> BagImages:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bag_problem(exc: BaseException) -> str:
    """What a reader's error says, with the fix for the common case: an MCAP whose recording was cut off."""
    text = first_line(exc, with_type=not str(exc).strip()).rstrip(".")
    if "end magic" in text or "footer" in text.lower():
        return f"{text}: the file ends early, as a recording that was cut off does; repair it with `mcap recover`"
    return text
